"""SQLite's engines: a single-connection write engine whose transactions begin with
``BEGIN IMMEDIATE`` (writers queue in Python instead of failing with "database is
locked" on a lock upgrade), and a WAL read engine whose connections read concurrently.
"""

from __future__ import annotations

import sqlite3
import time
import weakref
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine.interfaces import DBAPIConnection, DBAPICursor
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from gophermart.adapters.stores.sql.engine import Database


def sqlite_database(path: str, timeout: float | None) -> Database:
    """Our own engines on the file at ``path``. ``timeout`` bounds waiting for another
    writer's lock and for a pooled connection (``None``: 30 s, for start-up work)."""
    busy = timeout if timeout is not None else SQLITE_BUSY_TIMEOUT
    return Database(
        _sqlite_engine(path, 1, True, busy),
        _sqlite_engine(path, 4, False, busy),
        display=f"sqlite:///{path}",
        unbounded=(lambda: sqlite_database(path, None)) if timeout is not None else None,
    )


def borrowed_sqlite(engine: AsyncEngine) -> Database:
    """Around a host's existing engine, borrowed: never disposed here.

    One engine serves reads and writes. It is first set up by :func:`configure_sqlite`
    with ``immediate=True``, because our writes need ``BEGIN IMMEDIATE`` to queue rather
    than deadlock on a lock upgrade; from then on *every* transaction on that engine, the
    host's and our reads included, takes SQLite's write lock at BEGIN, so reads wait for
    writes (a URL, which gets its own read engine, reads concurrently). Call it before
    the engine opens connections: the pragmas are set on each new connection.
    """
    configure_sqlite(engine, immediate=True)
    return Database(engine, display=f"sqlite:///{engine.url.database}", owned=False)


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
