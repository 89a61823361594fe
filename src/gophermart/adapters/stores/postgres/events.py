"""PostgreSQL's feed: the sequencer that numbers events in commit order, and LISTEN.

Writers (migration 0009's triggers, in the writer's own transaction) put events in
``event_outbox``, whose ``seq`` is *write* order: two transactions can commit in the
other order, so a reader paging by ``seq`` could pass an id that a later commit then
fills in. :data:`SEQUENCE` moves the committed outbox rows into ``events``, numbering
them from ``events``' own sequence as it goes, and only one run at a time does so
(``pg_try_advisory_xact_lock``, per schema): a run that starts after another finished
sees everything that one saw committed and numbers after it, so every id a reader sees
was given after every id it has already seen. Within one run rows are numbered in
``seq`` order, which for one user is commit order (their writes lock their account).

Why not a watermark (``pg_current_xact_id`` / xid8, the xmin of running transactions)?
It has no move and no lock, but it stalls the whole feed behind the oldest open
transaction in the database, and a shop that embeds Gophermart shares the database
with its own long transactions. The sequencer is stalled by nothing but its own run.

Every worker process runs it (beside the holds' sweep), and so does every process
waiting on the feed, so a host without a worker still sees its events; runs that find
the lock taken do nothing. After moving rows a run NOTIFYs the events channel, once per
run however many it moved: a burst of commits costs each listener one wake-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from typing import Any, Final

from sqlalchemy import (
    CTE,
    Select,
    case,
    delete,
    func,
    insert,
    literal,
    select,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from gophermart.adapters.stores import Signal
from gophermart.adapters.stores.postgres.listener import PgOrderListener
from gophermart.adapters.stores.sql.events import SqlEventFeed
from gophermart.adapters.stores.sql.schema import event_outbox, events
from gophermart.application.ports import PoolStats

#: Events committed per channel of each deployment (channels are per database).
EVENTS_CHANNEL: Final = "gophermart_events"
#: The advisory lock's first key (the second is the schema's): "gm" + "ev".
LOCK_CLASS: Final = 0x676D6576
#: Outbox rows moved by one run at most (a backlog is moved over a few runs).
MOVE_AT_MOST: Final = 5000

_MOVED_COLUMNS = ("type", "user_id", "at", "entry_id", "order_id")


def events_channel(schema: str | None) -> str:
    return EVENTS_CHANNEL if schema is None else f"{EVENTS_CHANNEL}_{schema}"


def lock_key(schema: str | None) -> int:
    """The advisory lock's second key: one sequencer per deployment's schema (as a
    signed 32-bit integer, which pg_try_advisory_xact_lock(int, int) takes)."""
    key = zlib.crc32((schema or "").encode())
    return key - 2**32 if key >= 2**31 else key


def sequencing(schema: str | None) -> Select[Any]:
    """One run, one statement (autocommit): take the lock or do nothing; move up to
    :data:`MOVE_AT_MOST` committed outbox rows, oldest first, numbered in that order;
    NOTIFY once if any moved. Back: how many moved.

    The lock is taken by an InitPlan before any row is read, but after the statement's
    snapshot: a run may see rows that the previous run (committed meanwhile) already
    moved; deleting them finds them gone, and only what this run deletes is numbered."""
    locked = select(
        func.pg_try_advisory_xact_lock(literal(LOCK_CLASS), literal(lock_key(schema)))
    ).scalar_subquery()
    oldest = (
        select(event_outbox.c.seq).where(locked).order_by(event_outbox.c.seq).limit(MOVE_AT_MOST)
    )
    moved: CTE = (
        delete(event_outbox)
        .where(event_outbox.c.seq.in_(oldest))
        .returning(event_outbox.c.seq, *(event_outbox.c[name] for name in _MOVED_COLUMNS))
        .cte("moved")
    )
    numbered: CTE = (
        insert(events)
        .from_select(
            list(_MOVED_COLUMNS),
            # The ids (events' own sequence, the column's default) are drawn row by row
            # in this order.
            select(*(moved.c[name] for name in _MOVED_COLUMNS)).order_by(moved.c.seq),
        )
        .returning(events.c.id)
        .cte("numbered")
    )
    count = select(func.count().label("n")).select_from(numbered).subquery("counted")
    return select(
        count.c.n,
        case(
            (count.c.n > 0, func.pg_notify(events_channel(schema), "")),
            else_=None,
        ),
    )


class PgEventFeed(SqlEventFeed):
    """The feed on PostgreSQL: reads as SQLite's, plus the sequencer (:meth:`sequence`)
    and a LISTEN connection, opened by the first :meth:`wait`, closed with the store
    (it is one of the store's own pools to its lifecycle: ``stats``, ``close``)."""

    #: How often the worker runs the sequencer, and a waiting reader at the least.
    cadence: float = 0.02

    def __init__(
        self,
        write: AsyncEngine,
        read: AsyncEngine,
        dsn: str,
        schema: str | None = None,
        timeout: float = 5.0,
        poll: float = 0.02,
    ) -> None:
        super().__init__(write, read, poll)
        self._sequencing = sequencing(schema)
        self._listener = PgOrderListener(dsn, events_channel(schema), timeout=timeout)
        self._listening = False
        self._heard = Signal()
        self._run = asyncio.Lock()

    async def sequence(self) -> int:
        """One run of the sequencer (nothing when another process's run holds the lock,
        or this process's is under way): how many events it numbered."""
        if self._run.locked():
            async with self._run:  # the run under way answers for this one too
                return 0
        async with self._run, self._write.connect() as conn:
            auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
            moved = int((await auto.execute(self._sequencing)).scalar_one())
        if moved:
            self._heard.set()  # this process's readers need not wait for the NOTIFY
        return moved

    async def _wait(self, cursor: int, seconds: float) -> None:
        if not self._listening:
            self._listening = True
            self._listener.start(self._heard)  # type: ignore[arg-type]
        deadline = time.monotonic() + seconds
        heard = self._heard.current()
        if await self.sequence() or await self.last_id() > cursor:
            return
        # Then a run of our own every ``poll`` (a host with no worker still sees its
        # events), until one moves something or any process's run is heard of.
        while (left := deadline - time.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(heard.wait(), min(left, self._poll))
                return
            heard = self._heard.current()
            if await self.sequence():
                return

    def stats(self) -> PoolStats | None:
        return None

    async def close(self, grace: float = 2.0) -> None:
        if self._listening:
            self._listening = False
            await self._listener.stop()


__all__ = ["EVENTS_CHANNEL", "PgEventFeed", "events_channel", "sequencing"]
