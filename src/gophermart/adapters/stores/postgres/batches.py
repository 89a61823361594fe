"""Group commits: many requests' writes, one round trip, one flush.

:class:`Batches` is the scheduling both kinds share (which items make a batch, how many
batches run at once); the withdrawals' :class:`~.group_commit.PgGroupCommit` writes its
batch as one set-based statement, :class:`StatementBatch` as one statement per item.

A hold placed or captured is one statement (statements.PLACE_HOLD, CAPTURE_HOLD), its
own transaction, so each pays a commit and its WAL flush, as a withdrawal alone would
(group_commit.py). :class:`StatementBatch` collects the executions of its statement that
concurrent requests of one process hand it while an earlier batch is being written (or,
when idle, those of one event-loop turn) and sends them with asyncpg's ``fetchmany``:
one after the other, in one transaction, in one round trip, each with its own row back
(the statement always answers one row). The batch's executions are sorted by their
``key`` (the user: the account row each locks), so that two batches, and the
withdrawals' batches, take the accounts' locks in one order and never deadlock.

If the batch fails as a whole (one execution's conflict aborts the transaction, or the
connection is lost), nothing of it was written, and each execution runs again alone for
its own answer or error: one bad request cannot fail the others.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from gophermart.adapters.stores.postgres.pool import PgPool
from gophermart.adapters.stores.postgres.runner import PgRunner, compiled
from gophermart.adapters.stores.sql.runners import Row
from gophermart.adapters.stores.sql.statements import Params, Statement

log = logging.getLogger("gophermart.group_commit")


T = TypeVar("T")


class Batches(ABC, Generic[T]):
    """Items handed in by concurrent requests of one process, written in batches: those
    that arrive while earlier batches are being written (or, when idle, those of one
    event-loop turn) make the next batch; at most ``connections`` batches at a time, at
    most ``max_batch`` items each. :meth:`_write` answers each item of its batch."""

    def __init__(self, connections: int, max_batch: int) -> None:
        self._connections = connections
        self._max_batch = max_batch
        self._queue: list[T] = []
        self._running = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    def _enqueue(self, item: T) -> None:
        self._queue.append(item)
        if not self._scheduled:
            # After the handlers that are ready now have run: they join this batch.
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._start)

    def _start(self) -> None:
        self._scheduled = False
        loop = asyncio.get_running_loop()
        while self._queue and self._running < self._connections:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            self._running += 1
            task = loop.create_task(self._write(batch))
            self._tasks.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._running -= 1
        if self._queue and not self._scheduled:
            self._start()  # what queued up meanwhile is the next batch

    @abstractmethod
    async def _write(self, batch: list[T]) -> None: ...


@dataclass(slots=True)
class _Execution:
    key: int
    params: Params
    answer: asyncio.Future[Any]


class StatementBatch(Batches[_Execution]):
    """The lone executions of ``statement`` (one row back each) in group commits on
    ``pool``, at most ``connections`` batches at a time."""

    def __init__(
        self, pool: PgPool, statement: Statement, *, connections: int = 1, max_batch: int = 256
    ) -> None:
        super().__init__(connections, max_batch)
        self._pool = pool
        self._statement = statement

    async def fetchrow(self, params: Params, key: int) -> Row:
        """The statement's row for ``params``, once its batch committed;
        :class:`Conflict` if it broke a unique index (nothing of it written)."""
        execution = _Execution(key, params, asyncio.get_running_loop().create_future())
        self._enqueue(execution)
        row: Row = await execution.answer
        return row

    async def _write(self, batch: list[_Execution]) -> None:
        try:
            pool = await self._pool.get()
            if len(batch) == 1:
                await self._alone(pool, batch[0])
                return
            batch.sort(key=lambda e: e.key)  # the accounts' locks in one order
            statement = compiled(self._statement)
            try:
                async with pool.acquire() as conn:
                    rows = await conn.fetchmany(
                        statement.sql, [statement.args(e.params) for e in batch]
                    )
            except Exception as exc:  # nothing written: each alone, its own answer
                log.debug("a batch of %d failed (%s); one by one", len(batch), exc)
                for execution in batch:
                    await self._alone(pool, execution)
                return
            for execution, row in zip(batch, rows, strict=True):
                if not execution.answer.done():
                    execution.answer.set_result(tuple(row))
        except BaseException as exc:
            for execution in batch:
                if not execution.answer.done():
                    if isinstance(exc, asyncio.CancelledError):
                        execution.answer.cancel()
                    else:
                        execution.answer.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise

    async def _alone(self, pool: Any, execution: _Execution) -> None:
        try:
            value = await PgRunner(pool).fetchrow(self._statement, execution.params)
        except Exception as exc:  # Conflict included: its own error
            if not execution.answer.done():
                execution.answer.set_exception(exc)
            return
        if not execution.answer.done():
            execution.answer.set_result(tuple(value) if value is not None else None)
