"""The accrual worker with fakes: scripted answers, a memory gate and a frozen clock.

Proves that a PROCESSED answer credits the right amount exactly once (also on a replay
of ``process`` and with two workers racing), that INVALID credits nothing and final
orders are never polled again, that 204 -> REGISTERED -> PROCESSED advances with
``next_attempt_at`` pushed out by the backoff, that ``Unavailable`` never makes an order
final, that a 429 pauses the gate for Retry-After and then paces requests to the
announced rate, and that ``RetryPolicy.delay`` stays within [ceiling/2, ceiling], capped.

Under faults: a poll past its deadline is retried later; a hanging poll costs one slot
while other orders are credited; under a rate limit the request slot is granted before the
claim, so no claimed order waits (and a lease is short); a learnt rate is forgotten within
two minutes by default (and a 429 storm of "1 per minute" no longer throttles for good);
an unusable answer and a repeating failure are logged once per order; a credit past what
a balance holds parks the order.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gophermart.adapters.stores.memory import MemoryDatabase
from gophermart.adapters.stores.memory.gate import MemoryGate
from gophermart.application.accrual_sync import AccrualSync, RetryPolicy
from gophermart.application.ports import (
    AccrualAnswer,
    AccrualReply,
    ClaimedOrder,
    RateLimited,
    Unavailable,
)
from gophermart.bootstrap import Container
from gophermart.domain.accounts import EntryKind
from gophermart.domain.orders import AccrualVerdict, OrderNumber, OrderStatus
from gophermart.domain.points import Points
from gophermart.domain.users import UserId
from gophermart.testing import (
    FrozenClock,
    ScriptedAccrual,
)
from tests.luhn_reference import with_check_digit

ORDER = "12345678903"
OTHER = "9278923470"
PROCESSED = AccrualVerdict.PROCESSED


@dataclass
class RecordedMetrics:
    """A EventMetrics port that remembers what it was told."""

    events: list[tuple[str, object]] = field(default_factory=list)

    def polled(self, outcome: str) -> None:
        self.events.append(("polled", outcome))

    def credited(self, points: Points) -> None:
        self.events.append(("credited", points))

    def rate_limited(self, until: datetime, per_minute: int | None) -> None:
        self.events.append(("rate_limited", (until, per_minute)))

    def lease_expired(self, count: int) -> None:
        self.events.append(("lease_expired", count))

    def parked(self) -> None:
        self.events.append(("parked", None))


class World:
    """The in-memory container's objects (tests/unit/conftest.py), and helpers."""

    def __init__(self, container: Container) -> None:
        self.store: MemoryDatabase = container.store.database()
        self.clock: FrozenClock = container.clock()
        self.accrual: ScriptedAccrual = container.accrual_client()
        self.gate: MemoryGate = container.store.cold.gate()
        self.uow = container.store.uow  # the store's unit-of-work factory
        self.sleeps: list[float] = []
        self.metrics = RecordedMetrics()
        self._register = container.users().register
        self._upload = container.orders().upload

    async def fake_sleep(self, seconds: float) -> None:
        """Waiting moves the frozen clock, as real time would."""
        self.sleeps.append(seconds)
        self.clock.advance(seconds)

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
        auth = await self._register(login, "pw")
        return UserId(auth.user_id)

    async def upload(self, user_id: UserId, number: str) -> None:
        await self._upload(user_id, number)

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
def world(container: Container) -> World:
    return World(container)


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


async def test_worker_waits_for_the_pause_before_claiming(world: World) -> None:
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
    # Under a known rate, one order per granted request slot, claimed at that slot.
    assert await sync.run_once() == 1
    assert world.sleeps and world.sleeps[0] >= 5
    assert await sync.run_once() == 1
    assert world.balance(alice) == (3_00, 0)
    # the first request waited out the pause, the second one more pacing slot
    assert world.clock.now() - start >= timedelta(seconds=6)


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
    assert ("lease_expired", 1) not in world.metrics.events
    assert await sync.run_once() == 1
    assert world.balance(alice) == (7_00, 0)
    # Taken over from the failed claim: counted once, as the crash pickups are.
    assert sync.stats.taken_over == 1
    assert [e for e in world.metrics.events if e[0] == "lease_expired"] == [("lease_expired", 1)]


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


# --- faults: deadlines, slots, leases, learnt rates, bad answers, parking ------------


class HangingAccrual(ScriptedAccrual):
    """Scripted answers, except that polls of the ``hang`` orders never answer until
    ``release`` is set (as a server that accepts the request and then says nothing)."""

    def __init__(self, *hang: str) -> None:
        super().__init__()
        self.hang = set(hang)
        self.release = asyncio.Event()
        self.hanging = asyncio.Event()

    async def fetch(self, number: OrderNumber) -> AccrualAnswer:
        if number.value in self.hang:
            self.hanging.set()
            await self.release.wait()
        return await super().fetch(number)


class RecordingAccrual(ScriptedAccrual):
    """Scripted answers; notes the clock and the order's lease at each poll."""

    def __init__(self, world: World) -> None:
        super().__init__()
        self.world = world
        self.seen: list[tuple[str, datetime, datetime | None]] = []

    async def fetch(self, number: OrderNumber) -> AccrualAnswer:
        self.seen.append(
            (number.value, self.world.clock.now(), self.world.next_attempt(number.value))
        )
        return await super().fetch(number)


def numbers(count: int, prefix: str = "5") -> list[str]:
    return [with_check_digit(f"{prefix}{i:08d}") for i in range(count)]


async def eventually(check: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail("timed out")
        await asyncio.sleep(0.005)


def test_leases_are_short_and_cover_a_whole_poll() -> None:
    policy = RetryPolicy()
    # A crash costs a lease: the SPEC allows 15 s from the kill to the pickup.
    assert policy.lease <= 12.0
    # Orders are claimed right before their poll; the lease covers the poll's deadline
    # plus two short transactions.
    assert policy.deadline + 4.0 <= policy.lease
    with pytest.raises(ValueError, match="deadline"):
        RetryPolicy(deadline=10.0, lease=10.0)


def test_the_accrual_timeout_sets_the_poll_deadline_and_the_lease_that_covers_it() -> None:
    assert RetryPolicy.for_deadline(5.0) == RetryPolicy()  # the default setting
    slow = RetryPolicy.for_deadline(12.0)
    assert (slow.deadline, slow.lease) == (12.0, 17.0)
    # The container wires GOPHERMART_ACCRUAL_TIMEOUT into the worker's policy.
    from gophermart.bootstrap import build
    from gophermart.settings import Settings
    from gophermart.testing import TEST_SECRET

    container = build(Settings.for_database("memory://", secret=TEST_SECRET, accrual_timeout=12.0))
    assert container.retry_policy() == slow


async def test_a_claimed_order_is_leased_for_the_policy_lease(world: World) -> None:
    alice = await world.user()
    await world.upload(alice, ORDER)
    world.accrual = RecordingAccrual(world)
    await world.sync().run_once()
    [(_, polled_at, lease_until)] = world.accrual.seen
    assert lease_until == polled_at + timedelta(seconds=RetryPolicy().lease)


async def test_a_poll_past_its_deadline_is_retried_later(world: World) -> None:
    alice = await world.user()
    await world.upload(alice, ORDER)
    world.accrual = HangingAccrual(ORDER)
    sync = world.sync(RetryPolicy(deadline=0.05, lease=1.0))
    started = asyncio.get_running_loop().time()
    assert await sync.run_once() == 1
    assert asyncio.get_running_loop().time() - started < 1.0
    assert world.status(ORDER) is OrderStatus.NEW
    nxt = world.next_attempt(ORDER)
    assert nxt is not None and nxt - world.clock.now() <= timedelta(seconds=0.25)  # backoff
    assert sync.stats.timed_out == 1 and sync.stats.retried == 1


async def test_a_hanging_poll_costs_one_slot_not_the_rest(world: World) -> None:
    """Finding 1: one stuck answer held up every later claim (a batch was gathered)."""
    alice = await world.user()
    stuck = HangingAccrual(ORDER)
    world.accrual = stuck
    await world.upload(alice, ORDER)
    sync = AccrualSync(
        world.uow, stuck, world.gate, world.clock, RetryPolicy(deadline=30.0, lease=40.0)
    )
    stop, wakeup = asyncio.Event(), asyncio.Event()
    worker = asyncio.create_task(sync.run_until(stop, wakeup, idle_poll=0.01))
    try:
        await asyncio.wait_for(stuck.hanging.wait(), 2.0)
        others = numbers(5)
        for number in others:
            stuck.will_answer(number, AccrualReply(PROCESSED, Points(1_00)))
            await world.upload(alice, number)
        wakeup.set()
        await eventually(lambda: all(world.status(n) is OrderStatus.PROCESSED for n in others))
        assert world.status(ORDER) is OrderStatus.NEW  # still hanging, in its own slot
        assert world.balance(alice) == (5_00, 0)
    finally:
        stuck.release.set()
        stop.set()
        await asyncio.wait_for(worker, 5.0)


async def test_no_claimed_order_waits_for_its_request_slot(world: World) -> None:
    """Finding 2: under a rate limit, claimed orders waited minutes for their slots,
    past their lease. Now the slot is granted first and one order claimed for it."""
    alice = await world.user()
    recording = RecordingAccrual(world)
    world.accrual = recording
    due = numbers(3)
    for number in due:
        await world.upload(alice, number)
        recording.will_answer(number, AccrualReply(PROCESSED, Points(1_00)))
    await world.gate.pause(world.clock.now(), per_minute=60)
    sync = world.sync()
    for _ in due:
        assert await sync.run_once() == 1
    assert sorted(n for n, _, _ in recording.seen) == sorted(due)
    lease = timedelta(seconds=RetryPolicy().lease)
    for _, polled_at, lease_until in recording.seen:
        assert lease_until is not None
        assert lease_until - lease == polled_at  # claimed at the very instant of its poll
    gaps = [b[1] - a[1] for a, b in itertools.pairwise(recording.seen)]
    assert all(gap >= timedelta(seconds=1) for gap in gaps)  # and still paced


async def test_learnt_rate_is_forgotten_within_two_minutes_by_default() -> None:
    """Finding 2: a 429 "1 per minute" used to throttle for good."""
    gate = MemoryGate()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    await gate.pause(t0 + timedelta(seconds=1), per_minute=1)  # Retry-After: 1
    assert await gate.reserve(t0) == t0 + timedelta(seconds=1)
    assert gate.rate() == 1
    assert await gate.reserve(t0 + timedelta(seconds=2)) >= t0 + timedelta(seconds=61)
    later = t0 + timedelta(seconds=120)
    assert await gate.reserve(later) == later
    assert gate.rate() is None
    assert await gate.reserve(later) == later  # full speed: no spacing any more


async def test_a_new_429_keeps_the_rate_learnt() -> None:
    gate = MemoryGate(rate_ttl=60.0)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    await gate.pause(t0 + timedelta(seconds=1), per_minute=5)
    await gate.pause(t0 + timedelta(seconds=50), per_minute=None)  # no number: same rate
    assert await gate.reserve(t0 + timedelta(seconds=100)) == t0 + timedelta(seconds=100)
    assert gate.rate() == 5  # 50 s pause + 60 s: still learnt at 100 s
    assert await gate.reserve(t0 + timedelta(seconds=111)) == t0 + timedelta(seconds=111)
    assert gate.rate() is None


async def test_after_a_429_storm_full_speed_returns_within_two_minutes(world: World) -> None:
    """Finding 2 replayed: 11 orders, every poll in flight answered 429 with Retry-After 1
    and "1 request per minute"; then the accrual system stops refusing."""
    alice = await world.user()
    due = numbers(11)
    recording = RecordingAccrual(world)
    world.accrual = recording
    for number in due:
        await world.upload(alice, number)
        recording.will_answer(
            number, RateLimited(retry_after=1, per_minute=1), AccrualReply(PROCESSED, Points(1))
        )
    sync = world.sync()
    start = world.clock.now()
    assert await sync.run_once() == 11  # nothing known yet: all at once, all refused
    assert sync.stats.throttled == 11
    while not all(world.status(n) is OrderStatus.PROCESSED for n in due):
        assert world.clock.now() - start < timedelta(minutes=3), world.gate.per_minute
        if not await sync.run_once():
            world.clock.advance(1.0)  # the idle tick
    assert world.clock.now() - start <= timedelta(minutes=2)
    # while the limit was learnt, polls kept to it: 1 a minute after the pause
    learnt = [t for _, t, _ in recording.seen[11:] if t < start + timedelta(seconds=61)]
    assert len(learnt) <= 1, learnt
    assert world.balance(alice) == (11, 0)


async def test_an_unusable_answer_is_retried_and_logged_once(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """10b: an accrual of "100" (a string) or -5 is never credited; the order is asked
    about again with backoff, and the log says so once, not on every retry."""
    caplog.set_level(logging.INFO, logger="gophermart.worker")
    alice = await world.user()
    await world.upload(alice, ORDER)
    world.accrual.will_answer(ORDER, Unavailable("accrual is not a JSON number: '100'"))
    sync = world.sync()
    for _ in range(6):
        assert await sync.run_once() == 1
        world.clock.advance(60)
    assert world.accrual.calls == [ORDER] * 6
    assert world.status(ORDER) is OrderStatus.NEW
    assert world.credits() == []
    lines = [r for r in caplog.records if ORDER in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert "not a JSON number" in lines[0].getMessage()


async def test_an_unreachable_accrual_system_is_one_warning_per_outage(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: "connection refused" was an INFO line per order (and again whenever an
    order's reason changed). Now: one WARNING when the outage starts, one when the system
    answers again, whatever the number of orders and retries in between."""
    caplog.set_level(logging.INFO, logger="gophermart.worker")
    alice = await world.user()
    numbers = [with_check_digit(f"71{i:08d}") for i in range(5)]
    refused = Unavailable("ConnectError: [Errno 111] Connection refused", "network", True)
    unknown_host = Unavailable(
        "ConnectError: [Errno -2] Name or service not known", "network", True
    )
    for number in numbers:
        await world.upload(alice, number)
        world.accrual.will_answer(number, refused, refused, unknown_host, unknown_host)
    sync = world.sync()
    for _ in range(4):
        assert await sync.run_once() == len(numbers)
        world.clock.advance(60)
    assert all(world.status(n) is OrderStatus.NEW for n in numbers)
    for number in numbers:
        world.accrual.script[number] = [AccrualReply(PROCESSED, Points(1_00))]
    assert await sync.run_once() == len(numbers)
    assert world.balance(alice) == (5_00, 0)
    lines = [r for r in caplog.records if "accrual system" in r.getMessage()]
    assert [(r.levelno, r.getMessage().split(":")[0]) for r in lines] == [
        (logging.WARNING, "accrual system unreachable"),
        (logging.WARNING, "accrual system reachable again after 240s (20 polls failed)"),
    ], [r.getMessage() for r in lines]
    assert "Connection refused" in lines[0].getMessage()
    assert not [r for r in caplog.records if "no usable answer" in r.getMessage()]


async def test_one_order_s_bad_answers_are_no_outage(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gophermart.worker")
    alice = await world.user()
    await world.upload(alice, ORDER)
    world.accrual.will_answer(ORDER, Unavailable("ReadTimeout: timed out", "timeout"))
    sync = world.sync()
    for _ in range(3):
        assert await sync.run_once() == 1
        world.clock.advance(60)
    assert not [r for r in caplog.records if "accrual system unreachable" in r.getMessage()]
    assert len([r for r in caplog.records if ORDER in r.getMessage()]) == 1


#: What a BIGINT column of hundredths holds.
BIGINT_MAX = 2**63 - 1


async def test_a_credit_past_what_a_balance_holds_parks_the_order(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Finding 7, the worker's side: a credit that cannot be applied was retried every
    lease with a traceback each time. Now the order is parked (asked about again rarely),
    counted, and logged once; it goes through once the balance can take it."""
    caplog.set_level(logging.INFO, logger="gophermart.worker")
    alice = await world.user()
    await world.upload(alice, ORDER)
    world.store.state.balances[alice] = (BIGINT_MAX, 0)
    world.accrual.will_answer(ORDER, AccrualReply(PROCESSED, Points(1_00)))
    sync = world.sync()
    for _ in range(3):
        assert await sync.run_once() == 1
        assert world.status(ORDER) is OrderStatus.NEW  # nothing written
        nxt = world.next_attempt(ORDER)
        assert nxt == world.clock.now() + timedelta(seconds=RetryPolicy().park)
        assert await sync.run_once() == 0  # parked: not due again soon
        world.clock.advance(RetryPolicy().park)
    assert sync.stats.parked == 3
    assert [kind for kind, _ in world.metrics.events].count("parked") == 3  # and counted
    assert world.credits() == []
    lines = [r for r in caplog.records if ORDER in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].levelno == logging.ERROR and not lines[0].exc_info

    world.store.state.balances[alice] = (0, 0)  # e.g. the points were spent
    assert await sync.run_once() == 1
    assert world.status(ORDER) is OrderStatus.PROCESSED
    assert world.balance(alice) == (1_00, 0)


async def test_a_failure_repeating_on_every_retry_is_logged_once(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gophermart.worker")
    alice = await world.user()
    await world.upload(alice, ORDER)
    del world.store.state.balances[alice]  # a broken row: the owner has no account
    world.accrual.will_answer(ORDER, AccrualReply(PROCESSED, Points(1_00)))
    sync = world.sync()
    for _ in range(4):
        assert await sync.run_once() == 1
        world.clock.advance(RetryPolicy().lease)  # the lease brings it back
    assert sync.stats.failed == 4
    lines = [r for r in caplog.records if ORDER in r.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info, [r.getMessage() for r in lines]


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
    assert [v for k, v in world.metrics.events if k == "credited"] == [Points(500_00)]
    paused = [v for k, v in world.metrics.events if k == "rate_limited"]
    assert len(paused) == 1
    until, per_minute = paused[0]  # type: ignore[misc]
    assert per_minute == 30
    assert until >= start + timedelta(seconds=7)
