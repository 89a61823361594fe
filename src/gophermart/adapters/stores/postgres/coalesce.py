"""Coalescing: the reads of one event-loop turn as one query.

Under load a server process has many requests in flight, and the ones whose handlers
run in the same turn of the event loop all want the same statement for different
users. Each alone costs a pooled connection's checkout, a round trip, PostgreSQL's
parse/bind/execute and two system calls on both ends; and PostgreSQL shares the CPU
with us. :class:`Coalescer` collects the keys asked for during one turn and, at the
start of the next, runs *one* query for all of them (``WHERE user_id = ANY($1)``),
then hands each waiter its own answer. Alone, a request pays one turn of the loop
(microseconds); under load, one query serves as many requests as arrived together
(measured in docs/performance.md, "Round two").

A failed query fails exactly the requests of its batch, each with the same error; a
batch never waits for another, so batches run concurrently on the pool as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Coalescer(Generic[K, V]):
    """``await coalescer.get(key)``: the value ``run(keys)`` maps ``key`` to (``None``
    when it is absent), ``run`` being called once per event-loop turn for every key
    asked for in that turn."""

    def __init__(self, run: Callable[[Sequence[K]], Awaitable[Mapping[K, V]]]) -> None:
        self._run = run
        self._waiting: dict[K, list[asyncio.Future[V | None]]] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def get(self, key: K) -> V | None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[V | None] = loop.create_future()
        waiting = self._waiting
        if waiting is None:
            # The first of this turn: the batch is sent once every handler that is
            # ready now has had its turn (call_soon runs after the current ones).
            waiting = self._waiting = {}
            loop.call_soon(self._flush, loop)
        waiting.setdefault(key, []).append(future)
        return await future

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self._waiting = self._waiting, None
        if batch:
            task = loop.create_task(self._answer(batch))
            self._tasks.add(task)  # keep it alive until done
            task.add_done_callback(self._tasks.discard)

    async def _answer(self, batch: dict[K, list[asyncio.Future[V | None]]]) -> None:
        try:
            found = await self._run(list(batch))
        except asyncio.CancelledError:
            for futures in batch.values():
                for future in futures:
                    future.cancel()
            raise
        except Exception as exc:
            for futures in batch.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
            return
        for key, futures in batch.items():
            value = found.get(key)
            for future in futures:
                if not future.done():  # a waiter may have been cancelled meanwhile
                    future.set_result(value)
