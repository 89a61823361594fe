"""PostgreSQL LISTEN: wake this process's worker when any process commits an upload."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg

from gophermart.adapters.sql.statements import ORDERS_CHANNEL

log = logging.getLogger("gophermart.listener")


class PgOrderListener:
    """Keeps one dedicated connection LISTENing; reconnects after a loss."""

    def __init__(self, dsn: str, wakeup: asyncio.Event, retry: float = 2.0) -> None:
        self._dsn = dsn
        self._wakeup = wakeup
        self._retry = retry
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
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
                conn = await asyncpg.connect(self._dsn)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(ORDERS_CHANNEL, self._notified)
                if failing:
                    log.warning("LISTEN %s works again", ORDERS_CHANNEL)
                    failing = False
                self._wakeup.set()  # uploads made while we were not listening
                await lost.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.log(
                    logging.DEBUG if failing else logging.WARNING,
                    "LISTEN %s failed (%s: %s); retrying every %gs",
                    ORDERS_CHANNEL,
                    type(exc).__name__,
                    exc,
                    self._retry,
                )
                failing = True
            finally:
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=1)
            await asyncio.sleep(self._retry)

    def _notified(self, *_args: Any) -> None:
        self._wakeup.set()
