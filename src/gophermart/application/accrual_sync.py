"""The accrual worker: learn each order's points from the accrual system, credit once.

The ``orders`` table is the queue. The worker is a pipeline of ``concurrency``
independent poll slots; a slot does three steps, never a transaction held across the
network:

1. *claim*: as soon as a slot is free (and, under an announced rate limit, the fleet-wide
   gate has granted the next request slot), a short transaction leases due orders: one
   per granted request slot under a rate limit, else as many as there are free slots.
   Nothing is claimed that cannot be polled at once, so no claimed order waits, and the
   lease (``next_attempt_at`` moved ``lease`` seconds on) can be short: a crashed
   worker's orders come due again by themselves within seconds;
2. *poll*: the HTTP call, outside any transaction, with a total ``deadline``: a slow,
   dripping or hanging answer costs its own slot for that long, never the others;
3. *apply*: one transaction re-reads the order, moves its status if it is still where
   we left it, and for PROCESSED writes the status and the ledger credit together.

An accrual system that cannot be reached at all is one WARNING per outage, and one when
it answers again. Problems are logged once per order, not once per retry: an answer that
cannot be used (garbage, a value that cannot be an accrual) is retried with backoff, and a
credit that cannot be applied (past what a balance can hold) *parks* the order: it is asked about
again only every ``park`` seconds, and counted in :class:`SyncStats`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar

from gophermart.application.accruals import apply_verdict
from gophermart.application.errors import ConcurrentUpdate, StoreUnavailable
from gophermart.application.ports import (
    AccrualAnswer,
    AccrualClient,
    AccrualGate,
    AccrualReply,
    ClaimedOrder,
    Clock,
    EventMetrics,
    NoEventMetrics,
    RateLimited,
    Unavailable,
    UnitOfWorkFactory,
)
from gophermart.domain.errors import BalanceOverflow, IllegalStatusTransition, InvalidAmount
from gophermart.domain.orders import AccrualVerdict, Order, OrderNumber

log = logging.getLogger("gophermart.worker")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to ask again about an order that is not final yet, and how long a poll may take.

    Exponential in the number of polls so far, capped, with full jitter in the upper
    half so that a thousand orders uploaded together do not come due together.

    ``deadline`` bounds one whole poll; ``lease`` is how long a claimed order is hidden
    from other workers. Orders are claimed right before their poll, so the lease only
    has to cover claim + poll + apply: the deadline plus a margin for two short
    transactions. It is also what a crash costs: a killed worker's orders are due again
    ``lease`` seconds after their claim (docs/failure-behaviour.md).
    """

    base: float = 0.25
    cap: float = 30.0
    lease: float = 10.0
    deadline: float = 5.0
    park: float = 3600.0

    #: What the lease adds to the deadline: the claim's and the apply's transactions.
    LEASE_MARGIN: ClassVar[float] = 5.0

    def __post_init__(self) -> None:
        if not 0 < self.deadline < self.lease:
            raise ValueError(f"the poll deadline ({self.deadline}s) must be shorter than the lease")

    @classmethod
    def for_deadline(cls, deadline: float) -> RetryPolicy:
        """The default policy with polls bounded by ``deadline`` (GOPHERMART_ACCRUAL_TIMEOUT)
        and the lease that covers it; 5 s gives the defaults (a 10 s lease)."""
        return cls(deadline=deadline, lease=deadline + cls.LEASE_MARGIN)

    def delay(self, attempts: int, rnd: Callable[[], float] = random.random) -> float:
        # The exponent is capped too: 2.0 ** 1024 overflows, and an order the accrual
        # system never hears of is asked about every `cap` seconds for ever.
        ceiling = min(self.cap, self.base * (2.0 ** min(max(0, attempts - 1), 64)))
        return ceiling * (0.5 + 0.5 * rnd())


@dataclass(slots=True)
class SyncStats:
    """Counters for logs and tests: what this worker did since it started."""

    claimed: int = 0
    final: int = 0
    retried: int = 0
    throttled: int = 0
    #: polls cut off by the deadline (also counted in ``retried``)
    timed_out: int = 0
    #: credits that could not be applied: the order was parked
    parked: int = 0
    #: unexpected failures of one order's processing (the lease brings it back)
    failed: int = 0
    #: orders claimed after their previous claim's lease ran out (crash pickups)
    taken_over: int = 0


class _OncePerOrder:
    """What was last logged about each order (a bounded number of them), so that an
    event repeating on every retry is logged once per order, not once per retry."""

    def __init__(self, limit: int = 10_000) -> None:
        self._last: OrderedDict[str, str] = OrderedDict()
        self._limit = limit

    def first(self, number: OrderNumber, event: str) -> bool:
        """True if ``event`` is news for ``number`` (and remember it)."""
        key = number.value
        if self._last.get(key) == event:
            self._last.move_to_end(key)
            return False
        self._last[key] = event
        self._last.move_to_end(key)
        if len(self._last) > self._limit:
            self._last.popitem(last=False)
        return True

    def forget(self, number: OrderNumber) -> None:
        self._last.pop(number.value, None)

    def last(self, number: OrderNumber) -> str | None:
        """The event last logged about ``number``, if it is still remembered."""
        return self._last.get(number.value)


class _Reachability:
    """Whether the accrual system can be reached at all. Not reaching it (connection
    refused, DNS, connect timeout) is an outage of every poll: logged as one WARNING when
    it starts and one when an answer comes again, not once per order or per retry.

    Only a poll started after the outage began can end it: an answer already on its way
    when the system went down says nothing about now.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._polls = 0  # polls started so far
        self._down: tuple[int, datetime] | None = None  # (polls started then, since)
        self._failed = 0

    def poll_started(self) -> int:
        self._polls += 1
        return self._polls

    def heard(self, poll: int, answer: AccrualAnswer) -> bool:
        """Note ``answer`` to poll number ``poll``; True if it was a failure to reach the
        system (logged here, as part of the outage)."""
        if isinstance(answer, Unavailable) and answer.unreachable:
            self._failed += 1
            if self._down is None:
                self._down = (self._polls, self._clock.now())
                log.warning(
                    "accrual system unreachable: %s; orders wait and are polled again with "
                    "backoff (logged once per outage)",
                    answer.reason,
                )
            return True
        if self._down is not None and poll > self._down[0]:
            seconds = (self._clock.now() - self._down[1]).total_seconds()
            log.warning(
                "accrual system reachable again after %.0fs (%d polls failed)",
                seconds,
                self._failed,
            )
            self._down, self._failed = None, 0
        return False


class _Pacing:
    """This worker's side of the fleet-wide gate: when the next request may go, and
    what a 429 changes (shared with every process through the gate)."""

    def __init__(
        self,
        gate: AccrualGate,
        clock: Clock,
        sleep: Callable[[float], Awaitable[None]],
        metrics: EventMetrics,
    ) -> None:
        self.gate = gate
        self._clock = clock
        self._sleep = sleep
        self._metrics = metrics
        self.paused_until: datetime | None = None
        self._reported_rate: int | None = None

    async def request_slot(self, stop: asyncio.Event | None) -> bool:
        """Wait for the gate's next request slot; False if ``stop`` came first.

        A slot is only good under what the gate knew when it granted it: if a 429 came
        back meanwhile (a pause covering the slot, or a rate learnt), a new slot is
        asked for under the new terms, so nothing is sent inside a pause and the first
        paced request takes its place in the pacing.
        """
        while True:
            now, paused = self._clock.now(), self.paused_until
            if paused is not None and paused > now:
                now = paused
            when = await self.gate.reserve(now)
            rate = self.gate.rate()
            if rate != self._reported_rate:  # learnt, or forgotten (it expires)
                self._reported_rate = rate
                self._metrics.rate_limited(paused or self._clock.now(), rate)
            wait = (when - self._clock.now()).total_seconds()
            if wait > 0 and await self._nap(wait, stop):
                return False
            if self.gate.rate() == rate and self.paused_until == paused:
                return True

    async def _nap(self, seconds: float, stop: asyncio.Event | None) -> bool:
        """Sleep ``seconds`` (the gate's wait); True if ``stop`` came first."""
        if stop is None:
            await self._sleep(seconds)
            return False
        nap = asyncio.ensure_future(self._sleep(seconds))
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait((nap, stopped), return_when=asyncio.FIRST_COMPLETED)
        finally:
            nap.cancel()
            stopped.cancel()
        return stop.is_set()

    async def refused(self, answer: RateLimited, number: OrderNumber) -> datetime:
        """A 429: pause the fleet (and this worker) until when it says; returns then."""
        until = self._clock.now() + timedelta(seconds=answer.retry_after)
        if self.paused_until is None or until > self.paused_until + timedelta(seconds=1):
            # Once per pause, not once per refused poll (all those in flight get one).
            log.warning(
                "accrual system rate limit: pausing %.1fs, then %s/min",
                answer.retry_after,
                answer.per_minute,
                extra={"order": number.value},
            )
        self.paused_until = until
        await self.gate.pause(until, answer.per_minute)
        self._reported_rate = self.gate.rate()
        self._metrics.rate_limited(until, self._reported_rate)
        return until


class _OrderPoll:
    """One claimed order: poll the accrual system (within the deadline), apply the
    answer in its own transaction, or schedule the next poll."""

    def __init__(
        self, sync: AccrualSync, client: AccrualClient, pacing: _Pacing, policy: RetryPolicy
    ) -> None:
        self._uow = sync.uow
        self._clock = sync.clock
        self._stats = sync.stats
        self._noted = sync.noted
        self._reach = _Reachability(sync.clock)
        self._metrics = sync.metrics
        self._client = client
        self._pacing = pacing
        self._policy = policy

    async def __call__(self, order: ClaimedOrder) -> None:
        poll = self._reach.poll_started()
        answer = await self._poll(order.number)
        unreachable = self._reach.heard(poll, answer)
        if isinstance(answer, AccrualReply):
            self._metrics.polled(
                "204"
                if answer.verdict is AccrualVerdict.UNKNOWN
                else "200_" + answer.verdict.name.lower()
            )
            await self._apply(order, answer)
        elif isinstance(answer, RateLimited):
            self._metrics.polled("429")
            until = await self._pacing.refused(answer, order.number)
            self._stats.throttled += 1
            await self._reschedule(order, until)
        else:
            self._metrics.polled(answer.kind)
            if not unreachable and self._noted.first(order.number, answer.reason):
                log.info(
                    "order %s: no usable answer from the accrual system (%s); retrying "
                    "with backoff (logged once while it repeats)",
                    order.number,
                    answer.reason,
                    extra={"order": order.number.value},
                )
            await self._retry_later(order)

    async def _poll(self, number: OrderNumber) -> AccrualAnswer:
        """The client's answer, or Unavailable once the deadline passes, whatever the
        client does (an adapter's own timeouts are not trusted to add up)."""
        try:
            async with asyncio.timeout(self._policy.deadline):
                return await self._client.fetch(number)
        except TimeoutError:
            self._stats.timed_out += 1
            return Unavailable(f"no answer within {self._policy.deadline:g}s", "timeout")

    async def _apply(self, claimed: ClaimedOrder, reply: AccrualReply) -> None:
        now = self._clock.now()
        try:
            async with self._uow() as uow:
                moved = await apply_verdict(
                    uow,
                    claimed.number,
                    reply.verdict,
                    reply.accrual,
                    now,
                    now + self._backoff(claimed),
                )
                if moved is None:
                    return  # final already, or another worker moved it first (and credits)
                await uow.commit()
            updated = moved[1]
        except (ConcurrentUpdate, IllegalStatusTransition) as exc:
            log.info(
                "order %s: lost a race, leaving it (%s)",
                claimed.number,
                exc,
                extra={"order": claimed.number.value},
            )
            return
        except (InvalidAmount, BalanceOverflow, OverflowError) as exc:
            # The answer is fine but the credit cannot be applied: the balance would
            # pass what it can hold. Retrying at once would fail the same way for ever.
            await self._park(claimed, reply, exc)
            return
        self._applied(claimed, updated)

    def _applied(self, claimed: ClaimedOrder, updated: Order) -> None:
        if updated.credit is not None:
            self._metrics.credited(updated.credit)
        if not updated.status.is_final:
            self._stats.retried += 1
            return
        self._stats.final += 1
        self._noted.forget(claimed.number)
        log.info(
            "order %s is %s",
            claimed.number,
            updated.status.value,
            extra={
                "order": claimed.number.value,
                "status": updated.status.value,
                "accrual": str(updated.credit.as_decimal()) if updated.credit else None,
            },
        )

    async def _park(self, order: ClaimedOrder, reply: AccrualReply, exc: Exception) -> None:
        self._stats.parked += 1
        self._metrics.parked()
        if self._noted.first(order.number, f"parked: {exc}"):
            log.error(
                "order %s: its accrual of %s cannot be credited (%s); parked, asked "
                "about again every %.0fs (logged once while it repeats)",
                order.number,
                reply.accrual,
                exc,
                self._policy.park,
                extra={"order": order.number.value},
            )
        parked = f"its accrual of {reply.accrual} cannot be credited: {exc}"[:500]
        at = self._clock.now() + timedelta(seconds=self._policy.park)
        await self._reschedule(order, at, parked)

    async def _retry_later(self, order: ClaimedOrder) -> None:
        self._stats.retried += 1
        await self._reschedule(order, self._clock.now() + self._backoff(order))

    async def _reschedule(
        self, order: ClaimedOrder, at: datetime, parked: str | None = None
    ) -> None:
        async with self._uow() as uow:
            await uow.orders.reschedule(order.number, at, parked)
            await uow.commit()

    def _backoff(self, order: ClaimedOrder) -> timedelta:
        return timedelta(seconds=self._policy.delay(order.attempts))


class AccrualSync:
    """The pipeline of poll slots (module docstring): claims as slots free up, starts
    one :class:`_OrderPoll` per claimed order."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        client: AccrualClient,
        gate: AccrualGate,
        clock: Clock,
        policy: RetryPolicy | None = None,
        batch_size: int = 64,
        concurrency: int = 16,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        metrics: EventMetrics | None = None,
    ) -> None:
        self.uow = uow
        self.clock = clock
        policy = policy or RetryPolicy()
        self._lease = timedelta(seconds=policy.lease)
        #: The most orders one claim takes (when no rate limit is known).
        self._batch_size = max(1, batch_size)
        self._concurrency = max(1, concurrency)
        self._free = asyncio.Semaphore(self._concurrency)
        self.stats = SyncStats()
        self.noted = _OncePerOrder()
        self._takeovers = _OncePerOrder()  # taken-over orders already logged
        #: What the worker reports for an operator's metrics (docs/operations.md).
        self.metrics: EventMetrics = metrics or NoEventMetrics()
        self._pacing = _Pacing(gate, clock, sleep or asyncio.sleep, self.metrics)
        #: Poll one claimed order and apply the answer.
        self.process = _OrderPoll(self, client, self._pacing, policy)

    async def run_once(self) -> int:
        """One claim of what can be polled now, then those polls; returns how many were
        claimed. Under a known rate limit that is one order, at its granted slot."""
        polls: list[asyncio.Task[None]] = []
        try:
            claimed, _ = await self._feed(lambda poll: polls.append(asyncio.create_task(poll)))
        finally:
            await asyncio.gather(*polls)
        return claimed

    async def run_until(
        self, stop: asyncio.Event, wakeup: asyncio.Event, idle_poll: float = 1.0
    ) -> None:
        """Work until ``stop`` is set; sleep on ``wakeup`` (or ``idle_poll``) when idle.

        Claims go on while polls are in flight: each free slot is filled at once. The
        idle poll catches orders that came due by their backoff timer, and any wake-up
        lost across processes. On ``stop``, no new order is claimed and the polls in
        flight finish (each within its deadline).
        """
        failing = False
        async with asyncio.TaskGroup() as slots:
            while not stop.is_set():
                wakeup.clear()
                try:
                    claimed, wanted = await self._feed(slots.create_task, stop)
                except StoreUnavailable:  # an outage: logged once where it was seen
                    failing = True
                    await _wait_any(stop, None, idle_poll)
                    continue
                except Exception:  # the worker must outlive a database blip
                    if not failing:  # one traceback per outage, not one a second
                        log.exception("accrual sync: claiming orders failed; retrying")
                    failing = True
                    await _wait_any(stop, None, idle_poll)
                    continue
                if failing:
                    log.info("accrual sync: claiming orders works again")
                    failing = False
                if claimed < wanted:  # nothing more is due now
                    await _wait_any(stop, wakeup, idle_poll)

    async def _feed(
        self,
        start: Callable[[Coroutine[None, None, None]], object],
        stop: asyncio.Event | None = None,
    ) -> tuple[int, int]:
        """Wait for a free slot and a request slot from the gate, claim, start the polls.

        Returns (orders claimed, orders asked for). The request slot is reserved *before*
        the claim: under a rate limit the wait for it happens holding no order.
        """
        await self._free.acquire()
        held, claimed = 1, []
        try:
            if not await self._pacing.request_slot(stop):
                return 0, 0
            if not self._pacing.gate.rate():
                # No pacing: every free slot may poll now, so claim for each of them.
                while held < min(self._concurrency, self._batch_size) and not self._free.locked():
                    await self._free.acquire()
                    held += 1
            now = self.clock.now()
            async with self.uow() as uow:
                leased = await uow.orders.claim_due(now, now + self._lease, held)
                await uow.commit()
            claimed = leased  # only once committed: a failed claim holds no slot
        finally:
            for _ in range(held - len(claimed)):
                self._free.release()
        self.stats.claimed += len(claimed)
        self._report_takeovers(claimed)
        for order in claimed:
            start(self._slot(order))
        return len(claimed), held

    def _report_takeovers(self, claimed: list[ClaimedOrder]) -> None:
        """Count the orders claimed after their previous claim's lease ran out; log each
        once, unless this process's own failure on it was logged already (it said the
        order would come due again when its lease ended)."""
        taken = [order for order in claimed if order.taken_over]
        if not taken:
            return
        self.stats.taken_over += len(taken)
        self.metrics.lease_expired(len(taken))
        news = [
            order.number
            for order in taken
            if not (self.noted.last(order.number) or "").startswith("failed")
            and self._takeovers.first(order.number, "taken over")
        ]
        if news:
            log.warning(
                "took over %d order(s) whose previous claim's lease ran out (the worker "
                "holding them died, or failed): %s",
                len(news),
                ", ".join(str(number) for number in news),
            )

    async def _slot(self, order: ClaimedOrder) -> None:
        try:
            await self.process(order)
        except StoreUnavailable:
            self.stats.failed += 1  # an outage, logged once where it was seen; lease runs out
        except Exception as exc:
            # The lease runs out and the order comes due again: nothing is lost.
            self.stats.failed += 1
            if self.noted.first(order.number, f"failed: {type(exc).__name__}: {exc}"):
                log.exception(
                    "order %s: processing failed; due again when its lease ends "
                    "(logged once while it repeats)",
                    order.number,
                    extra={"order": order.number.value},
                )
        finally:
            self._free.release()


async def _wait_any(stop: asyncio.Event, wakeup: asyncio.Event | None, delay: float) -> None:
    waiters = [asyncio.ensure_future(stop.wait())]
    if wakeup is not None:
        waiters.append(asyncio.ensure_future(wakeup.wait()))
    try:
        await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
