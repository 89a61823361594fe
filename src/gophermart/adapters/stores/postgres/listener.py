"""PostgreSQL LISTEN: wake this process's worker when any process commits an upload."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg

from gophermart.adapters.stores.postgres.statements import ORDERS_CHANNEL

log = logging.getLogger("gophermart.listener")


class PgOrderListener:
    """Keeps one dedicated connection LISTENing; reconnects after a loss.

    A connection whose server or network path dies without closing it (a frozen server,
    a dropped route) would otherwise look alive for hours, until TCP gives up: every
    ``probe_every`` seconds the connection answers a ``SELECT 1`` within ``timeout`` or
    is replaced, and connecting is bounded by the same ``timeout`` (the service's
    ``GOPHERMART_DB_TIMEOUT``) instead of asyncpg's 60 s. Nothing is lost meanwhile:
    the worker polls the queue every second when idle, and every (re)connect wakes it.
    """

    def __init__(
        self,
        dsn: str,
        channel: str = ORDERS_CHANNEL,
        retry: float = 2.0,
        timeout: float = 5.0,
        probe_every: float = 30.0,
    ) -> None:
        self._dsn = dsn
        self._channel = channel
        self._wakeup = asyncio.Event()
        self._retry = retry
        self._timeout = timeout
        self._probe_every = probe_every
        self._task: asyncio.Task[None] | None = None

    def start(self, wakeup: asyncio.Event) -> None:
        """Listen until :meth:`stop`, setting ``wakeup`` at every committed upload."""
        self._wakeup = wakeup
        self._task = asyncio.create_task(self._run(), name="pg-order-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        failing = False  # during an outage: one line when it starts, one when it ends
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn, timeout=self._timeout)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(self._channel, self._notified)
                if failing:
                    log.warning("LISTEN %s works again", self._channel)
                    failing = False
                self._wakeup.set()  # uploads made while we were not listening
                await self._hold(conn, lost)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.log(
                    logging.DEBUG if failing else logging.WARNING,
                    "LISTEN %s failed (%s: %s); retrying every %gs",
                    self._channel,
                    type(exc).__name__,
                    exc,
                    self._retry,
                )
                failing = True
            finally:
                if conn is not None and not conn.is_closed():
                    try:
                        await conn.close(timeout=1)
                    except Exception:  # a server that does not answer: drop the socket
                        conn.terminate()
            await asyncio.sleep(self._retry)

    async def _hold(self, conn: asyncpg.Connection, lost: asyncio.Event) -> None:
        """Return when the connection is lost; raise when it stops answering."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), self._probe_every)
                return
            try:
                await conn.fetchval("SELECT 1", timeout=self._timeout)
            except TimeoutError:
                raise TimeoutError(f"no answer to a probe within {self._timeout:g}s") from None

    def _notified(self, *_args: Any) -> None:
        self._wakeup.set()
