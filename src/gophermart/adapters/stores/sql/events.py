"""The feed of events on both SQL stores (SQLAlchemy Core over the store's engines).

The events are written by the database itself, in the writer's transaction (migration
0009's triggers); this module reads them and keeps them: :class:`SqlEventFeed` is the
``EventFeed`` and ``EventUpkeep`` of SQLite, and the base of PostgreSQL's (which adds the
sequencer and LISTEN: stores/postgres/events.py).

A row names its ledger entry or its order; the payload is read from them with one join
(``EVENTS_AFTER``) and mapped once (:func:`event_of`, with domain/events.py's builders).
Retention deletes a prefix of the ids (never an event after one that is kept) and
records the last id it deleted (``service_state``), so a cursor before it is answered
:class:`~gophermart.domain.events.EventsPruned` instead of silently skipping.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gophermart.adapters.stores.guard import unguarded
from gophermart.adapters.stores.sql.schema import events, ledger, orders, service_state
from gophermart.domain.accounts import EntryKind
from gophermart.domain.events import (
    ORDER_PREFIX,
    Event,
    EventsPruned,
    ledger_data,
    order_data,
)
from gophermart.domain.orders import OrderStatus
from gophermart.domain.users import UserId

#: service_state's key for the last id retention deleted.
PRUNED_THROUGH: Final = "events_pruned_through"

EVENTS_AFTER = (
    select(
        events.c.id,
        events.c.type,
        events.c.user_id,
        events.c.at,
        events.c.entry_id,
        ledger.c.kind,
        ledger.c.order_number,
        ledger.c.amount,
        ledger.c.owed_change,
        ledger.c.reason,
        ledger.c.hold_id,
        orders.c.number,
        orders.c.accrual,
    )
    .select_from(
        events.outerjoin(ledger, ledger.c.id == events.c.entry_id).outerjoin(
            orders, orders.c.id == events.c.order_id
        )
    )
    .where(events.c.id > bindparam("cursor"))
    .order_by(events.c.id)
    .limit(bindparam("limit"))
)
LAST_EVENT = select(func.max(events.c.id))
_PRUNED = select(service_state.c.value).where(service_state.c.key == PRUNED_THROUGH)


def event_of(row: Sequence[Any]) -> Event:
    """An ``EVENTS_AFTER`` row as the event it is (the one mapping of the payload)."""
    id_, type_, user_id, at, entry_id, kind, entry_order, amount, owed, reason, hold_id = row[:11]
    number, accrual = row[11:]
    if entry_id is not None:
        data = ledger_data(entry_id, EntryKind(kind), entry_order, amount, owed, reason, hold_id)
    else:
        status = OrderStatus(type_.removeprefix(ORDER_PREFIX).upper())
        data = order_data(number, status, accrual)
    return Event(id_, type_, UserId(user_id), at, data)


async def pruned_through(conn: AsyncConnection) -> int:
    value = await conn.scalar(_PRUNED)
    return int(value) if value is not None else 0


def _record_pruned(dialect: str, last: int) -> Any:
    """The last deleted id, kept (the greater of the old and the new)."""
    insert = (postgresql if dialect == "postgresql" else sqlite).insert(service_state)
    statement = insert.values(key=PRUNED_THROUGH, value=str(last))
    return statement.on_conflict_do_update(
        index_elements=[service_state.c.key], set_={"value": str(last)}
    )


class SqlEventFeed:
    """``EventFeed`` and ``EventUpkeep`` over a write and a read engine. ``poll``:
    how often :meth:`wait` looks for new events (SQLite has no notifications)."""

    #: How often the worker calls :meth:`sequence` (here only to count new events).
    cadence: float = 1.0

    def __init__(self, write: AsyncEngine, read: AsyncEngine, poll: float = 0.05) -> None:
        self._write = write
        self._read = read
        self._poll = poll
        self._counted: int | None = None  # the last id :meth:`sequence` saw

    async def after(self, cursor: int, limit: int) -> Sequence[Event]:
        async with self._read.connect() as conn:
            rows = (await conn.execute(EVENTS_AFTER, {"cursor": cursor, "limit": limit})).all()
            # Read after the events: a prune between the two is seen here (its deletion
            # and its record commit together), so a gap is never answered as complete.
            pruned = await pruned_through(conn)
        if cursor < pruned:
            raise EventsPruned(cursor, pruned)
        return [event_of(row) for row in rows]

    async def last_id(self) -> int:
        async with self._read.connect() as conn:
            newest = await conn.scalar(LAST_EVENT)
            return max(int(newest or 0), await pruned_through(conn))

    @unguarded
    async def wait(self, cursor: int, seconds: float) -> None:
        """A hint, never an error: an outage ends the wait (quietly, at the latest after
        ``seconds``), and the next read, which is guarded, reports it."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(seconds):
                await self._wait(cursor, seconds)

    async def _wait(self, cursor: int, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if await self.last_id() > cursor:
                return
            await asyncio.sleep(min(self._poll, max(0.0, deadline - time.monotonic())))

    async def sequence(self) -> int:
        """Nothing to number on SQLite: how many events were written since the last call
        (the first call counts none)."""
        newest = await self.last_id()
        written = 0 if self._counted is None else max(0, newest - self._counted)
        self._counted = newest
        return written

    async def prune(self, older_than: datetime, keep_from: int | None, limit: int) -> int:
        # Every event before the first young one (its id is the bound; with none young,
        # every event): what is kept is always every event after some id.
        young = select(func.min(events.c.id)).where(events.c.at >= older_than).scalar_subquery()
        bound = func.coalesce(young, select(func.max(events.c.id) + 1).scalar_subquery())
        picked = select(events.c.id).where(events.c.id < bound)
        if keep_from is not None:
            picked = picked.where(events.c.id < keep_from)
        picked = picked.order_by(events.c.id).limit(limit)
        async with self._write.begin() as conn:
            gone = (
                await conn.execute(
                    delete(events).where(events.c.id.in_(picked)).returning(events.c.id)
                )
            ).scalars()
            deleted = list(gone)
            if deleted:
                last = max(max(deleted), await pruned_through(conn))
                await conn.execute(_record_pruned(conn.dialect.name, last))
        return len(deleted)
