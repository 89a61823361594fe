"""Opening the database: engines, pools, SQLite pragmas, and start-up checks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import event, text
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
    """

    def __init__(self, target: DatabaseTarget, pool: PoolSettings | None = None) -> None:
        self.target = target
        pool = pool or PoolSettings()
        self._borrowed = False
        if target.kind == "postgresql":
            self.write = _postgres_engine(target.location, pool)
            self.read = self.write
        else:
            self.write = _sqlite_engine(target.location, pool_size=1, immediate=True)
            self.read = _sqlite_engine(target.location, pool_size=4, immediate=False)

    @classmethod
    def borrow(cls, engine: AsyncEngine) -> Database:
        """Wrap a host's own engine. It stays the host's: :meth:`dispose` leaves it open.

        SQLite gets our connection settings (WAL, foreign keys, ``BEGIN IMMEDIATE`` so
        writers queue instead of failing on a lock upgrade) installed on the host's
        engine, which then serves reads and writes alike.
        """
        url = engine.url
        if url.get_backend_name() == "sqlite":
            target = DatabaseTarget("sqlite", url.database or ":memory:")
            configure_sqlite(engine, immediate=True)
        elif url.get_backend_name() == "postgresql":
            dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
            target = DatabaseTarget("postgresql", dsn)
        else:
            raise ConfigError(f"DATABASE_URI: unsupported engine {url.get_backend_name()!r}")
        database = cls.__new__(cls)
        database.target = target
        database.write = database.read = engine
        database._borrowed = True
        return database

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
        if self._borrowed:
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


def configure_sqlite(engine: AsyncEngine, immediate: bool) -> None:
    """Our SQLite connection settings, on our engines and on a host's borrowed one."""

    @event.listens_for(engine.sync_engine, "connect")
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

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin_sql)
