"""One asyncpg connection pool per process, for PostgreSQL's hot paths."""

from __future__ import annotations

import asyncio

import asyncpg


async def _cheap_reset(conn: asyncpg.Connection) -> None:
    """Nothing here LISTENs, SETs or holds advisory locks, so asyncpg's default reset (a
    round trip per checkout) buys nothing; only a transaction left open by a cancelled
    unit of work must not reach the next user. The check is a local flag."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


class PgPool:
    """Our own pool, created lazily inside the running loop (server processes fork
    before that) from ``dsn``; or a host's existing pool (``pool=``), borrowed: used as
    it is configured and never closed here, which stays the host's job.

    The hot paths read asyncpg's default codecs (timestamptz as aware UTC datetimes,
    bigint as int): a borrowed pool must not replace those for our columns' types.
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
    ) -> None:
        if (dsn is None) == (pool is None):
            raise ValueError("PgPool takes a dsn to open its own pool, or a pool to borrow")
        self._dsn = dsn
        self._min_size = min_size
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = pool
        self._owned = pool is None
        self._lock = asyncio.Lock()

    async def get(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self._dsn,
                        min_size=self._min_size,
                        max_size=self._max_size,
                        reset=_cheap_reset,
                        max_inactive_connection_lifetime=300,
                    )
        return self._pool

    async def close(self) -> None:
        """Close our own pool (a borrowed one is left open)."""
        if self._pool is not None and self._owned:
            await self._pool.close()
            self._pool = None
