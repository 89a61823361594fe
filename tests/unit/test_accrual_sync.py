"""The accrual worker with fakes: scripted answers, a memory gate and a frozen clock.

Proves that a PROCESSED answer credits the right amount exactly once (also on a replay
of ``process`` and with two workers racing), that INVALID credits nothing and final
orders are never polled again, that 204 -> REGISTERED -> PROCESSED advances with
``next_attempt_at`` pushed out by the backoff, that ``Unavailable`` never makes an order
final, that a 429 pauses the gate for Retry-After and then paces requests to the
announced rate, and that ``RetryPolicy.delay`` stays within [ceiling/2, ceiling], capped.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gophermart.adapters.memory import MemoryGate, MemoryStore, MemoryUnitOfWork
from gophermart.application.accrual_sync import AccrualSync, RetryPolicy
from gophermart.application.orders import UploadOrder
from gophermart.application.ports import (
    AccrualReply,
    ClaimedOrder,
    RateLimited,
    Unavailable,
)
from gophermart.application.users import Register
from gophermart.domain.accounts import EntryKind
from gophermart.domain.orders import AccrualVerdict, OrderNumber, OrderStatus
from gophermart.domain.points import Points
from gophermart.domain.users import UserId
from gophermart.testing import (
    CountingTokens,
    EventCounter,
    FrozenClock,
    PlainPasswordHasher,
    ScriptedAccrual,
)

ORDER = "12345678903"
OTHER = "9278923470"
PROCESSED = AccrualVerdict.PROCESSED


@dataclass
class RecordedMetrics:
    """A WorkerMetrics port that remembers what it was told."""

    events: list[tuple[str, object]] = field(default_factory=list)

    def polled(self, outcome: str) -> None:
        self.events.append(("polled", outcome))

    def credited(self, points: Points) -> None:
        self.events.append(("credited", points))

    def rate_limited(self, until: datetime, per_minute: int | None) -> None:
        self.events.append(("rate_limited", (until, per_minute)))

    def lease_expired(self, count: int) -> None:
        self.events.append(("lease_expired", count))


@dataclass
class World:
    store: MemoryStore = field(default_factory=MemoryStore)
    clock: FrozenClock = field(default_factory=FrozenClock)
    accrual: ScriptedAccrual = field(default_factory=ScriptedAccrual)
    gate: MemoryGate = field(default_factory=MemoryGate)
    sleeps: list[float] = field(default_factory=list)

    def uow(self) -> MemoryUnitOfWork:
        return MemoryUnitOfWork(self.store)

    async def fake_sleep(self, seconds: float) -> None:
        """Waiting moves the frozen clock, as real time would."""
        self.sleeps.append(seconds)
        self.clock.advance(seconds)

    metrics: RecordedMetrics = field(default_factory=lambda: RecordedMetrics())

    def sync(self, policy: RetryPolicy | None = None) -> AccrualSync:
        return AccrualSync(
            self.uow,
            self.accrual,
            self.gate,
            self.clock,
            policy,
            sleep=self.fake_sleep,
            metrics=self.metrics,
        )

    async def user(self, login: str = "alice") -> UserId:
        auth = await Register(self.uow, PlainPasswordHasher(), CountingTokens())(login, "pw")
        return UserId(auth.user_id)

    async def upload(self, user_id: UserId, number: str) -> None:
        await UploadOrder(self.uow, self.clock, EventCounter())(user_id, number)

    def status(self, number: str) -> OrderStatus:
        return self.store.state.orders[number].order.status

    def next_attempt(self, number: str) -> datetime | None:
        return self.store.state.orders[number].next_attempt_at

    def balance(self, user_id: UserId) -> tuple[int, int]:
        return self.store.state.balances[user_id]

    def credits(self) -> list[tuple[str, int]]:
        return [
            (e.order_number.value, e.amount.cents)
            for e in self.store.state.ledger.values()
            if e.kind is EntryKind.ACCRUAL
        ]


@pytest.fixture
def world() -> World:
    return World()


async def test_processed_credits_the_amount_once(world: World) -> None:
    alice = await world.user()
    await world.upload(alice, ORDER)
    world.accrual.will_answer(ORDER, AccrualReply(PROCESSED, Points.rounded("729.975")))
    sync = world.sync()
    assert await sync.run_once() == 1
    assert world.status(ORDER) is OrderStatus.PROCESSED
    assert world.store.state.orders[ORDER].order.accrual == Points(72998)
    assert world.next_attempt(ORDER) is None
    assert world.balance(alice) == (72998, 0)
    assert world.credits() == [(ORDER, 72998)]
    # final: never claimed again, however much time passes
    world.clock.advance(10_000)
    assert await sync.run_once() == 0
    assert world.accrual.calls == [ORDER]
    assert world.balance(alice) == (72998, 0)
    assert sync.stats.final == 1


async def test_processed_without_points_credits_nothing(world: World) -> None:
    alice = await world.user()
    await world.upload(alice, ORDER)
    world.accrual.will_answer(ORDER, AccrualReply(PROCESSED, None))
    await world.sync().run_once()
    assert world.status(ORDER) is OrderStatus.PROCESSED
    assert world.balance(alice) == (0, 0)
    assert world.credits() == []


async def test_invalid_credits_nothing_and_is_never_polled_again(world: World) -> None:
    alice = await world.user()
    await world.upload(alice, ORDER)
    world.accrual.will_answer(ORDER, AccrualReply(AccrualVerdict.INVALID, Points(500)))
    sync = world.sync()
    await sync.run_once()
    assert world.status(ORDER) is OrderStatus.INVALID
    assert world.balance(alice) == (0, 0)
    for _ in range(5):
        world.clock.advance(3600)
        assert await sync.run_once() == 0
    assert world.accrual.calls == [ORDER]


async def test_progression_with_backoff(world: World) -> None:
    alice = await world.user()
    await world.upload(alice, ORDER)
    world.accrual.will_answer(
        ORDER,
        AccrualReply(AccrualVerdict.UNKNOWN),
        AccrualReply(AccrualVerdict.REGISTERED),
        AccrualReply(PROCESSED, Points(500_00)),
    )
    policy = RetryPolicy(base=2.0, cap=30.0)
    sync = world.sync(policy)

    # 204: stays NEW, next poll between 1 s and 2 s from now (ceiling = base)
    assert await sync.run_once() == 1
    assert world.status(ORDER) is OrderStatus.NEW
    first = world.next_attempt(ORDER)
    assert first is not None
    assert timedelta(seconds=1) <= first - world.clock.now() <= timedelta(seconds=2)
    assert await sync.run_once() == 0  # not due yet
    assert world.accrual.calls == [ORDER]

    # REGISTERED: PROCESSING, next poll 2..4 s out (the ceiling doubled)
    world.clock.advance((first - world.clock.now()).total_seconds())
    assert await sync.run_once() == 1
    assert world.status(ORDER) is OrderStatus.PROCESSING
    second = world.next_attempt(ORDER)
    assert second is not None
    assert timedelta(seconds=2) <= second - world.clock.now() <= timedelta(seconds=4)
    world.clock.advance(1.99)
    assert await sync.run_once() == 0
    assert world.balance(alice) == (0, 0)

    # PROCESSED: final, credited
    world.clock.advance((second - world.clock.now()).total_seconds())
    assert await sync.run_once() == 1
    assert world.status(ORDER) is OrderStatus.PROCESSED
    assert world.balance(alice) == (500_00, 0)
    assert world.accrual.calls == [ORDER] * 3


async def test_204_after_processing_keeps_processing(world: World) -> None:
    alice = await world.user()
    await world.upload(alice, ORDER)
    world.accrual.will_answer(
        ORDER, AccrualReply(AccrualVerdict.PROCESSING), AccrualReply(AccrualVerdict.UNKNOWN)
    )
    sync = world.sync()
    await sync.run_once()
    world.clock.advance(120)
    await sync.run_once()
    assert world.status(ORDER) is OrderStatus.PROCESSING
    assert world.accrual.calls == [ORDER, ORDER]


async def test_unavailable_never_makes_an_order_final(world: World) -> None:
    alice = await world.user()
    await world.upload(alice, ORDER)
    await world.upload(alice, OTHER)
    world.accrual.will_answer(ORDER, Unavailable("HTTP 500"))
    world.accrual.will_answer(OTHER, AccrualReply(AccrualVerdict.REGISTERED), Unavailable("x"))
    sync = world.sync(RetryPolicy(base=1.0, cap=4.0))
    gaps = []
    for _ in range(10):
        world.clock.advance(60)
        assert await sync.run_once() == 2
        gap = world.next_attempt(ORDER)
        assert gap is not None
        gaps.append((gap - world.clock.now()).total_seconds())
    assert world.status(ORDER) is OrderStatus.NEW
    assert world.status(OTHER) is OrderStatus.PROCESSING
    assert world.credits() == []
    # backoff grows to the cap and stays within it
    assert all(0 < g <= 4.0 for g in gaps)
    assert gaps[-1] >= 2.0  # ceiling 4, jitter in the upper half


async def test_rate_limited_pauses_the_gate_then_paces(world: World) -> None:
    alice = await world.user()
    await world.upload(alice, ORDER)
    world.accrual.will_answer(
        ORDER, RateLimited(retry_after=5, per_minute=60), AccrualReply(PROCESSED, Points(1_00))
    )
    sync = world.sync()
    start = world.clock.now()
    await sync.run_once()
    assert sync.stats.throttled == 1
    assert world.status(ORDER) is OrderStatus.NEW  # a 429 is not an answer
    assert world.next_attempt(ORDER) == start + timedelta(seconds=5)

    now = world.clock.now()
    slots = [await world.gate.reserve(now) for _ in range(5)]
    assert slots[0] >= now + timedelta(seconds=5)
    for earlier, later in itertools.pairwise(slots):
        assert later - earlier >= timedelta(seconds=1)


async def test_worker_waits_for_the_pause_before_polling(world: World) -> None:
    alice = await world.user()
    await world.upload(alice, ORDER)
    await world.upload(alice, OTHER)
    await world.gate.pause(world.clock.now() + timedelta(seconds=5), per_minute=60)
    world.accrual.will_answer(ORDER, AccrualReply(PROCESSED, Points(1_00)))
    world.accrual.will_answer(OTHER, AccrualReply(PROCESSED, Points(2_00)))
    start = world.clock.now()
    sync = AccrualSync(
        world.uow, world.accrual, world.gate, world.clock, concurrency=1, sleep=world.fake_sleep
    )
    await sync.run_once()
    assert world.balance(alice) == (3_00, 0)
    # the first request waited out the pause, the second one more pacing slot
    assert world.clock.now() - start >= timedelta(seconds=6)
    assert world.sleeps and world.sleeps[0] >= 5


async def test_process_twice_on_a_claimed_order_credits_once(world: World) -> None:
    alice = await world.user()
    await world.upload(alice, ORDER)
    world.accrual.will_answer(ORDER, AccrualReply(PROCESSED, Points(42_00)))
    async with world.uow() as uow:
        [claimed] = await uow.orders.claim_due(
            world.clock.now(), world.clock.now() + timedelta(seconds=60), 10
        )
        await uow.commit()
    sync = world.sync()
    await sync.process(claimed)
    await sync.process(claimed)  # a replay: e.g. a retry after a lost acknowledgement
    assert world.balance(alice) == (42_00, 0)
    assert world.credits() == [(ORDER, 42_00)]


async def test_two_workers_on_the_same_order_credit_once(world: World) -> None:
    alice = await world.user()
    await world.upload(alice, ORDER)
    world.accrual.will_answer(ORDER, AccrualReply(PROCESSED, Points(10_00)))
    stale = ClaimedOrder(OrderNumber.parse(ORDER), OrderStatus.NEW, 1)
    a, b = world.sync(), world.sync()
    await asyncio.gather(a.process(stale), b.process(stale), a.run_once())
    assert world.balance(alice) == (10_00, 0)
    assert world.credits() == [(ORDER, 10_00)]


async def test_failed_claim_commit_changes_nothing(world: World) -> None:
    alice = await world.user()
    await world.upload(alice, ORDER)
    world.store.fail_next_commit = True
    with pytest.raises(ConnectionError):
        await world.sync().run_once()
    assert world.accrual.calls == []
    assert world.store.state.orders[ORDER].attempts == 0
    assert world.next_attempt(ORDER) == world.clock.now()  # still due


async def test_failed_apply_leaves_the_order_to_come_due_again(world: World) -> None:
    alice = await world.user()
    await world.upload(alice, ORDER)
    world.accrual.will_answer(ORDER, AccrualReply(PROCESSED, Points(7_00)))
    sync = world.sync()
    async with world.uow() as uow:
        [claimed] = await uow.orders.claim_due(
            world.clock.now(), world.clock.now() + timedelta(seconds=60), 10
        )
        await uow.commit()
    world.store.fail_next_commit = True
    with pytest.raises(ConnectionError):
        await sync.process(claimed)
    assert world.status(ORDER) is OrderStatus.NEW
    assert world.balance(alice) == (0, 0)
    world.clock.advance(61)  # the lease runs out
    assert await sync.run_once() == 1
    assert world.balance(alice) == (7_00, 0)


# --- RetryPolicy -----------------------------------------------------------------


def reference_ceiling(base: float, cap: float, attempts: int) -> float:
    ceiling = base
    for _ in range(attempts - 1):
        ceiling = min(cap, ceiling * 2)
    return min(cap, ceiling)


@given(
    st.integers(min_value=0, max_value=300),
    st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
    st.sampled_from([(0.25, 30.0), (1.0, 4.0), (0.5, 60.0), (2.0, 2.0)]),
)
def test_retry_delay_within_half_ceiling_and_ceiling(
    attempts: int, rnd: float, base_cap: tuple[float, float]
) -> None:
    base, cap = base_cap
    policy = RetryPolicy(base=base, cap=cap)
    ceiling = reference_ceiling(base, cap, max(1, attempts))
    delay = policy.delay(attempts, lambda: rnd)
    assert ceiling / 2 <= delay <= ceiling <= cap


def test_retry_delay_extremes() -> None:
    policy = RetryPolicy(base=0.25, cap=30.0)
    assert policy.delay(1, lambda: 0.0) == 0.125
    assert policy.delay(1, lambda: 0.999999) <= 0.25
    assert policy.delay(100, lambda: 0.0) == 15.0
    assert policy.delay(100, lambda: 0.999999) <= 30.0


def test_retry_delay_survives_very_many_attempts() -> None:
    assert RetryPolicy().delay(1025, lambda: 0.5) == pytest.approx(22.5)


async def test_long_pending_order_is_still_rescheduled(world: World) -> None:
    alice = await world.user()
    await world.upload(alice, ORDER)
    world.store.state.orders[ORDER].attempts = 1024  # polled 1024 times already
    sync = world.sync()
    await sync.run_once()
    nxt = world.next_attempt(ORDER)
    assert nxt is not None
    # rescheduled by the backoff (<= cap of 30 s), not left on the 60 s lease
    assert nxt - world.clock.now() <= timedelta(seconds=30)


async def test_the_worker_reports_polls_credits_and_pauses_to_its_metrics(world: World) -> None:
    alice = await world.user()
    numbers = ["12345678903", "9278923470", "346436439", "2377225624", "4561261212345467"]
    for number in numbers:
        await world.upload(alice, number)
    a, b, c, d, e = numbers
    world.accrual.will_answer(a, AccrualReply(PROCESSED, Points(500_00)))
    world.accrual.will_answer(b, AccrualReply(AccrualVerdict.UNKNOWN))
    world.accrual.will_answer(c, AccrualReply(AccrualVerdict.INVALID))
    world.accrual.will_answer(d, Unavailable("HTTP 502", "5xx"))
    world.accrual.will_answer(e, RateLimited(retry_after=7, per_minute=30))
    start = world.clock.now()
    await world.sync().run_once()
    polled = sorted(str(v) for k, v in world.metrics.events if k == "polled")
    assert polled == ["200_invalid", "200_processed", "204", "429", "5xx"]
    assert ("credited", Points(500_00)) in world.metrics.events
    assert [v for k, v in world.metrics.events if k == "credited"] == [Points(500_00)]
    paused = [v for k, v in world.metrics.events if k == "rate_limited"]
    assert len(paused) == 1
    until, per_minute = paused[0]  # type: ignore[misc]
    assert per_minute == 30
    assert until >= start + timedelta(seconds=7)
