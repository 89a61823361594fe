"""A SQL store's life: the start-up check, migrations, the values kept in the database,
its pools' state, and closing, shared by SQLite's and PostgreSQL's stores."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from gophermart.adapters.stores.guard import DatabaseGuard
from gophermart.adapters.stores.outages import describe, is_unavailable
from gophermart.adapters.stores.sql.engine import Database
from gophermart.adapters.stores.sql.migrate import migrate
from gophermart.adapters.stores.sql.readiness import alembic_head, revision_on_engine
from gophermart.adapters.stores.sql.secrets import stored_database_id, stored_token_secret
from gophermart.application.errors import MigrationFailed, StoreUnavailable
from gophermart.application.ports import PoolStats, SchemaState
from gophermart.domain.errors import GophermartError


class OwnPool(Protocol):
    """A pool the store opened beside its engines (PostgreSQL's asyncpg pools)."""

    def stats(self) -> PoolStats | None: ...

    async def close(self, grace: float = 2.0) -> None: ...


class SqlLifecycle:
    """``agreement``: raises when the store's connections disagree about where our
    tables are (PostgreSQL's schema); checked once they exist, after migrating or on
    finding the schema current."""

    def __init__(
        self,
        database: Database,
        guard: DatabaseGuard,
        pools: Sequence[OwnPool] = (),
        agreement: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._database = database
        self._guard = guard
        self._pools = pools
        self._agreement = agreement

    async def open(self) -> None:
        await self._database.check()

    async def migrate(self) -> None:
        unbounded = self._database.unbounded()  # a migration may wait for another's
        try:
            await migrate(unbounded)
        except GophermartError:
            raise
        except Exception as exc:
            raise self._typed(exc) from exc
        finally:
            if unbounded is not self._database:
                await unbounded.dispose()
        if self._agreement is not None:
            await self._agreement()

    async def schema(self) -> SchemaState:
        try:
            revision = await revision_on_engine(self._database.read)
        except GophermartError:
            raise
        except Exception as exc:
            raise self._typed(exc) from exc
        state = SchemaState(revision, alembic_head())
        if state.is_current and self._agreement is not None:
            await self._agreement()
        return state

    def _typed(self, exc: Exception) -> GophermartError:
        """A driver's error as ours: an outage, or the database refusing a migration."""
        if is_unavailable(exc):
            return StoreUnavailable(f"cannot use {self._database.display}: {describe(exc)}")
        return MigrationFailed(describe(exc))

    async def stored_secret(self) -> str:
        return await stored_token_secret(self._database.write)

    async def stored_database_id(self) -> str:
        return await stored_database_id(self._database.write)

    def pool_stats(self) -> Sequence[PoolStats]:
        found = []
        engines = {"sqlalchemy_write": self._database.write, "sqlalchemy_read": self._database.read}
        seen: set[int] = set()
        for name, engine in engines.items():
            pool: Any = engine.pool
            if id(pool) in seen or not hasattr(pool, "checkedout"):
                continue
            seen.add(id(pool))
            size_max = pool.size() + max(0, pool._max_overflow)
            found.append(PoolStats(name, pool.checkedout(), max(0, pool.checkedin()), size_max))
        found.extend(stats for pool in self._pools if (stats := pool.stats()) is not None)
        return found

    async def close(self) -> None:
        # With the database known to be down, a polite goodbye would only wait for it.
        polite = not self._guard.is_down
        for pool in self._pools:
            await pool.close(grace=2.0 if polite else 0.0)
        await self._database.dispose(close=polite)
