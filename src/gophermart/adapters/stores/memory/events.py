"""The memory store's events: written by its unit of work with the entry or the status
they tell of (unit_of_work.py), numbered when it commits (``MemoryDatabase.publish``,
under the store's lock: commit order), read and pruned here as the SQL stores do."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime

from gophermart.adapters.stores.memory.state import MemoryDatabase, NewEvent
from gophermart.domain.accounts import LedgerEntry
from gophermart.domain.events import (
    ANNOUNCED_STATUSES,
    Event,
    EventsPruned,
    ledger_data,
    ledger_type,
    order_data,
    order_type,
)
from gophermart.domain.orders import Order


def ledger_event(entry_id: int, entry: LedgerEntry) -> NewEvent:
    data = ledger_data(
        entry_id,
        entry.kind,
        entry.order_number.value if entry.order_number else None,
        entry.stored_amount,
        entry.owed_change,
        entry.reason,
        entry.hold_id,
    )
    return NewEvent(ledger_type(entry.kind), entry.user_id, entry.at, data)


def order_events(order: Order) -> list[NewEvent]:
    """The event of an order now in ``order.status``, if that status is announced (the
    store's clock: a status change has no time of its own, as in SQL)."""
    if order.status not in ANNOUNCED_STATUSES:
        return []
    accrual = order.accrual.cents if order.accrual else None
    data = order_data(order.number.value, order.status, accrual)
    return [NewEvent(order_type(order.status), order.owner, datetime.now(UTC), data)]


class MemoryEventFeed:
    """``EventFeed`` and ``EventUpkeep`` over the memory store's committed events."""

    cadence: float = 1.0

    def __init__(self, database: MemoryDatabase) -> None:
        self._db = database
        self._counted: int | None = None

    async def after(self, cursor: int, limit: int) -> Sequence[Event]:
        if cursor < self._db.pruned_through:
            raise EventsPruned(cursor, self._db.pruned_through)
        kept = self._db.events
        start = bisect.bisect_right(kept, cursor, key=lambda e: e.id)
        return kept[start : start + limit]

    async def last_id(self) -> int:
        return self._db.last_event_id

    async def wait(self, cursor: int, seconds: float) -> None:
        published = self._db.published.current()
        if self._db.last_event_id > cursor:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(published.wait(), seconds)

    async def sequence(self) -> int:
        newest = self._db.last_event_id
        written = 0 if self._counted is None else newest - self._counted
        self._counted = newest
        return written

    async def prune(self, older_than: datetime, keep_from: int | None, limit: int) -> int:
        kept = self._db.events
        young = next((i for i, e in enumerate(kept) if e.at >= older_than), len(kept))
        if keep_from is not None:
            young = min(young, bisect.bisect_left(kept, keep_from, key=lambda e: e.id))
        gone = min(young, limit)
        if gone:
            self._db.pruned_through = kept[gone - 1].id
            del kept[:gone]
        return gone
