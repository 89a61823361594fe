"""The PostgreSQL store: every storage port on PostgreSQL, and the speed machinery that
only PostgreSQL gets (asyncpg pools, coalesced reads, group commit, LISTEN/NOTIFY).

The hot paths (units of work, the read model) run on asyncpg's pool (pool.py) with the
shared statements compiled once for it (runner.py); the cold paths (the accrual gate,
the login throttle, reconcile, the queue probe, migrations) on SQLAlchemy Core through
a small engine (engine.py). docs/performance.md says why each piece is here.
"""

from __future__ import annotations

from functools import partial

import asyncpg
from dependency_injector import containers, providers
from sqlalchemy.ext.asyncio import AsyncEngine

from gophermart.adapters.stores.guard import DatabaseGuard, guarded, guarded_unit_of_work
from gophermart.adapters.stores.postgres.engine import borrowed_postgres, postgres_database
from gophermart.adapters.stores.postgres.group_commit import PgGroupCommit
from gophermart.adapters.stores.postgres.listener import PgOrderListener
from gophermart.adapters.stores.postgres.pool import PgPool
from gophermart.adapters.stores.postgres.reads import PgReads
from gophermart.adapters.stores.postgres.unit_of_work import PgUnitOfWork, within
from gophermart.adapters.stores.sql.cold import SqlColdPaths
from gophermart.adapters.stores.sql.engine import Database
from gophermart.adapters.stores.sql.lifecycle import SqlLifecycle
from gophermart.adapters.stores.sql.readiness import REVISION, SqlReadiness

__all__ = ["Store"]

#: Batches of withdrawals written at the same time per process (group_commit.py).
COMMIT_CONNECTIONS = 2


def _database(dsn: str, display: str, timeout: float, engine: AsyncEngine | None) -> Database:
    if engine is not None:
        return borrowed_postgres(engine, display)
    return postgres_database(dsn, display, timeout)


def _hot_pool(dsn: str, timeout: float, borrowed: asyncpg.Pool | None) -> PgPool:
    if borrowed is not None:
        return PgPool(pool=borrowed, timeout=timeout)
    return PgPool(dsn, timeout=timeout)


def _commit_pool(dsn: str, timeout: float) -> PgPool:
    """The group commit's own connections: a unit of work waiting for its batch holds
    one of the hot pool's, so sharing it could leave a batch no connection to run on.
    All opened at once: none to open under load."""
    size = COMMIT_CONNECTIONS
    return PgPool(dsn, min_size=size, max_size=size, timeout=timeout, name="asyncpg_commit")


async def answers(dsn: str, timeout: float) -> None:  # noqa: ASYNC109 - asyncpg's own
    """The guard's probe: a fresh connection (not the pool's, which stuck statements may
    hold) answers ``SELECT 1``."""
    conn = await asyncpg.connect(dsn, timeout=timeout)
    try:
        await conn.fetchval("SELECT 1", timeout=timeout)
    finally:
        conn.terminate()


async def revision_on_pool(pool: PgPool) -> str | None:
    """The database's Alembic revision through the hot pool (``None``: never migrated)."""
    async with pool.connection() as conn:
        try:
            value = await conn.fetchval(REVISION)
        except asyncpg.UndefinedTableError:
            return None
    return str(value) if value is not None else None


class Store(containers.DeclarativeContainer):
    """Every port on PostgreSQL, behind one guard: each operation under
    ``GOPHERMART_DB_TIMEOUT``, an outage answered at once while it lasts (guard.py).

    ``engine`` and ``pool``: a host's SQLAlchemy engine and asyncpg pool, borrowed
    instead of opening our own (never closed here)."""

    dsn = providers.Dependency(instance_of=str)
    display = providers.Dependency(instance_of=str)
    timeout = providers.Dependency(instance_of=float)
    engine: providers.Dependency[AsyncEngine | None] = providers.Dependency(default=None)
    pool: providers.Dependency[asyncpg.Pool | None] = providers.Dependency(default=None)

    database = providers.Singleton(_database, dsn, display, timeout, engine)
    hot_pool = providers.Singleton(_hot_pool, dsn, timeout, pool)
    commit_pool = providers.Singleton(_commit_pool, dsn, timeout)
    group_commit = providers.Singleton(
        PgGroupCommit, commit_pool, read_pool=hot_pool, connections=COMMIT_CONNECTIONS
    )
    guard = providers.Singleton(
        DatabaseGuard, timeout, probe=providers.Callable(partial, answers, dsn, timeout)
    )

    uow = providers.Factory(
        guarded_unit_of_work,
        providers.Factory(PgUnitOfWork, hot_pool, group_commit).provider,
        providers.Object(within),
        guard,
    )
    read_model = providers.Singleton(guarded, providers.Singleton(PgReads, hot_pool), guard)
    cold = providers.Container(
        SqlColdPaths, write=database.provided.write, read=database.provided.read, guard=guard
    )
    readiness = providers.Singleton(
        SqlReadiness, providers.Callable(partial, revision_on_pool, hot_pool), timeout
    )
    listener = providers.Singleton(PgOrderListener, dsn, timeout=timeout)
    lifecycle = providers.Singleton(
        SqlLifecycle, database, guard, providers.List(hot_pool, commit_pool)
    )
