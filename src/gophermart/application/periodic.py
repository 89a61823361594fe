"""The worker's periodic chores (the holds' sweep, the prunings): one loop for all of
them, and one way to delete in batches."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from gophermart.application.errors import StoreUnavailable


async def repeat_until(
    stop: asyncio.Event,
    every: float,
    job: Callable[[], Awaitable[object]],
    log: logging.Logger,
    what: str,
) -> None:
    """``job`` every ``every`` seconds until ``stop``. A failure is logged once per run of
    failures (``what`` names the chore); an outage not at all: it is logged once where it
    was seen."""
    failing = False
    while not stop.is_set():
        try:
            await job()
            failing = False
        except StoreUnavailable:
            failing = True
        except Exception:
            if not failing:
                log.exception("%s failed; retrying", what)
            failing = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


async def in_batches(delete: Callable[[int], Awaitable[int]], batch: int) -> int:
    """``delete(batch)`` (deletes at most ``batch`` rows, says how many) until a call
    deletes fewer: one statement's lock and WAL at a time, however much is due. How
    many in all."""
    pruned = 0
    while True:
        deleted = await delete(batch)
        pruned += deleted
        if deleted < batch:
            return pruned


async def wait_any(
    stop: asyncio.Event,
    wakeup: asyncio.Event | None,
    delay: float,
    *others: Awaitable[object],
) -> None:
    """Wait until ``stop`` or ``wakeup`` is set, one of ``others`` (coroutines) ends, or
    ``delay`` seconds pass."""
    waiters: list[asyncio.Future[object]] = [asyncio.ensure_future(stop.wait())]
    if wakeup is not None:
        waiters.append(asyncio.ensure_future(wakeup.wait()))
    waiters.extend(asyncio.ensure_future(other) for other in others)
    try:
        await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
