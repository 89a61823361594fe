"""The delivery worker: every event an endpoint subscribed to, POSTed at least once,
signed, in order per user (SPEC "Events"; docs/architecture.md, "Webhooks").

One :class:`EndpointLoop` per live endpoint, in every worker process (the server's own
worker and each ``gophermart worker``), each doing two things, never a transaction held
across the network:

1. *the stream* (webhook_stream.py), in the one process that holds the endpoint's
   stream lease: read the feed after the endpoint's cursor, POST each user's events in
   order, and record each delivery once, as its first try left it, moving the cursor
   past them by compare-and-set (delivered is one row written; a failed first try, and
   the user's later events behind it, go into the queue);
2. *the queue*: lease as many due deliveries as the endpoint has free slots, each the
   oldest pending one of its user (a user's later event waits for the earlier one to be
   delivered, or to fail for good), POST them and record each outcome: delivered (2xx),
   or tried again after an exponential backoff with full jitter, until the retry window
   is spent: then failed, listed and replayable. ``FOR UPDATE SKIP LOCKED`` and the
   lease make several processes safe; a killed worker's leases run out and another
   takes over, its stream too.

One endpoint's slots and connections are its own: a slow or dead endpoint fills its own
``concurrency`` slots and nobody else's, and the API's requests never wait on any of it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from gophermart.application.errors import StoreUnavailable
from gophermart.application.periodic import wait_any
from gophermart.application.ports import (
    ClaimedDelivery,
    Clock,
    DeliveryTarget,
    EventFeed,
    FirstTry,
    NoWebhookMetrics,
    WebhookMetrics,
    WebhookSender,
    WebhookStore,
)
from gophermart.application.webhook_stream import EndpointStream
from gophermart.domain.events import Event
from gophermart.domain.webhooks import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    Attempt,
    DeliveryPolicy,
    DeliveryState,
    Signer,
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
    #: The stream reads on while fewer than this many events it read are unfinished: a
    #: slow POST holds the cursor back (it moves past finished events only), not the rest.
    window: int = 5000
    #: The stream reads the feed at most this often (seconds) while it has no backlog (on
    #: PostgreSQL new events show up once per run of the sequencer, every 20 ms).
    read_every: float = 0.02


class WebhookDelivery:
    """Keeps one :class:`EndpointLoop` running per live endpoint (module docstring)."""

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
        #: This worker's name as an endpoint's stream owner (unique per process and run).
        self.owner = f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"

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
                loop = EndpointLoop(self, target)
                task = asyncio.create_task(loop.run(quit_loop), name=f"webhook-{endpoint_id}")
                loops[endpoint_id] = (task, quit_loop)


class EndpointLoop:
    """One endpoint in this process: its stream (when this process holds it) and the
    claims of its queue, sharing the endpoint's slots (module docstring)."""

    def __init__(self, worker: WebhookDelivery, target: DeliveryTarget) -> None:
        self.worker = worker
        self.target = target
        self._sign = Signer(target.secret)
        self.in_flight = 0  # POSTs under way, the stream's and the queue's
        self.wake = asyncio.Event()  # for the claims: a slot they wait for, the queue grew
        self.stream_wake = asyncio.Event()  # for the stream: a slot ended, or much done
        self._short = False  # the last claim filled every free slot: more may be due
        self._failing: str | None = None  # why the endpoint is failing (logged once)
        self._store_failing = False
        self._stopping = False  # no new delivery is chained once set

    @property
    def failing(self) -> bool:
        """Whether the endpoint's last answer was a failure: the stream then records
        its events untried, and the queue's backoff paces the endpoint."""
        return self._failing is not None

    def free_slots(self) -> int:
        return self.worker.config.concurrency - self.in_flight

    def slot_ended(self) -> None:
        """A POST's slot is free again: the claims look at once only if they were short
        of slots (else a slot ending under load would cost a claim each time)."""
        self.in_flight -= 1
        if self._short:
            self._short = False
            self.wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as sends:
            stream = asyncio.create_task(EndpointStream(self).run(stop, sends))
            try:
                await self._claims(stop, sends)
            finally:
                self._stopping = True  # the POSTs in flight finish; their users' next wait
                await stream

    async def _claims(self, stop: asyncio.Event, sends: asyncio.TaskGroup) -> None:
        """Claim what the queue has due, while there are free slots."""
        idle = self.worker.config.idle
        while not stop.is_set():
            self.wake.clear()
            try:
                claimed = await self._claim(sends)
            except StoreUnavailable:  # an outage: logged once where it was seen
                self._store_failing = True
                await wait_any(stop, None, idle)
                continue
            except Exception:
                if not self._store_failing:  # one traceback per outage
                    log.exception("webhook %d: claiming failed", self.target.id)
                self._store_failing = True
                await wait_any(stop, None, idle)
                continue
            self._store_failing = False
            if not claimed:  # a slot ends, the queue grows, or a retry comes due
                await wait_any(stop, self.wake, idle)

    async def _claim(self, sends: asyncio.TaskGroup) -> int:
        w = self.worker
        free = self.free_slots()
        self._short = free <= 0
        if free <= 0:
            return 0
        now = w.clock.now()
        claimed = await w.store.claim(self.target.id, now, now + w.config.policy.lease, free)
        self._short = len(claimed) >= free
        for delivery in claimed:
            self.in_flight += 1
            sends.create_task(self._deliver(delivery))
        return len(claimed)

    async def _deliver(self, claimed: ClaimedDelivery) -> None:
        """POST ``claimed``, record the outcome, and go on with the user's next due event
        while there is one (claimed by the recording transaction)."""
        try:
            for left in range(self.worker.config.chain, 0, -1):
                attempt = await self.post(claimed.event_id, claimed.body)
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
                self.target.id,
                claimed.event_id,
                exc_info=True,
            )
        finally:
            self.slot_ended()
            self.stream_wake.set()

    async def post(self, event_id: int, body: bytes) -> Attempt:
        """The sender's outcome, or a timeout once the deadline passes, whatever the
        sender does (an adapter's own timeouts are not trusted to add up)."""
        w, target = self.worker, self.target
        deadline = w.config.policy.deadline
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: self._sign(body, int(w.clock.now().timestamp())),
            EVENT_ID_HEADER: str(event_id),
        }
        try:
            async with asyncio.timeout(deadline):
                return await w.sender.post(target.id, target.url, body, headers)
        except TimeoutError:
            return Attempt(None, f"no answer within {deadline:g}s", "timeout")

    async def first_try(self, event_id: int, body: bytes) -> FirstTry:
        """The stream's POST of an event, as the delivery is to be recorded (a failure
        due again after the first backoff)."""
        w = self.worker
        attempt = await self.post(event_id, body)
        w.metrics.attempted(attempt.outcome)
        now = w.clock.now()
        if attempt.delivered:
            self.recovered()
            return FirstTry(now, attempt.status, None, None)
        self.failed(attempt)
        retry_at = w.config.policy.next_try(now, now, 1, w.rnd) or now
        return FirstTry(now, attempt.status, attempt.error, retry_at)

    async def _record(
        self, claimed: ClaimedDelivery, attempt: Attempt, chain: bool
    ) -> ClaimedDelivery | None:
        """Write the outcome; with ``chain``, also claim the user's next delivery when
        this one ended and the next is due, and return it."""
        w = self.worker
        w.metrics.attempted(attempt.outcome)
        now = w.clock.now()
        lease = now + w.config.policy.lease if chain and not self._stopping else None
        if attempt.delivered:
            self.recovered()
            return await w.store.record(
                claimed, DeliveryState.DELIVERED.value, now, None, attempt.status, None, lease
            )
        self.failed(attempt)
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
                self.target.id,
                claimed.event_id,
                claimed.attempts,
                attempt.error,
                claimed.event_id,
            )
        return following

    def failed(self, attempt: Attempt) -> None:
        """An endpoint failing is one WARNING when it starts, not one per attempt."""
        if self._failing is None:
            log.warning(
                "webhook %d (%s) is failing: %s; retrying with backoff (logged once "
                "until it answers again)",
                self.target.id,
                self.target.url,
                attempt.error,
            )
        self._failing = attempt.error or attempt.outcome

    def recovered(self) -> None:
        if self._failing is not None:
            log.warning("webhook %d (%s) answers again", self.target.id, self.target.url)
            self._failing = None
