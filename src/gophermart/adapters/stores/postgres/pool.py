"""One asyncpg connection pool per process, for PostgreSQL's hot paths."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from gophermart.adapters.stores.outages import is_unavailable
from gophermart.application.ports import PoolStats


async def _cheap_reset(conn: asyncpg.Connection) -> None:
    """Nothing here LISTENs, SETs or holds advisory locks, so asyncpg's default reset (a
    round trip per checkout) buys nothing; only a transaction left open by a cancelled
    unit of work must not reach the next user. The check is a local flag."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


def must_abandon(exc: BaseException | None) -> bool:
    """Whether a connection that ended its work with ``exc`` must be closed, not reused.

    A timeout, a cancellation (the caller's deadline) or a lost connection leaves the
    connection mid-statement: handing it back would make the pool wait for the server to
    acknowledge a cancel request, which a frozen server never does. Closing it costs a
    reconnect and nothing else; the server rolls back what it was doing.
    """
    return exc is not None and (
        not isinstance(exc, Exception)  # CancelledError, KeyboardInterrupt, ...
        or isinstance(exc, TimeoutError | OSError | asyncpg.PostgresConnectionError)
        or (isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc))
    )


class _QuietFloorRestore(logging.Filter):
    """During an outage asyncpg logs a traceback each time it fails to refill the pool's
    floor of idle connections (1, 2, 4 ... s apart); the guard logs the outage once
    (availability.py), so those lines are dropped. Other failures still show."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (
            exc is not None
            and str(record.msg).startswith("Failed to restore the pool connection floor")
            and is_unavailable(exc)
        )


_QUIET_FLOOR_RESTORE = _QuietFloorRestore()


class PgPool:
    """Our own pool, created lazily inside the running loop (server processes fork
    before that) from ``dsn``; or a host's existing pool (``pool=``), borrowed: used as
    it is configured and never closed here, which stays the host's job.

    The hot paths read asyncpg's default codecs (timestamptz as aware UTC datetimes,
    bigint as int): a borrowed pool must not replace those for our columns' types.

    ``timeout`` (seconds, ``None`` for none) bounds connecting, and is set as the
    server's ``statement_timeout`` on our own pool's connections, so nothing a client gave
    up on keeps running there. The wait for a pooled connection and for each answer is
    bounded by the caller's deadline (availability.py), not per call: asyncpg arms a loop
    timer per statement for a ``command_timeout``, microseconds on every hot read.
    """

    #: 20 per process: with 32 concurrent requests per process, 10 made requests queue for
    #: a connection (read p99 21-46 ms against 11-15 ms with 20); two processes then peak
    #: at about 42 PostgreSQL connections of the default 100 (docs/performance.md).
    def __init__(
        self,
        dsn: str | None = None,
        min_size: int = 2,
        max_size: int = 20,
        *,
        pool: asyncpg.Pool | None = None,
        timeout: float | None = None,
        schema: str | None = None,
        name: str = "asyncpg",
        lock_timeout: float | None = None,
        custom_plans: bool = False,
        async_commit: bool = False,
    ) -> None:
        if (dsn is None) == (pool is None):
            raise ValueError("PgPool takes a dsn to open its own pool, or a pool to borrow")
        self._dsn = dsn
        self._min_size = min_size
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = pool
        self._owned = pool is None
        self._timeout = timeout
        self._schema = schema
        self._lock_timeout = lock_timeout
        self._custom_plans = custom_plans
        self._async_commit = async_commit
        self._alone: set[asyncpg.Connection] = set()  # run_alone's, under way
        self._lock = asyncio.Lock()
        self.name = name

    async def get(self) -> asyncpg.Pool:
        if self._pool is None:
            logging.getLogger("asyncpg.pool").addFilter(_QUIET_FLOOR_RESTORE)  # once: a set
            async with self._lock:
                if self._pool is None:
                    bounds = connect_kwargs(
                        self._timeout,
                        schema=self._schema,
                        statement_timeout=True,
                        lock_timeout=self._lock_timeout,
                        custom_plans=self._custom_plans,
                        async_commit=self._async_commit,
                    )
                    self._pool = await asyncpg.create_pool(
                        self._dsn,
                        min_size=self._min_size,
                        max_size=self._max_size,
                        reset=_cheap_reset,
                        max_inactive_connection_lifetime=300,
                        **bounds,
                    )
        return self._pool

    async def current_schema(self) -> str:
        """The schema our unqualified table names resolve to on this pool's connections
        (its own pool: ``schema``; a borrowed one: whatever its host set)."""
        async with self.connection() as conn:
            return str(await conn.fetchval("SELECT current_schema()"))

    def stats(self) -> PoolStats | None:
        """Connections in use and idle, and callers waiting (``None`` before it opens)."""
        pool = self._pool
        if pool is None:
            return None
        size, idle = pool.get_size(), pool.get_idle_size()
        # asyncpg keeps the waiters of an exhausted pool in its queue's getters.
        waiting = len(getattr(getattr(pool, "_queue", None), "_getters", ()))
        return PoolStats(self.name, size - idle, idle, pool.get_max_size(), waiting)

    async def run_alone(self, sql: str) -> None:
        """``sql`` on a connection of its own, without the pool's statement bound and
        outside a transaction (a VACUUM needs both); on a borrowed pool, whose address
        is not ours, on one of its connections."""
        if self._dsn is None:
            async with self.connection() as conn:
                await conn.execute(sql)
            return
        conn = await asyncpg.connect(
            self._dsn, **connect_kwargs(self._timeout, schema=self._schema)
        )
        self._alone.add(conn)
        try:
            await conn.execute(sql)
        finally:
            self._alone.discard(conn)
            conn.terminate()  # the goodbye is not waited for (a frozen server never answers)

    def connection(self) -> _Borrowed:
        """``async with pool.connection() as conn``: a pooled connection for a read,
        closed instead of reused if the read was cut short (:func:`must_abandon`)."""
        return _Borrowed(self)

    async def close(self, grace: float = 2.0) -> None:
        """Close our own pool (a borrowed one is left open): politely, or after
        ``grace`` seconds by dropping the connections (a frozen server never
        acknowledges a polite goodbye). A statement run alone that is still under
        way (a VACUUM in the background) is cut off: its caller sees the connection
        gone."""
        for conn in list(self._alone):
            conn.terminate()
        if self._pool is not None and self._owned:
            pool, self._pool = self._pool, None
            try:
                async with asyncio.timeout(grace):
                    await pool.close()
            except TimeoutError:
                pool.terminate()


class _Borrowed:
    """The context manager of :meth:`PgPool.connection` (a class: a generator-based one
    costs a microsecond more on every read)."""

    __slots__ = ("conn", "owner", "pool")

    def __init__(self, owner: PgPool) -> None:
        self.owner = owner

    async def __aenter__(self) -> PoolConnectionProxy:
        self.pool = self.owner._pool or await self.owner.get()
        self.conn: PoolConnectionProxy = await self.pool.acquire()
        return self.conn

    async def __aexit__(self, _type: object, exc: BaseException | None, *_: object) -> None:
        if must_abandon(exc):
            self.conn.terminate()  # the pool takes its place back by itself
        await self.pool.release(self.conn)


def connect_kwargs(
    timeout: float | None,
    *,
    schema: str | None = None,
    statement_timeout: bool = False,
    lock_timeout: float | None = None,
    custom_plans: bool = False,
    async_commit: bool = False,
) -> dict[str, object]:
    """asyncpg connection arguments: a bound of ``timeout`` seconds (none for None) on
    connecting and, with ``statement_timeout``, on each statement at the server; with
    ``schema``, a ``search_path`` of that schema alone, so our unqualified table names
    (the statements are compiled once, without a schema) resolve there and nowhere else;
    with ``custom_plans``, every execution of a prepared statement planned for its own
    parameters (``plan_cache_mode``), never PostgreSQL's generic plan; with
    ``async_commit``, commits that do not wait for their WAL to reach the disk
    (``synchronous_commit = off``: a crash may lose the last few, never corrupt).
    """
    kwargs: dict[str, object] = {}
    server: dict[str, str] = {}
    if timeout is not None:
        kwargs["timeout"] = timeout
        if statement_timeout:
            server["statement_timeout"] = str(max(1, round(timeout * 1000)))
    if lock_timeout is not None:
        server["lock_timeout"] = str(max(1, round(lock_timeout * 1000)))
    if schema is not None:
        server["search_path"] = f'"{schema}"'
    if custom_plans:
        server["plan_cache_mode"] = "force_custom_plan"
    if async_commit:
        server["synchronous_commit"] = "off"
    if server:
        kwargs["server_settings"] = server
    return kwargs
