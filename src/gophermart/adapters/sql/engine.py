"""Opening the database: engines, pools, SQLite pragmas, and start-up checks."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import Engine, event, text
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from gophermart.adapters.sql.url import DatabaseTarget
from gophermart.settings import ConfigError


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """SQLAlchemy's pool on PostgreSQL. It serves the cold paths only (migrations, the
    accrual gate, the stored secret, reconcile); the hot paths have their own asyncpg
    pool (pg_pool.py). Kept small: every connection is a PostgreSQL backend, and with a
    few processes the default max_connections of 100 goes fast."""

    size: int = 2
    overflow: int = 3
    timeout: float = 30.0


class Database:
    """The engines of one database.

    PostgreSQL has one engine for everything. SQLite gets two: a *write* engine with a
    single connection whose transactions start with ``BEGIN IMMEDIATE`` (writers queue
    in Python instead of failing with "database is locked" on a lock upgrade), and a
    *read* engine whose connections read concurrently thanks to WAL.

    :meth:`from_engine` wraps a host's own engine instead.
    """

    def __init__(
        self,
        target: DatabaseTarget,
        pool: PoolSettings | None = None,
        *,
        engine: AsyncEngine | None = None,
    ) -> None:
        self.target = target
        self._owned = engine is None
        pool = pool or PoolSettings()
        if engine is not None:  # see from_engine
            self.write = self.read = engine
        elif target.kind == "postgresql":
            self.write = _postgres_engine(target.location, pool)
            self.read = self.write
        else:
            self.write = _sqlite_engine(target.location, pool_size=1, immediate=True)
            self.read = _sqlite_engine(target.location, pool_size=4, immediate=False)

    @classmethod
    def from_engine(cls, engine: AsyncEngine) -> Database:
        """Around a host's existing engine, borrowed: :meth:`dispose` leaves it alone.

        One engine serves reads and writes. On SQLite it is first set up by
        :func:`configure_sqlite` with ``immediate=True``, because our writes need
        ``BEGIN IMMEDIATE`` to queue rather than deadlock on a lock upgrade; from then
        on *every* transaction on that engine, the host's and our reads included, takes
        SQLite's write lock at BEGIN, so reads wait for writes (a URL, which gets its own
        read engine, reads concurrently). Call it before the engine opens connections:
        the pragmas are set on each new connection.

        ``target.location`` is rebuilt from the engine's URL for display (and, on
        PostgreSQL, as a DSN for the LISTEN connection and our own asyncpg pool).
        """
        url = engine.url
        if url.get_backend_name() == "sqlite":
            configure_sqlite(engine, immediate=True)
            target = DatabaseTarget("sqlite", url.database or ":memory:")
        else:
            dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
            target = DatabaseTarget("postgresql", dsn)
        return cls(target, engine=engine)

    @property
    def is_postgres(self) -> bool:
        return self.target.kind == "postgresql"

    async def check(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Fail fast, in one line, when the database cannot be reached."""
        try:
            async with asyncio.timeout(timeout):
                async with self.read.connect() as conn:
                    await conn.execute(text("SELECT 1"))
        except TimeoutError:
            raise ConfigError(
                f"DATABASE_URI: {self.target.display} did not answer within {timeout:.0f}s"
            ) from None
        except Exception as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise ConfigError(
                f"DATABASE_URI: cannot use {self.target.display}: {type(exc).__name__}: {reason}"
            ) from None

    async def dispose(self) -> None:
        if not self._owned:
            return
        await self.write.dispose()
        if self.read is not self.write:
            await self.read.dispose()


def _postgres_engine(dsn: str, pool: PoolSettings) -> AsyncEngine:
    def connect() -> Awaitable[Any]:
        # asyncpg parses libpq URIs itself, query parameters included.
        return asyncpg.connect(dsn)  # type: ignore[no-any-return]

    return create_async_engine(
        "postgresql+asyncpg://",
        async_creator=connect,
        pool_size=pool.size,
        max_overflow=pool.overflow,
        pool_timeout=pool.timeout,
        pool_pre_ping=False,
        pool_recycle=3600,
    )


def _sqlite_engine(path: str, pool_size: int, immediate: bool) -> AsyncEngine:
    engine = create_async_engine(
        f"sqlite+aiosqlite:///{path}",
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=60,
        connect_args={"timeout": 30},
    )
    configure_sqlite(engine, immediate=immediate)
    return engine


#: Engines already set up, and whether their transactions begin IMMEDIATE.
_configured: weakref.WeakKeyDictionary[Engine, bool] = weakref.WeakKeyDictionary()


def configure_sqlite(engine: AsyncEngine, *, immediate: bool) -> None:
    """Make a SQLite engine fit for Gophermart: WAL, ``synchronous=NORMAL``, foreign keys
    on, a 30 s busy timeout on every new connection; and transactions that begin with
    ``BEGIN IMMEDIATE`` (``immediate=True``, what any engine that writes needs) or a
    plain ``BEGIN``. Our own engines and a host's borrowed one all go through here.

    Idempotent; asking again for the other kind of BEGIN is an error.
    """
    sync_engine = engine.sync_engine
    if sync_engine.dialect.name != "sqlite":
        raise ValueError(f"configure_sqlite: not a SQLite engine ({sync_engine.dialect.name})")
    if sync_engine in _configured:
        if _configured[sync_engine] != immediate:
            raise ValueError("configure_sqlite: engine already set up with the other BEGIN")
        return
    _configured[sync_engine] = immediate

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy's "begin" event (below) emit BEGIN, not the driver.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    begin_sql = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin_sql)
