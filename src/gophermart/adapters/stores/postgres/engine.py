"""PostgreSQL's SQLAlchemy engine, for the cold paths (migrations, the accrual gate, the
login throttle, the stored secret, reconcile, the queue probe). The hot paths run on
asyncpg's own pool (pool.py)."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from gophermart.adapters.stores.postgres.pool import connect_kwargs, must_abandon
from gophermart.adapters.stores.sql.engine import Database


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """SQLAlchemy's pool on PostgreSQL. It serves the cold paths only; kept small: every
    connection is a PostgreSQL backend, and with a few processes the default
    max_connections of 100 goes fast."""

    size: int = 2
    overflow: int = 3
    timeout: float = 30.0


def postgres_database(
    dsn: str, display: str, timeout: float | None, schema: str | None = None
) -> Database:
    """Our own engine on ``dsn`` (a libpq URI, opened by asyncpg as given: every libpq
    parameter asyncpg knows works), its connections' ``search_path`` set to ``schema``
    when given. ``timeout`` bounds connecting and waiting for a pooled connection
    (``None``: 30 s, for start-up work)."""
    return Database(
        _postgres_engine(dsn, PoolSettings(), timeout, schema, bounded=True),
        display=display,
        schema=schema,
        long=_postgres_engine(dsn, PoolSettings(size=1, overflow=0), timeout, schema),
        unbounded=(
            (lambda: postgres_database(dsn, display, None, schema)) if timeout is not None else None
        ),
    )


def borrowed_postgres(engine: AsyncEngine, display: str, schema: str | None = None) -> Database:
    """Around a host's existing engine, borrowed: never disposed here. With ``schema``
    our tables are named in it on every statement (a schema translation on our own
    view of the engine), whatever ``search_path`` the host's connections have."""
    if schema is not None:
        engine = engine.execution_options(schema_translate_map={None: schema})
    return Database(engine, display=display, owned=False, schema=schema)


def _postgres_engine(
    dsn: str, pool: PoolSettings, timeout: float | None, schema: str | None, bounded: bool = False
) -> AsyncEngine:
    """``bounded``: every wait inside asyncpg bounded by ``timeout`` too (its
    ``command_timeout``). The guard's deadline cuts an operation short by cancelling it;
    asyncpg then sends PostgreSQL a cancel request on a new connection and waits for the
    server to hang up, and the next statement on that connection (the rollback in
    SQLAlchemy's pre-ping, which a cancellation can land in) waits for that: with no
    bound, for as long as a frozen server stays frozen. A stop during a freeze waited 15 s
    for the sequencer's connection so, and a login answered its 503 after 7.7 s."""
    kwargs = connect_kwargs(timeout, schema=schema)
    if bounded and timeout is not None:
        kwargs["command_timeout"] = timeout

    def connect() -> Awaitable[Any]:
        # asyncpg parses libpq URIs itself, query parameters included.
        return asyncpg.connect(dsn, **kwargs)  # type: ignore[no-any-return]

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

    @event.listens_for(engine.sync_engine.pool, "close")
    def _close_without_waiting(dbapi_conn: DBAPIConnection, _record: Any) -> None:
        # asyncpg's polite close sends its goodbye and then waits for the server to hang
        # up (and first for any cancel request still out): on a frozen server, for ever
        # (with command_timeout: that long, then a traceback in the log). terminate()
        # sends the same goodbye and drops the socket at once; the pool's close after it
        # finds the connection closed.
        dbapi_conn.driver_connection.terminate()

    return engine
