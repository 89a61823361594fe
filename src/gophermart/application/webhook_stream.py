"""An endpoint's *stream*: its events POSTed straight from the feed, each delivery
recorded once, as its first try left it (docs/architecture.md, "Webhooks").

One worker process at a time holds an endpoint's stream (a lease in the store, kept by
every settle). It reads the feed after the endpoint's cursor, hands each user's events
to one slot in order (a user's later event is POSTed only after the earlier one was
delivered), and every few milliseconds *settles*: in one transaction, the deliveries of
every event up to the *watermark* (the last event id before the oldest one still in
flight) are recorded and the cursor moves there, by compare-and-set. On the happy path
a delivery costs one row, inserted delivered; the queue (claims, outcomes, retries)
carries only what did not go through:

* a failed first try is recorded pending, due again after the backoff, and the rest of
  its user's events queue behind it (recorded pending, untried); so do the events of a
  user who already has a delivery queued (:meth:`WebhookStore.queued`, asked once per
  read for the users it read);
* while the endpoint is failing (its last answer was not a 2xx), nothing is POSTed from
  the stream: events are recorded untried and the queue's backoff paces the endpoint
  until it answers again.

Nothing is lost to a crash: the cursor moves only past recorded deliveries, so a killed
worker's unsettled events are read again, and POSTed again (at least once), by whoever
takes the stream over when its lease runs out. A stream lost to another process (a
settle that finds the lease taken) drops what it had in flight for the same reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gophermart.application.errors import StoreUnavailable
from gophermart.application.periodic import wait_any
from gophermart.application.ports import NewDelivery
from gophermart.domain.events import Event, EventsPruned
from gophermart.domain.webhooks import matches

if TYPE_CHECKING:
    from gophermart.application.webhook_delivery import EndpointLoop

log = logging.getLogger("gophermart.webhooks")

#: Settle after this many finished deliveries, or this many seconds after the first.
SETTLE_AFTER = 256
SETTLE_EVERY = 0.02


@dataclass(slots=True)
class _Chain:
    """One user's events in this stream, POSTed in order by one slot at a time;
    ``blocked``: the rest are recorded untried (an earlier one is queued)."""

    events: deque[Event] = field(default_factory=deque)
    blocked: bool = False


class _Chains:
    """Every user's chain in this stream, and the users whose chain waits for a slot."""

    def __init__(self) -> None:
        self.of: dict[int, _Chain] = {}
        self.ready: deque[int] = deque()

    def add(self, event: Event) -> None:
        chain = self.of.get(event.user_id)
        if chain is None:
            chain = self.of[event.user_id] = _Chain()
            self.ready.append(event.user_id)
        chain.events.append(event)

    def ended(self, user: int, chain: _Chain) -> None:
        if self.of.get(user) is chain:
            del self.of[user]  # a later event of the user starts a new chain


class _Unsettled:
    """What the stream read and has not settled yet: the events still to finish (in id
    order), the finished deliveries, and per user how many of those went to the queue
    (the user's later events must queue behind them until the store shows them)."""

    def __init__(self) -> None:
        self.unfinished: dict[int, None] = {}
        self.done: list[NewDelivery] = []
        self.queued: dict[int, int] = {}
        self.first_done_at: float | None = None  # the loop's clock

    def finish(self, new: NewDelivery, now: float) -> None:
        self.unfinished.pop(new.event_id, None)
        self.done.append(new)
        if new.recorded_pending:
            self.queued[new.user_id] = self.queued.get(new.user_id, 0) + 1
        if self.first_done_at is None:
            self.first_done_at = now

    def watermark(self, read: int) -> int:
        """The last event id up to which every event read (up to ``read``) is finished."""
        return next(iter(self.unfinished)) - 1 if self.unfinished else read

    def upto(self, watermark: int) -> list[NewDelivery]:
        """The finished deliveries up to ``watermark``, in event order."""
        return sorted((n for n in self.done if n.event_id <= watermark), key=_event_id)

    def settled(self, watermark: int, rows: list[NewDelivery], now: float) -> None:
        """``rows`` are recorded: the store shows the queued ones from now on."""
        self.done = [n for n in self.done if n.event_id > watermark]
        self.first_done_at = now if self.done else None
        for new in rows:
            if new.recorded_pending and (left := self.queued[new.user_id] - 1):
                self.queued[new.user_id] = left
            elif new.recorded_pending:
                del self.queued[new.user_id]


class EndpointStream:
    """The stream of one endpoint in this process (the module docstring)."""

    def __init__(self, loop: EndpointLoop) -> None:
        self._loop = loop
        self._w = loop.worker
        self._id = loop.target.id
        self._keep_every = self._w.config.policy.lease.total_seconds() / 3  # the lease
        self._held = False
        self._slots = 0  # slots sending this stream's chains (tasks of ``slots``)
        self._stopping = False  # the slots stop after their POST in flight
        self._generation = 0  # a stream lost and taken again: its old slots' work is void
        self._news: asyncio.Future[None] | None = None  # waiting for the feed
        self._reset(0)  # the endpoint's cursor comes with the stream (_take)

    def _reset(self, cursor: int) -> None:
        self._settled = cursor  # the endpoint's cursor, as this stream last moved it
        self._read = cursor  # the last event id read from the feed
        self._open = _Unsettled()
        self._chains = _Chains()
        self._read_at = 0.0  # the feed is read again no sooner (a read found few)
        self._kept_at = _clock()
        self._generation += 1

    async def run(self, stop: asyncio.Event, slots: asyncio.TaskGroup) -> None:
        """Hold the stream and keep it moving until ``stop``; then let the POSTs in
        flight end, settle what they came to and give the stream up."""
        idle = self._w.config.idle
        while not stop.is_set():
            self._loop.stream_wake.clear()
            try:
                if not self._held and not await self._take():
                    await wait_any(stop, None, idle)
                    continue
                if self._room() and _clock() >= self._read_at:
                    await self._read_more()
                self._dispatch(slots)
                await self._settle_if_due()
            except Exception as exc:
                if not isinstance(exc, StoreUnavailable):  # an outage is logged where seen
                    log.exception("webhook %d: the stream failed; retrying", self._id)
                await wait_any(stop, None, idle)
                continue
            await wait_any(stop, self._loop.stream_wake, *self._waits())
        await self._close()

    def _room(self) -> bool:
        return len(self._open.unfinished) < self._w.config.window

    def _waits(self) -> tuple[float, *tuple[Awaitable[object], ...]]:
        """Seconds until a read, a settle or the lease is due; news of the feed."""
        now, idle = _clock(), self._w.config.idle
        due = [self._kept_at + self._keep_every - now]
        if self._open.first_done_at is not None:
            due.append(self._open.first_done_at + SETTLE_EVERY - now)
        if self._room() and self._read_at > now:
            due.append(self._read_at - now)
        elif self._room():  # the feed had nothing: wait for news of it
            if self._news is None or self._news.done():
                self._news = asyncio.ensure_future(self._w.feed.wait(self._read, idle))
            # Shielded, kept for the next round: a wake-up for anything else must not
            # cancel it mid-query (a cancelled statement costs the pool its connection).
            return max(0.001, min(due)), asyncio.shield(self._news)
        return (max(0.001, min(due)),)

    async def _take(self) -> bool:
        w, now = self._w, self._w.clock.now()
        cursor = await w.store.stream(self._id, w.owner, now, now + w.config.policy.lease)
        if cursor is not None:
            self._reset(cursor)
        self._held = cursor is not None
        return self._held

    async def _read_more(self) -> None:
        """Read the next events into the users' chains. A full batch is followed by the
        next read at once, a partial one after ``read_every``; after none the stream
        waits for news of the feed."""
        w = self._w
        try:
            events = await w.feed.after(self._read, w.config.batch)
        except EventsPruned as exc:  # cannot happen while the floor holds; say so loudly
            log.error("webhook %d: %s; skipping to %d", self._id, exc, exc.oldest)
            self._read = max(self._read, exc.oldest)
            return
        full = len(events) >= w.config.batch
        self._read_at = _clock() + (w.config.read_every if events and not full else 0.0)
        if not events:
            return
        chosen = [e for e in events if matches(self._loop.target.events, e.type)]
        failing = self._loop.failing
        # Every user of the batch, those in flight too: a chain may end during the look.
        users = {e.user_id for e in chosen}
        held = users if failing else await w.store.queued(self._id, users)
        for event in chosen:
            user = event.user_id
            if user not in self._chains.of and (user in held or user in self._open.queued):
                # Queued behind its user's earlier delivery: recorded untried.
                self._finish(_untried(event, self._w.encode(event)))
            else:
                self._chains.add(event)
                self._open.unfinished[event.id] = None
        self._read = events[-1].id

    def _dispatch(self, slots: asyncio.TaskGroup) -> None:
        """A slot per ready chain while the endpoint has free ones."""
        loop, generation = self._loop, self._generation
        while self._chains.ready and loop.free_slots() > 0:
            loop.in_flight += 1
            self._slots += 1
            slots.create_task(self._slot(self._chains.ready.popleft(), generation))

    async def _slot(self, user: int, generation: int) -> None:
        """Send ready chains one after another (a task per slot, not per chain)."""
        try:
            while True:
                await self._send(user, self._chains.of[user], generation)
                if generation != self._generation or self._stopping or not self._chains.ready:
                    return
                user = self._chains.ready.popleft()
        finally:
            self._slots -= 1
            self._loop.slot_ended()
            if self._stopping:
                self._loop.stream_wake.set()

    async def _send(self, user: int, chain: _Chain, generation: int) -> None:
        """POST the user's events one after the other; a failure queues the rest."""
        try:
            while chain.events and generation == self._generation and not self._stopping:
                event = chain.events[0]
                body = self._w.encode(event)
                tried = None if chain.blocked else await self._loop.first_try(event.id, body)
                if generation != self._generation:
                    return  # the stream was lost meanwhile: the new owner sends it again
                if tried is not None and tried.retry_at is not None:
                    chain.blocked = True
                chain.events.popleft()
                self._finish(NewDelivery(event.id, user, event.type, event.at, body, tried))
        except Exception:  # a bug: the cursor waits before the event, and this says why
            log.exception("webhook %d: sending event %d failed", self._id, chain.events[0].id)
        finally:
            self._chains.ended(user, chain)

    def _finish(self, new: NewDelivery) -> None:
        self._open.finish(new, _clock())
        if len(self._open.done) >= SETTLE_AFTER:
            self._loop.stream_wake.set()

    async def _settle_if_due(self) -> None:
        now, first = _clock(), self._open.first_done_at
        keep = now - self._kept_at >= self._keep_every
        busy = first is not None and (
            len(self._open.done) >= SETTLE_AFTER or now - first >= SETTLE_EVERY
        )
        # Events the filter passed over move the cursor too, at the lease's pace when idle.
        watermark = self._open.watermark(self._read)
        moved = watermark > self._settled and now - self._kept_at >= self._w.config.idle
        if keep or busy or moved:
            await self.settle()

    async def settle(self, give_up: bool = False) -> None:
        """Record every finished delivery up to the watermark and move the cursor there,
        and keep the lease (or give it up); a lost stream is dropped (module docstring)."""
        w, generation = self._w, self._generation
        upto = self._open.watermark(self._read)
        rows = self._open.upto(upto)
        now = w.clock.now()
        until = now if give_up else now + w.config.policy.lease
        moved = await w.store.settle(self._id, w.owner, self._settled, upto, rows, now, until)
        if generation != self._generation:
            return
        if not moved:
            log.info("webhook %d: the stream moved to another worker process", self._id)
            self._held = False
            self._generation += 1
            return
        self._settled, self._kept_at = upto, _clock()
        self._open.settled(upto, rows, self._kept_at)
        if any(new.recorded_pending for new in rows):
            self._loop.wake.set()  # the queue has new deliveries: some may be due now

    async def _close(self) -> None:
        """Stopping: the slots stop after their POST in flight; what they finished is
        settled and the stream given up, so another process takes it over at once."""
        self._stopping = True
        if self._news is not None:
            self._news.cancel()
        if not self._held:
            return
        while self._slots:
            self._loop.stream_wake.clear()
            await self._loop.stream_wake.wait()
        try:
            await self.settle(give_up=True)
        except Exception as exc:  # the lease runs out instead
            log.warning("webhook %d: giving up the stream failed: %s", self._id, exc)
        self._held = False


def _clock() -> float:
    return asyncio.get_running_loop().time()


def _untried(event: Event, body: bytes) -> NewDelivery:
    return NewDelivery(event.id, event.user_id, event.type, event.at, body)


_event_id: Callable[[NewDelivery], int] = lambda new: new.event_id  # noqa: E731
