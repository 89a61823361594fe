"""The delivery worker: every event an endpoint subscribed to, POSTed at least once,
signed, in order per user (SPEC "Events"; docs/architecture.md, "Webhooks").

One loop per live endpoint, in every worker process (the server's own worker and each
``gophermart worker``), each doing three things, never a transaction held across the
network:

1. *fan out*: read the feed after the endpoint's cursor and, in one transaction, record
   a pending delivery for each event its filter matches and move the cursor past them
   (compare-and-set: of two processes fanning out the same events, one writes, the
   other re-reads the cursor). The delivery keeps the event's bytes;
2. *claim*: lease as many due deliveries as the endpoint has free slots, each the oldest
   pending one of its user (a user's later event waits for the earlier one to be
   delivered, or to fail for good). ``FOR UPDATE SKIP LOCKED`` and the lease make
   several processes safe; a killed worker's leases run out and another takes over;
3. *send*: POST the bytes, signed, within the deadline, and record the outcome in its
   own transaction: delivered (2xx), or tried again after an exponential backoff with
   full jitter, until the retry window is spent: then failed, listed and replayable.

One endpoint's loop and connections are its own: a slow or dead endpoint fills its own
``concurrency`` slots and nobody else's, and the API's requests never wait on any of it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from gophermart.application.errors import StoreUnavailable
from gophermart.application.ports import (
    ClaimedDelivery,
    Clock,
    DeliveryTarget,
    EventFeed,
    NewDelivery,
    NoWebhookMetrics,
    WebhookMetrics,
    WebhookSender,
    WebhookStore,
)
from gophermart.domain.events import Event, EventsPruned
from gophermart.domain.webhooks import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    Attempt,
    DeliveryPolicy,
    DeliveryState,
    Signer,
    matches,
)

log = logging.getLogger("gophermart.webhooks")


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    """How the worker paces itself: ``concurrency`` POSTs in flight per endpoint and
    process, ``batch`` events read from the feed at a time, and ``idle`` seconds between
    looks when nothing wakes it (a retry comes due at most that late)."""

    policy: DeliveryPolicy = field(default_factory=DeliveryPolicy)
    concurrency: int = 16
    batch: int = 500
    idle: float = 1.0
    #: A slot sends at most this many of one user's events in a row (each claimed in the
    #: transaction that records the one before) before it goes back to the pool.
    chain: int = 100
    #: The feed is read at most this often (seconds) while it has no backlog: a finished
    #: POST wakes the loop for a claim, not for a read of the feed each time (on
    #: PostgreSQL new events show up once per run of the sequencer, every 20 ms).
    fan_out_every: float = 0.02


class WebhookDelivery:
    """Keeps one :class:`_EndpointLoop` running per live endpoint (module docstring)."""

    def __init__(
        self,
        store: WebhookStore,
        feed: EventFeed,
        sender: WebhookSender,
        clock: Clock,
        encode: Callable[[Event], bytes],
        config: DeliveryConfig | None = None,
        metrics: WebhookMetrics | None = None,
        rnd: Callable[[], float] = random.random,
    ) -> None:
        self.store, self.feed, self.sender, self.clock = store, feed, sender, clock
        self.encode = encode
        self.config = config or DeliveryConfig()
        self.metrics: WebhookMetrics = metrics or NoWebhookMetrics()
        self.rnd = rnd

    async def run_until(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set; then the POSTs in flight finish (each within
        its deadline) and their outcomes are recorded."""
        loops: dict[int, tuple[asyncio.Task[None], asyncio.Event]] = {}
        failing = False
        try:
            while not stop.is_set():
                try:
                    targets = {t.id: t for t in await self.store.targets()}
                except StoreUnavailable:  # an outage: logged once where it was seen
                    failing = True
                except Exception:
                    if not failing:  # one traceback per outage, not one a second
                        log.exception("webhooks: reading the endpoints failed; retrying")
                    failing = True
                else:
                    failing = False
                    await self._follow(loops, targets)
                await wait_any(stop, None, self.config.idle)
        finally:
            for _, quit_loop in loops.values():
                quit_loop.set()
            await asyncio.gather(*(task for task, _ in loops.values()), return_exceptions=True)

    async def _follow(
        self,
        loops: dict[int, tuple[asyncio.Task[None], asyncio.Event]],
        targets: dict[int, DeliveryTarget],
    ) -> None:
        """Start a loop for each new endpoint; stop those of deleted ones."""
        for endpoint_id in [e for e in loops if e not in targets]:
            task, quit_loop = loops.pop(endpoint_id)
            quit_loop.set()
            await asyncio.gather(task, return_exceptions=True)
            await self.sender.forget(endpoint_id)
        for endpoint_id, target in targets.items():
            if endpoint_id not in loops:
                quit_loop = asyncio.Event()
                loop = _EndpointLoop(self, target)
                task = asyncio.create_task(loop.run(quit_loop), name=f"webhook-{endpoint_id}")
                loops[endpoint_id] = (task, quit_loop)


class _EndpointLoop:
    """Fan-out, claims and POSTs of one endpoint in this process."""

    def __init__(self, worker: WebhookDelivery, target: DeliveryTarget) -> None:
        self._w = worker
        self._target = target
        self._sign = Signer(target.secret)
        self._cursor = target.cursor
        self._in_flight = 0
        self._wake = asyncio.Event()
        self._failing: str | None = None  # why the endpoint is failing (logged once)
        self._store_failing = False
        self._stopping = False  # no new delivery is chained once set

    async def run(self, stop: asyncio.Event) -> None:
        config = self._w.config
        clock = asyncio.get_running_loop().time
        fan_out_at = 0.0  # when the feed is read next (a backlog: at once)
        async with asyncio.TaskGroup() as sends:
            while not stop.is_set():
                self._wake.clear()
                try:
                    more = False
                    if clock() >= fan_out_at:
                        more = await self._fan_out()
                        fan_out_at = clock() + (0.0 if more else config.fan_out_every)
                    claimed = await self._claim(sends)
                except StoreUnavailable:  # an outage: logged once where it was seen
                    self._store_failing = True
                    await wait_any(stop, None, config.idle)
                    continue
                except Exception:
                    if not self._store_failing:  # one traceback per outage
                        log.exception("webhook %d: fan-out or claim failed", self._target.id)
                    self._store_failing = True
                    await wait_any(stop, None, config.idle)
                    continue
                self._store_failing = False
                if more or claimed:
                    continue
                if self._in_flight and (left := fan_out_at - clock()) > 0:
                    await wait_any(stop, self._wake, left)  # a slot ends, or the feed's turn
                else:  # nothing in flight: news of the feed, or a retry coming due
                    await wait_any(stop, self._wake, config.idle, self._new_events())
                    fan_out_at = 0.0
            self._stopping = True  # the POSTs in flight finish; their users' next ones wait

    async def _new_events(self) -> None:
        await self._w.feed.wait(self._cursor, self._w.config.idle)

    async def _fan_out(self) -> bool:
        """Record the deliveries of the next events; True if there may be more."""
        w, target = self._w, self._target
        try:
            events = await w.feed.after(self._cursor, w.config.batch)
        except EventsPruned as exc:  # cannot happen while the floor holds; say so loudly
            log.error("webhook %d: %s; skipping to %d", target.id, exc, exc.oldest)
            await self._move(exc.oldest, [])
            return True
        if not events:
            return False
        deliveries = [
            NewDelivery(e.id, e.user_id, e.type, e.at, w.encode(e))
            for e in events
            if matches(target.events, e.type)
        ]
        await self._move(events[-1].id, deliveries)
        return len(events) >= w.config.batch

    async def _move(self, upto: int, deliveries: list[NewDelivery]) -> None:
        w, target = self._w, self._target
        if await w.store.fan_out(target.id, self._cursor, upto, deliveries, w.clock.now()):
            self._cursor = upto
            return
        # Another process fanned these out first (or the endpoint was deleted): read on
        # from where the endpoint's cursor is now.
        for current in await w.store.targets():
            if current.id == target.id:
                self._cursor = current.cursor

    async def _claim(self, sends: asyncio.TaskGroup) -> int:
        w = self._w
        free = w.config.concurrency - self._in_flight
        if free <= 0:
            return 0
        now = w.clock.now()
        claimed = await w.store.claim(self._target.id, now, now + w.config.policy.lease, free)
        for delivery in claimed:
            self._in_flight += 1
            sends.create_task(self._deliver(delivery))
        return len(claimed)

    async def _deliver(self, claimed: ClaimedDelivery) -> None:
        """POST ``claimed``, record the outcome, and go on with the user's next due event
        while there is one (claimed by the recording transaction)."""
        try:
            for left in range(self._w.config.chain, 0, -1):
                attempt = await self._post(claimed)
                following = await self._record(claimed, attempt, chain=left > 1)
                if following is None:
                    break
                claimed = following
        except StoreUnavailable:  # an outage, logged once; the lease runs out, sent again
            pass
        except Exception:  # the lease runs out and the delivery is claimed again
            log.warning(
                "webhook %d: event %d: recording the outcome failed; it is sent again "
                "when its lease ends",
                self._target.id,
                claimed.event_id,
                exc_info=True,
            )
        finally:
            self._in_flight -= 1
            self._wake.set()

    async def _post(self, claimed: ClaimedDelivery) -> Attempt:
        """The sender's outcome, or a timeout once the deadline passes, whatever the
        sender does (an adapter's own timeouts are not trusted to add up)."""
        w, target = self._w, self._target
        deadline = w.config.policy.deadline
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: self._sign(claimed.body, int(w.clock.now().timestamp())),
            EVENT_ID_HEADER: str(claimed.event_id),
        }
        try:
            async with asyncio.timeout(deadline):
                return await w.sender.post(target.id, target.url, claimed.body, headers)
        except TimeoutError:
            return Attempt(None, f"no answer within {deadline:g}s", "timeout")

    async def _record(
        self, claimed: ClaimedDelivery, attempt: Attempt, chain: bool
    ) -> ClaimedDelivery | None:
        """Write the outcome; with ``chain``, also claim the user's next delivery when
        this one ended and the next is due, and return it."""
        w = self._w
        w.metrics.attempted(attempt.outcome)
        now = w.clock.now()
        lease = now + w.config.policy.lease if chain and not self._stopping else None
        if attempt.delivered:
            self._recovered()
            return await w.store.record(
                claimed, DeliveryState.DELIVERED.value, now, None, attempt.status, None, lease
            )
        self._failed(attempt)
        retry_at = w.config.policy.next_try(claimed.first_at, now, claimed.failures + 1, w.rnd)
        state = DeliveryState.PENDING if retry_at is not None else DeliveryState.FAILED
        following = await w.store.record(
            claimed, state.value, now, retry_at, attempt.status, attempt.error, lease
        )
        if retry_at is None:
            w.metrics.failed()
            log.warning(
                "webhook %d: event %d failed for good after %d attempts (%s); kept as "
                "failed, replayable by POST /api/admin/events/%d/redeliver",
                self._target.id,
                claimed.event_id,
                claimed.attempts,
                attempt.error,
                claimed.event_id,
            )
        return following

    def _failed(self, attempt: Attempt) -> None:
        """An endpoint failing is one WARNING when it starts, not one per attempt."""
        if self._failing is None:
            log.warning(
                "webhook %d (%s) is failing: %s; retrying with backoff (logged once "
                "until it answers again)",
                self._target.id,
                self._target.url,
                attempt.error,
            )
        self._failing = attempt.error or attempt.outcome

    def _recovered(self) -> None:
        if self._failing is not None:
            log.warning("webhook %d (%s) answers again", self._target.id, self._target.url)
            self._failing = None


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
