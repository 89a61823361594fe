"""Opening the database: engines, pools, SQLite pragmas, and start-up checks."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import weakref
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import Engine, event, text
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.engine.interfaces import DBAPIConnection, DBAPICursor
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from gophermart.adapters.sql.pg_pool import bounded_connect_kwargs, must_abandon
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

    ``timeout`` bounds the waits of our own engines, in seconds: connecting, waiting for
    a pooled connection, and on SQLite the wait for another writer's lock. ``None``
    keeps the generous defaults (30 s), which start-up and migrations use: a migration
    may wait for another process's. Statements themselves are bounded by the caller's
    deadline where there is one (availability.py), not here: a migration or an audit
    may rightly run long.
    """

    def __init__(
        self,
        target: DatabaseTarget,
        pool: PoolSettings | None = None,
        *,
        engine: AsyncEngine | None = None,
        timeout: float | None = None,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self._owned = engine is None
        pool = pool or PoolSettings()
        if engine is not None:  # see from_engine
            self.write = self.read = engine
        elif target.kind == "postgresql":
            self.write = _postgres_engine(target.location, pool, timeout)
            self.read = self.write
        else:
            busy = timeout if timeout is not None else SQLITE_BUSY_TIMEOUT
            self.write = _sqlite_engine(target.location, 1, True, busy)
            self.read = _sqlite_engine(target.location, 4, False, busy)

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

    def unbounded(self) -> Database:
        """This database without our timeouts, for start-up work (migrations): a new
        ``Database`` on the same target, or this one if its engine is a host's (whose
        settings are the host's). Dispose it after use."""
        if not self._owned or self.timeout is None:
            return self
        return Database(self.target)

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

    async def dispose(self, close: bool = True) -> None:
        """``close=False`` drops the pooled connections without a goodbye round trip."""
        if not self._owned:
            return
        await self.write.dispose(close=close)
        if self.read is not self.write:
            await self.read.dispose(close=close)


def _postgres_engine(dsn: str, pool: PoolSettings, timeout: float | None) -> AsyncEngine:
    connect_kwargs = bounded_connect_kwargs(timeout, statement_timeout=False)

    def connect() -> Awaitable[Any]:
        # asyncpg parses libpq URIs itself, query parameters included.
        return asyncpg.connect(dsn, **connect_kwargs)  # type: ignore[no-any-return]

    engine = create_async_engine(
        "postgresql+asyncpg://",
        async_creator=connect,
        pool_size=pool.size,
        max_overflow=pool.overflow,
        pool_timeout=timeout if timeout is not None else pool.timeout,
        # A connection pooled before PostgreSQL restarted is dead; without the ping its
        # first user (the accrual gate, issue 9) failed on it and an order waited a lease.
        # The ping is a round trip per checkout, and these are the cold paths.
        pool_pre_ping=True,
        pool_recycle=3600,
    )

    @event.listens_for(engine.sync_engine, "handle_error")
    def _outage_is_a_disconnect(context: ExceptionContext) -> None:
        # A timeout or a lost socket leaves the connection unusable: SQLAlchemy then
        # drops it and every connection pooled before it, instead of handing them out.
        if not context.is_disconnect and must_abandon(context.original_exception):
            context.is_disconnect = True

    @event.listens_for(engine.sync_engine.pool, "invalidate")
    def _drop_at_once(dbapi_conn: DBAPIConnection, _record: Any, _exc: Any) -> None:
        # SQLAlchemy closes an invalidated connection politely, waiting up to 2 s for a
        # goodbye that a frozen server never acknowledges: a request cut at its deadline
        # then answered 2 s late. Terminated first, the polite close returns at once.
        dbapi_conn.driver_connection.terminate()

    return engine


#: SQLite's wait for another writer's lock when no timeout is configured (start-up).
SQLITE_BUSY_TIMEOUT = 30.0


def _sqlite_engine(path: str, pool_size: int, immediate: bool, busy: float) -> AsyncEngine:
    engine = create_async_engine(
        f"sqlite+aiosqlite:///{path}",
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=busy,
        connect_args={"timeout": busy},
    )
    configure_sqlite(engine, immediate=immediate, busy=busy)
    return engine


def _use_wal(cursor: DBAPICursor, budget: float = SQLITE_BUSY_TIMEOUT) -> None:
    """Put the file in WAL mode (a property of the file, kept once set).

    Switching takes an exclusive lock, and two connections switching at once (two
    processes starting on a fresh file, issue 9) deadlock; SQLite breaks the deadlock by
    failing one of them at once with "database is locked", busy timeout or not. The loser
    retries: the winner's switch takes milliseconds, after which there is nothing left to
    switch. The sleeps block the loop, but only here, at a concurrent first start.
    """
    deadline = time.monotonic() + budget
    pause = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode")
            row = cursor.fetchone()
            if row is not None and str(row[0]).lower() == "wal":
                return
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def configure_sqlite_connection(dbapi_conn: DBAPIConnection, busy: float) -> None:
    """What every SQLite connection of ours runs first (also a raw ``sqlite3`` one)."""
    # Let SQLAlchemy's "begin" event (below) emit BEGIN, not the driver.
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    try:
        # The busy timeout first, so the statements below wait for a lock, not fail.
        cursor.execute(f"PRAGMA busy_timeout={round(busy * 1000)}")
        _use_wal(cursor, max(busy, SQLITE_BUSY_TIMEOUT))
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


#: Engines already set up, and whether their transactions begin IMMEDIATE.
_configured: weakref.WeakKeyDictionary[Engine, bool] = weakref.WeakKeyDictionary()


def configure_sqlite(
    engine: AsyncEngine, *, immediate: bool, busy: float = SQLITE_BUSY_TIMEOUT
) -> None:
    """Make a SQLite engine fit for Gophermart: WAL, ``synchronous=NORMAL``, foreign keys
    on, a busy timeout of ``busy`` seconds (30 by default) on every new connection; and
    transactions that begin with ``BEGIN IMMEDIATE`` (``immediate=True``, what any engine
    that writes needs) or a plain ``BEGIN``. Our own engines and a host's borrowed one
    all go through here.

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
        configure_sqlite_connection(dbapi_conn, busy)

    begin_sql = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin_sql)
