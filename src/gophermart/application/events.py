"""The feed of events (SPEC "Events"): reading it from a cursor, and keeping it.

A consumer keeps the id of the last event it handled (its cursor) and asks for what
comes after it: :meth:`Events.stream` yields every event after the cursor in id order,
then waits for new ones. Delivery is at least once from the cursor the consumer stored:
one that stores its cursor after handling an event sees it again after a crash between
the two, never misses one. Ids increase in commit order, so no event committed later
appears before a cursor already passed.

The worker keeps the feed: :meth:`sequence_until` makes committed events readable where
the store needs it (PostgreSQL's sequencer) and counts them; :meth:`prune_until`
deletes events older than the retention (``GOPHERMART_EVENTS_RETENTION``), never one a
:class:`~gophermart.application.ports.RetentionFloor` still needs (the webhooks'
undelivered ones). A cursor older than what was pruned is answered
:class:`~gophermart.domain.events.EventsPruned` (with the cursor to resume from), never
skipped silently.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from functools import partial
from typing import Final

from gophermart.application.periodic import in_batches, repeat_until
from gophermart.application.ports import (
    Clock,
    EventFeed,
    EventMetrics,
    EventUpkeep,
    NoEventMetrics,
    NoRetentionFloor,
    RetentionFloor,
)
from gophermart.domain.errors import InvalidInput
from gophermart.domain.events import Event

log = logging.getLogger("gophermart.events")

#: Events kept by default (``GOPHERMART_EVENTS_RETENTION``).
RETENTION: Final = timedelta(days=7)
#: Events read per page, and deleted per statement by retention.
PAGE: Final = 500
PRUNE_BATCH: Final = 5000
#: The longest single wait for news (each wait is a store call; an outage is then seen
#: by the next read at the latest this late).
WAIT_STEP: Final = 1.0


class Events:
    def __init__(
        self,
        feed: EventFeed,
        upkeep: EventUpkeep,
        clock: Clock,
        retention: timedelta = RETENTION,
        floor: RetentionFloor | None = None,
        metrics: EventMetrics | None = None,
    ) -> None:
        self._feed = feed
        self._upkeep = upkeep
        self._clock = clock
        self._retention = retention
        self._floor = floor or NoRetentionFloor()
        self._metrics = metrics or NoEventMetrics()

    async def stream(
        self, after: int | None = None, *, idle: float | None = None
    ) -> AsyncIterator[Event]:
        """Every event after the id ``after``, in id order, then each new one as it is
        committed: ``async for event in loyalty.events(after=cursor)``.

        ``after=None`` starts from now (only events committed from here on); ``0`` from
        the oldest event ever written. Store the id of each event once handled and pass
        it back after a restart: nothing is skipped (at least once from that cursor).
        ``idle``: end the iteration once no event came for that many seconds (``None``:
        wait for ever). A cursor older than retention raises
        :class:`~gophermart.EventsPruned` (its ``oldest`` is where to resume)."""
        if after is not None:
            _event_id(after)
        if idle is not None and not (_is_number(idle) and idle >= 0):
            raise InvalidInput("idle is a number of seconds (0 or more), or None")
        cursor = await self._feed.last_id() if after is None else after
        quiet_since = time.monotonic()
        while True:
            page = await self._feed.after(cursor, PAGE)
            for event in page:
                yield event
                cursor = event.id
            if page:
                quiet_since = time.monotonic()
            if len(page) == PAGE:
                continue
            step = WAIT_STEP
            if idle is not None:
                step = min(step, idle - (time.monotonic() - quiet_since))
                if step <= 0:
                    return
            await self._feed.wait(cursor, step)

    async def page(self, after: int, limit: int = PAGE) -> Sequence[Event]:
        """Up to ``limit`` events after the id ``after``, in id order, without waiting."""
        _event_id(after)
        if not (_is_number(limit) and isinstance(limit, int) and 1 <= limit <= PAGE):
            raise InvalidInput(f"limit is a whole number from 1 to {PAGE}")
        return await self._feed.after(after, limit)

    async def last_id(self) -> int:
        """The newest event's id (0 if none yet): a cursor meaning "from now on"."""
        return await self._feed.last_id()

    # --- the worker's chores -------------------------------------------------------

    async def sequence(self) -> int:
        """Make the committed events readable (PostgreSQL's sequencer; elsewhere they
        already are) and count them as written."""
        written = await self._upkeep.sequence()
        if written:
            self._metrics.events_written(written)
        return written

    async def sequence_until(self, stop: asyncio.Event) -> None:
        """:meth:`sequence` at the store's cadence until ``stop`` (the worker)."""
        every = getattr(self._upkeep, "cadence", 1.0)
        await repeat_until(stop, every, self.sequence, log, "sequencing events")

    async def prune(self, batch: int = PRUNE_BATCH) -> int:
        """Delete the events older than the retention, but none a floor still needs;
        how many were deleted."""
        older_than = self._clock.now() - self._retention
        keep_from = await self._floor.keep_from()
        return await in_batches(partial(self._upkeep.prune, older_than, keep_from), batch)

    async def prune_until(self, stop: asyncio.Event, every: float = 60.0) -> None:
        """:meth:`prune` every ``every`` seconds until ``stop`` (the worker)."""
        await repeat_until(stop, every, self.prune, log, "pruning events")


#: The largest id a store keeps (a signed 64-bit column).
LAST_ID: Final = 2**63 - 1


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _event_id(value: object) -> int:
    """``value`` if it is an event id (a cursor): a whole number from 0."""
    if not (_is_number(value) and isinstance(value, int) and 0 <= value <= LAST_ID):
        raise InvalidInput("after is an event id: a whole number, 0 or more")
    return value
