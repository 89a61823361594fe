"""Group commit of withdrawals on PostgreSQL: many requests, one statement, one flush.

A withdrawal's write is one ledger entry and one balance change. Alone, each is its
own transaction, so each pays a commit and its WAL flush, and a hot account is bound by
its row lock held through every flush (docs/performance.md). :class:`PgGroupCommit`
collects the debits that the withdrawals of one server process hand it while earlier
batches are being written (or, when idle, those of one event-loop turn) and writes
them together as *one statement* (statements.WITHDRAW_BATCH), which is its own
transaction:

1. the batch's accounts are locked in user order (two batches never deadlock) and read
   as the statement's snapshot has them;
2. each account's debits are decided in arrival order on that balance: a debit that
   fits is accepted and spends, one that does not is decided again alone (below);
3. the accepted entries are written (``ON CONFLICT DO NOTHING``: an order number taken
   meanwhile by another process writes nothing for that debit, which answers as a
   conflict, and the others go on), each account moved by the sum of *its written*
   entries; ``CHECK (balance >= 0)`` still refuses any overdraft;
4. the statement commits (one flush), and only then is any debit answered.

The row locks are held only while PostgreSQL runs that one statement and flushes it,
never across a round trip to a busy event loop. A batch waits for rows another batch
holds (milliseconds), but not for a row held elsewhere for longer than the commit
connections' ``lock_timeout``: then it is sent again passing locked rows by, and their
debits are written alone, waiting for their lock on a connection of the read pool.

Debits refused on an account where a conflict left money unspent go back to the queue
and are decided again after what was written, so every answer is that of *some* order
of the concurrent requests. If the batch fails as a whole (a lost connection, say), its
debits are written one at a time, each with its own answer or error: one bad debit
cannot fail the others, and a debit whose first attempt did commit answers as a
conflict, which the use case turns into the replay it is.

The batch's ``FOR UPDATE`` reads the balance as the statement's snapshot has it, which
is not the latest when another transaction changed the row after the statement began (a
hold, an adjustment, a reversal, a credit; a stress test raced 9 of 450 batches so).
Lower than the latest, a debit that fits would be refused: so a refusal is never
answered from the batch, the debit is written alone. Higher, the batch would overdraw:
``CHECK (balance >= 0)`` fails the whole statement, nothing is written, and its debits
are written alone in turn. Alone is :func:`record_moving`: an UPDATE whose WHERE states
the debit rule, which PostgreSQL checks again on the row's latest version once it has
the lock: exact. Only refusals and raced debits pay for it; a debit that fits is
answered from its batch, as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

from asyncpg.exceptions import CheckViolationError, LockNotAvailableError

from gophermart.adapters.stores.postgres import statements as pg
from gophermart.adapters.stores.postgres.batches import Batches, StatementBatch
from gophermart.adapters.stores.postgres.coalesce import Coalescer
from gophermart.adapters.stores.postgres.pool import PgPool
from gophermart.adapters.stores.postgres.runner import PgRunner
from gophermart.adapters.stores.sql import statements as st
from gophermart.adapters.stores.sql.runners import Conflict, Row, Runner
from gophermart.adapters.stores.sql.statements import Statement
from gophermart.domain.accounts import EntryKind, LedgerEntry

log = logging.getLogger("gophermart.group_commit")


async def record_moving(runner: Runner, entry: LedgerEntry) -> bool:
    """One entry as one statement: the entry and its change of the figures, the debit
    rule in its UPDATE's WHERE, which PostgreSQL checks again on the row's latest
    version once it has the row's lock: exact however it is raced (unlike a read of the
    row, which sees the statement's snapshot). ``True``: written; ``False``: the balance
    did not cover it (or no such account); :class:`Conflict`: the order number is
    taken (a second withdrawal of an order). Nothing is written unless ``True``."""
    moving = pg.CREDIT_ENTRY if entry.kind is EntryKind.ACCRUAL else pg.MOVE_ENTRY
    return await runner.fetchval(moving, st.entry_params(entry)) is not None


def _batch_params(entries: Sequence[LedgerEntry]) -> dict[str, list[object]]:
    return {
        "users": [e.user_id for e in entries],
        "numbers": [e.number for e in entries],
        "amounts": [e.amount.cents for e in entries],
        "ats": [e.at for e in entries],
    }


class Outcome(Enum):
    WRITTEN = "written"
    REFUSED = "refused"  # the balance did not cover it
    CONFLICT = "conflict"  # the order number was taken


@dataclass(slots=True)
class _Debit:
    entry: LedgerEntry
    answer: asyncio.Future[Outcome]
    outcome: Outcome | None = field(default=None)


class _NotSent(Exception):
    """The batch could not even be sent (no connection): it wrote nothing."""

    def __init__(self, reason: Exception) -> None:
        super().__init__(str(reason))
        self.reason = reason


class PgGroupCommit(Batches[_Debit]):
    """The withdrawals of one process, batched: :meth:`for_withdrawal` reads what
    deciding one needs, coalesced with the other reads of the same event-loop turn
    (statements.FOR_WITHDRAWALS, on ``read_pool``); :meth:`debit` writes its entry in a
    group commit (on ``pool``).

    ``connections``: batches of withdrawals written at the same time, each on its own
    connection of ``pool``, which should be this object's alone and hold two more
    (:meth:`batch_of`: the holds' placements and captures). ``max_batch`` bounds one
    statement.
    """

    def __init__(
        self,
        pool: PgPool,
        *,
        read_pool: PgPool | None = None,
        connections: int = 2,
        max_batch: int = 512,
    ) -> None:
        super().__init__(connections, max_batch)
        self._pool = pool
        self._read_pool = read_pool or pool
        self._reads: Coalescer[tuple[int, str], Row] = Coalescer(self._read)
        #: A checkout's two writes, group-committed the same way (batches.py), each
        #: on one more connection of ``pool``.
        self._batches = {s: StatementBatch(pool, s) for s in (pg.PLACE_HOLD, pg.CAPTURE_HOLD)}

    def batch_of(self, statement: Statement) -> StatementBatch:
        """The group commit of ``statement``'s lone executions (PLACE_HOLD, CAPTURE_HOLD)."""
        return self._batches[statement]

    async def for_withdrawal(self, user_id: int, order_number: str) -> Row:
        """The FOR_WITHDRAWAL row of ``user_id`` and ``order_number``."""
        row = await self._reads.get((user_id, order_number))
        assert row is not None  # every asked pair has its row
        return row

    async def _read(self, asked: Sequence[tuple[int, str]]) -> dict[tuple[int, str], Row]:
        params = {"asked_users": [a[0] for a in asked], "asked_numbers": [a[1] for a in asked]}
        rows = await PgRunner(await self._read_pool.get()).fetch(pg.FOR_WITHDRAWALS, params)
        return {(row[0], row[1]): tuple(row[2:]) for row in rows}

    async def debit(self, entry: LedgerEntry) -> bool:
        """``True``: written and committed. ``False``: the balance did not cover it,
        nothing written. :class:`Conflict`: the order number is taken, nothing written."""
        debit = _Debit(entry, asyncio.get_running_loop().create_future())
        self._enqueue(debit)
        outcome = await debit.answer
        if outcome is Outcome.CONFLICT:
            raise Conflict(f"withdrawal for order {entry.order_number} exists")
        return outcome is Outcome.WRITTEN

    async def _write(self, batch: list[_Debit]) -> None:
        try:
            try:
                try:
                    await self._in_one_statement(batch, pg.WITHDRAW_BATCH)
                except LockNotAvailableError:  # a row held elsewhere: pass it by
                    await self._in_one_statement(batch, pg.WITHDRAW_SKIPPING)
            except _NotSent as exc:  # no connection: one by one would fare no better
                raise exc.reason from None
            except Exception as exc:
                if len(batch) == 1 and not isinstance(exc, CheckViolationError):
                    raise  # nothing to part: its error is its answer
                log.warning(
                    "a batch of %d debits failed (%s: %s); writing them one by one",
                    len(batch),
                    type(exc).__name__,
                    exc,
                )
                for debit in batch:
                    await self._alone(debit)
                return
        except asyncio.CancelledError:
            for debit in batch:
                debit.answer.cancel()
            raise
        except Exception as exc:
            for debit in batch:
                if not debit.answer.done():
                    debit.answer.set_exception(exc)
            return
        for debit in batch:
            if debit.outcome is not None and not debit.answer.done():
                debit.answer.set_result(debit.outcome)  # unless its request was cancelled

    async def _alone(self, debit: _Debit, on: PgPool | None = None) -> None:
        """One debit as its own transaction (a batch of one that waits for its account's
        lock, within the statement timeout), its own answer or its own error."""
        try:
            pool = await (on or self._pool).get()
            try:
                written = await record_moving(PgRunner(pool), debit.entry)
                outcome = Outcome.WRITTEN if written else Outcome.REFUSED
            except Conflict:
                outcome = Outcome.CONFLICT
        except Exception as exc:
            if not debit.answer.done():
                debit.answer.set_exception(exc)
            return
        if not debit.answer.done():
            debit.answer.set_result(outcome)

    def _wait_alone(self, debit: _Debit) -> None:
        """A debit the batch skipped, its account row being locked elsewhere: written
        alone, waiting for the lock on a connection of the read pool (within its
        statement timeout), so that neither the batch nor the group commit's own
        connections wait for it."""
        task = asyncio.get_running_loop().create_task(self._alone(debit, self._read_pool))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _in_one_statement(self, batch: list[_Debit], statement: Statement) -> None:
        """Write the batch as one statement (its own transaction: one flush). Debits
        refused on an account where a conflict left money unspent, and any debit whose
        order number an earlier debit of the batch uses, go back to the queue, to be
        decided again after what was written."""
        numbers: set[str] = set()
        sent: list[_Debit] = []
        later: list[_Debit] = []
        for debit in batch:  # the same number twice: the next batch sees what the first did
            debit.outcome = None
            number = debit.entry.number
            (later if number in numbers else sent).append(debit)
            numbers.add(number)
        params = _batch_params([d.entry for d in sent])
        try:
            pool = await self._pool.get()
            conn = await pool.acquire()
        except Exception as exc:
            raise _NotSent(exc) from exc
        try:
            rows = await PgRunner(conn).fetch(statement, params)
        finally:
            await pool.release(conn)
        moved: set[int] = set()
        freed: set[int] = set()
        for debit, (accepted, written, _, known) in zip(sent, rows, strict=True):
            if accepted is None and known:  # its account's row is held by someone else
                self._wait_alone(debit)
            elif accepted is None:  # no such account
                debit.outcome = Outcome.REFUSED
            elif not accepted:  # decided on the statement's snapshot: decided again, exactly
                self._wait_alone(debit)
            elif written:
                debit.outcome = Outcome.WRITTEN
                moved.add(debit.entry.user_id)
            else:  # its number was taken meanwhile: its money stayed on the account
                debit.outcome = Outcome.CONFLICT
                freed.add(debit.entry.user_id)
        if rows and rows[0][2] != len(moved):  # cannot happen: reconcile would tell
            log.error("a batch moved %d accounts for %d", rows[0][2], len(moved))
        again = [d for d in sent if d.outcome is Outcome.REFUSED and d.entry.user_id in freed]
        for debit in again:
            debit.outcome = None
        self._queue[:0] = sorted(again + later, key=batch.index)
