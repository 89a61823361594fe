"""The accrual worker: learn each order's points from the accrual system, credit once.

The ``orders`` table is the queue. One round is three steps, never a transaction held
across the network:

1. *claim*: a short transaction leases a batch of due orders (``next_attempt_at``
   moves past the lease, so a crashed worker's orders come due again by themselves);
2. *poll*: the HTTP call, outside any transaction, through the fleet-wide gate that
   obeys 429 pauses and paces to the announced rate;
3. *apply*: one transaction per order re-reads it, moves its status if it is still where
   we left it, and for PROCESSED writes the status and the ledger credit together.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from gophermart.application.errors import ConcurrentUpdate
from gophermart.application.ports import (
    AccrualClient,
    AccrualGate,
    AccrualReply,
    ClaimedOrder,
    Clock,
    NoWorkerMetrics,
    RateLimited,
    Unavailable,
    UnitOfWorkFactory,
    WorkerMetrics,
)
from gophermart.domain.errors import IllegalStatusTransition
from gophermart.domain.orders import AccrualVerdict

log = logging.getLogger("gophermart.worker")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to ask again about an order that is not final yet.

    Exponential in the number of polls so far, capped, with full jitter in the upper
    half so that a thousand orders uploaded together do not come due together.
    """

    base: float = 0.25
    cap: float = 30.0
    lease: float = 60.0

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


class AccrualSync:
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
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self._uow = uow
        self._client = client
        self._gate = gate
        self._clock = clock
        self._policy = policy or RetryPolicy()
        self._batch_size = batch_size
        self._slots = asyncio.Semaphore(concurrency)
        self._sleep = sleep or asyncio.sleep
        self.stats = SyncStats()
        self._metrics: WorkerMetrics = metrics or NoWorkerMetrics()
        self._paused_until: datetime | None = None

    async def run_once(self) -> int:
        """Claim one batch of due orders and process it; returns how many were claimed."""
        now = self._clock.now()
        lease_until = now + timedelta(seconds=self._policy.lease)
        async with self._uow() as uow:
            claimed = await uow.orders.claim_due(now, lease_until, self._claim_size())
            await uow.commit()
        self.stats.claimed += len(claimed)
        if claimed:
            await asyncio.gather(*(self._guarded(order) for order in claimed))
        return len(claimed)

    def _claim_size(self) -> int:
        """Under a rate limit, claim no more than can be polled well within the lease
        (a quarter of it, leaving room for other worker processes' slots): a claimed
        order waiting past its lease would be claimed and polled twice."""
        rate = self._gate.rate()
        if not rate:
            return self._batch_size
        return max(1, min(self._batch_size, int(rate * self._policy.lease / 60 / 4)))

    async def run_until(
        self, stop: asyncio.Event, wakeup: asyncio.Event, idle_poll: float = 1.0
    ) -> None:
        """Work until ``stop`` is set; sleep on ``wakeup`` (or ``idle_poll``) when idle.

        The idle poll catches orders that came due by their backoff timer, and any wake-up
        lost across processes.
        """
        while not stop.is_set():
            try:
                wakeup.clear()
                busy = await self.run_once()
            except Exception:  # the worker must outlive a database blip
                log.exception("accrual sync round failed; retrying shortly")
                busy = 0
                await _wait_any(stop, None, idle_poll)
                continue
            if busy < self._batch_size:
                await _wait_any(stop, wakeup, idle_poll)

    async def _guarded(self, order: ClaimedOrder) -> None:
        async with self._slots:
            try:
                await self.process(order)
            except Exception:
                # The lease runs out and the order comes due again: nothing is lost.
                log.exception(
                    "processing order %s failed", order.number, extra={"order": order.number.value}
                )

    async def process(self, order: ClaimedOrder) -> None:
        """Poll one claimed order and apply the answer."""
        when = await self._gate.reserve(self._clock.now())
        wait = (when - self._clock.now()).total_seconds()
        if wait > 0:
            await self._sleep(wait)
        answer = await self._client.fetch(order.number)
        if isinstance(answer, AccrualReply):
            self._metrics.polled(
                "204"
                if answer.verdict is AccrualVerdict.UNKNOWN
                else "200_" + answer.verdict.name.lower()
            )
            await self._apply(order, answer)
        elif isinstance(answer, RateLimited):
            self._metrics.polled("429")
            until = self._clock.now() + timedelta(seconds=answer.retry_after)
            if self._paused_until is None or until > self._paused_until + timedelta(seconds=1):
                # Once per pause, not once per refused poll (all those in flight get one).
                log.warning(
                    "accrual system rate limit: pausing %.1fs, then %s/min",
                    answer.retry_after,
                    answer.per_minute,
                    extra={"order": order.number.value},
                )
            self._paused_until = until
            await self._gate.pause(until, answer.per_minute)
            self._metrics.rate_limited(until, self._gate.rate())
            self.stats.throttled += 1
            await self._reschedule(order, until)
        else:
            assert isinstance(answer, Unavailable)
            self._metrics.polled(answer.kind)
            log.info(
                "accrual system unavailable for %s: %s",
                order.number,
                answer.reason,
                extra={"order": order.number.value},
            )
            await self._retry_later(order)

    async def _apply(self, claimed: ClaimedOrder, reply: AccrualReply) -> None:
        now = self._clock.now()
        try:
            async with self._uow() as uow:
                order = await uow.orders.get(claimed.number)
                if order is None or order.status.is_final:
                    return  # someone else finished it; final is final
                updated = order.apply(reply.verdict, reply.accrual)
                next_at = None if updated.status.is_final else now + self._backoff(claimed)
                if not await uow.orders.save(order, updated, next_at):
                    return  # another worker moved it first; its transaction credits
                if updated.credit is not None:
                    account = await uow.accounts.get(updated.owner)
                    if account is None:
                        raise LookupError(f"order {updated.number}: owner has no account")
                    account.credit(updated, now)
                    await uow.accounts.save(account)
                await uow.commit()
            if updated.credit is not None:
                self._metrics.credited(updated.credit)
            if updated.status.is_final:
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
        except (ConcurrentUpdate, IllegalStatusTransition) as exc:
            log.info(
                "order %s: lost a race, leaving it (%s)",
                claimed.number,
                exc,
                extra={"order": claimed.number.value},
            )
            return
        if updated.status.is_final:
            self.stats.final += 1
        else:
            self.stats.retried += 1

    async def _retry_later(self, order: ClaimedOrder) -> None:
        self.stats.retried += 1
        await self._reschedule(order, self._clock.now() + self._backoff(order))

    async def _reschedule(self, order: ClaimedOrder, at: datetime) -> None:
        async with self._uow() as uow:
            await uow.orders.reschedule(order.number, at)
            await uow.commit()

    def _backoff(self, order: ClaimedOrder) -> timedelta:
        return timedelta(seconds=self._policy.delay(order.attempts))


async def _wait_any(stop: asyncio.Event, wakeup: asyncio.Event | None, delay: float) -> None:
    waiters = [asyncio.ensure_future(stop.wait())]
    if wakeup is not None:
        waiters.append(asyncio.ensure_future(wakeup.wait()))
    try:
        await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
