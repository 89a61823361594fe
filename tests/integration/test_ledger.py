"""The ledger a shop runs on, through the library on memory, SQLite and PostgreSQL (SPEC
"The ledger a shop runs on"): history with balance_after, holds (reserve, capture,
release, expiry), reversals into owed points, refunds, adjustments; reconcile after each.
"""

from __future__ import annotations

import asyncio
import itertools
from decimal import Decimal

import pytest
from dependency_injector import providers

from gophermart import (
    Gophermart,
    InsufficientPoints,
    InvalidAmount,
    InvalidInput,
    LedgerGauges,
    Points,
)
from gophermart.application.ports import NoEventMetrics
from gophermart.domain.errors import ExceedsOriginal, HoldConflict, UnknownHold, UnknownOrder
from gophermart.testing import FrozenClock
from tests.integration.test_events import assert_the_feed_tells_the_history

ACCRUED, SPENT, OTHER = "9278923470", "2377225624", "79927398713"


async def _member(loyalty: Gophermart, login: str = "erin", points: int = 100) -> int:
    user = await loyalty.register(login, "pw")
    number = {"erin": ACCRUED, "finn": "12345678903"}[login]
    await loyalty.upload_order(user.user_id, number)
    await loyalty.record_accrual(number, points)
    return int(user.user_id)


class CountedEvents(NoEventMetrics):
    """The ledger's events as the metrics hear them."""

    def __init__(self) -> None:
        self.expiries: list[int] = []
        self.reversals: list[tuple[Points, Points]] = []

    def holds_expired(self, count: int) -> None:
        self.expiries.append(count)

    def reversed(self, points: Points, owed: Points) -> None:
        self.reversals.append((points, owed))


def _chain_holds(history: list, current: Points) -> None:
    """Newest first: each entry's balance_after is the previous one's plus its change,
    the newest one's is the balance."""
    assert history[0].balance_after == current
    for newer, older in itertools.pairwise(history):
        assert newer.balance_after.cents == older.balance_after.cents + newer.change


async def test_history_pages_with_balance_after(loyalty: Gophermart) -> None:
    erin = await _member(loyalty)
    for number, amount in ((SPENT, "20"), (OTHER, "5.5")):
        await loyalty.withdraw(erin, number, amount)
    history = list(await loyalty.history(erin))
    assert [h.kind.value for h in history] == ["withdrawal", "withdrawal", "accrual"]
    assert [h.amount for h in history] == [Decimal("-5.5"), Decimal("-20"), Decimal("100")]
    _chain_holds(history, (await loyalty.balance(erin)).current)
    first = await loyalty.history(erin, 2)
    rest = await loyalty.history(erin, 2, first[-1].id)
    assert [h.id for h in (*first, *rest)] == [h.id for h in history]
    with pytest.raises(InvalidInput):
        await loyalty.history(erin, 0)


async def test_a_hold_is_captured_into_the_orders_withdrawal(loyalty: Gophermart) -> None:
    erin = await _member(loyalty)
    made = await loyalty.hold(erin, SPENT, "30")
    assert made.created
    again = await loyalty.hold(erin, SPENT, "30")  # the same request: the same hold
    assert not again.created and again.hold.id == made.hold.id
    balance = await loyalty.balance(erin)
    assert (balance.current, balance.held) == (Points(7000), Points(3000))
    with pytest.raises(HoldConflict):
        await loyalty.hold(erin, SPENT, "31")  # another sum for the order
    with pytest.raises(HoldConflict):
        await loyalty.withdraw(erin, SPENT, "30")  # paying the held order directly
    captured = await loyalty.capture(erin, made.hold.id)
    assert captured.state.value == "captured"
    assert (await loyalty.capture(erin, made.hold.id)).state.value == "captured"  # replay
    balance = await loyalty.balance(erin)
    assert (balance.current, balance.held, balance.withdrawn) == (
        Points(7000),
        Points(0),
        Points(3000),
    )
    assert [w.order for w in await loyalty.withdrawals(erin)] == [SPENT]
    with pytest.raises(HoldConflict):
        await loyalty.release(erin, made.hold.id)
    with pytest.raises(HoldConflict):
        await loyalty.hold(erin, SPENT, "30")  # the order is paid now
    kinds = [h.kind.value for h in await loyalty.history(erin)]
    assert kinds == ["withdrawal", "hold_release", "hold", "accrual"]
    _chain_holds(list(await loyalty.history(erin)), balance.current)
    assert (await loyalty.reconcile()).ok


async def test_a_released_or_expired_hold_gives_the_points_back_once(
    loyalty: Gophermart, clock: FrozenClock
) -> None:
    erin = await _member(loyalty)
    first = (await loyalty.hold(erin, SPENT, "40")).hold
    assert (await loyalty.release(erin, first.id)).state.value == "released"
    assert (await loyalty.release(erin, first.id)).state.value == "released"  # replay
    assert (await loyalty.balance(erin)).current == Points(10000)
    second = (await loyalty.hold(erin, SPENT, "40", ttl=60)).hold  # a new hold, same order
    assert second.id != first.id
    clock.advance(61)
    with pytest.raises(HoldConflict, match="expired"):
        await loyalty.capture(erin, second.id)  # past expires_at, not swept yet
    assert (await loyalty.balance(erin)).current == Points(10000)
    third = (await loyalty.hold(erin, OTHER, "10", ttl=1)).hold
    # the capture refused found the second expired and closed it
    assert await loyalty.ledger_gauges() == LedgerGauges(1, Points(1000), 0, Points(0))
    clock.advance(2)
    events = CountedEvents()
    loyalty.container.event_metrics.override(providers.Object(events))
    loyalty.container.holds.reset()
    assert await loyalty.expire_holds() == 1
    assert await loyalty.expire_holds() == 0  # exactly once
    assert events.expiries == [1]
    assert await loyalty.ledger_gauges() == LedgerGauges(0, Points(0), 0, Points(0))
    assert (await loyalty.release(erin, third.id)).state.value == "expired"
    assert (await loyalty.balance(erin)).held == Points(0)
    with pytest.raises(UnknownHold):
        await loyalty.capture(erin, 999_999)
    assert (await loyalty.reconcile()).ok


async def test_holds_refuse_what_the_balance_cannot_cover(loyalty: Gophermart) -> None:
    erin = await _member(loyalty)
    await loyalty.hold(erin, SPENT, "80")
    with pytest.raises(InsufficientPoints):
        await loyalty.hold(erin, OTHER, "30")  # 20 left to hold
    with pytest.raises(InsufficientPoints):
        await loyalty.withdraw(erin, OTHER, "30")
    with pytest.raises(InvalidInput):
        await loyalty.hold(erin, OTHER, "1", ttl=0)
    with pytest.raises(InvalidAmount):
        await loyalty.hold(erin, OTHER, "0")


async def test_a_reversal_beyond_the_balance_is_owed_and_paid_first_from_credits(
    loyalty: Gophermart,
) -> None:
    erin = await _member(loyalty)
    await loyalty.withdraw(erin, SPENT, "70")  # 30 left
    events = CountedEvents()
    loyalty.container.event_metrics.override(providers.Object(events))
    loyalty.container.corrections.reset()
    moved = await loyalty.reverse(ACCRUED, "50", "returned", operator="support")
    assert (moved.amount, moved.owed_change) == (Decimal("-30"), 2000)
    assert events.reversals == [(Points(5000), Points(2000))]
    balance = await loyalty.balance(erin)
    assert (balance.current, balance.owed) == (Points(0), Points(2000))
    assert await loyalty.ledger_gauges() == LedgerGauges(0, Points(0), 1, Points(2000))
    with pytest.raises(ExceedsOriginal):
        await loyalty.reverse(ACCRUED, "51")  # 50 of its 100 are left
    finn = await loyalty.register("finn", "pw")
    await loyalty.upload_order(erin, "12345678903")
    await loyalty.record_accrual("12345678903", 25)  # 20 pays what is owed
    balance = await loyalty.balance(erin)
    assert (balance.current, balance.owed) == (Points(500), Points(0))
    history = list(await loyalty.history(erin))
    assert history[0].kind.value == "accrual_reversal" and history[0].change == -2000
    _chain_holds(history, balance.current)
    rest = await loyalty.reverse(ACCRUED)  # all that is left: 50
    assert rest.amount == Decimal("-5") and rest.owed_change == 4500
    with pytest.raises(ExceedsOriginal):
        await loyalty.reverse(ACCRUED)
    with pytest.raises(UnknownOrder):
        await loyalty.reverse("12345678911")  # never uploaded (passes Luhn? no matter)
    assert finn.user_id
    assert (await loyalty.reconcile()).ok


async def test_refunds_give_a_withdrawal_back_up_to_its_amount(loyalty: Gophermart) -> None:
    erin = await _member(loyalty)
    await loyalty.withdraw(erin, SPENT, "60")
    part = await loyalty.refund(SPENT, "10", "one item cancelled")
    assert part.amount == Decimal("10")
    rest = await loyalty.refund(SPENT)
    assert rest.amount == Decimal("50")
    with pytest.raises(ExceedsOriginal):
        await loyalty.refund(SPENT, "1")
    balance = await loyalty.balance(erin)
    assert (balance.current, balance.withdrawn) == (Points(10000), Points(0))
    with pytest.raises(UnknownOrder):
        await loyalty.refund(OTHER)
    assert (await loyalty.reconcile()).ok


async def test_adjustments_go_either_way_never_below_zero(loyalty: Gophermart) -> None:
    erin = await _member(loyalty)
    up = await loyalty.adjust(erin, "12.34", "goodwill", operator="ann")
    assert (up.amount, up.operator, up.reason) == (Decimal("12.34"), "ann", "goodwill")
    down = await loyalty.adjust(erin, "-112.34", "correction")
    assert down.balance_after == Points(0)
    with pytest.raises(InsufficientPoints):
        await loyalty.adjust(erin, "-0.01")
    with pytest.raises(InvalidAmount):
        await loyalty.adjust(erin, "0")
    entries = await loyalty.history(erin)
    assert entries[1].operator == "ann" and entries[1].reason == "goodwill"
    assert (await loyalty.reconcile()).ok


async def test_concurrent_holds_withdrawals_and_captures_never_overdraw(
    loyalty: Gophermart, backend_uri: str
) -> None:
    erin = await _member(loyalty, points=300)
    numbers = [f"{n}" for n in range(1000, 1030)]
    numbers = [n + str(_luhn_digit(n)) for n in numbers]

    async def one(i: int, number: str) -> None:
        try:
            if i % 3 == 0:
                await loyalty.withdraw(erin, number, "17")
            else:
                made = await loyalty.hold(erin, number, "17")
                if i % 3 == 1:
                    await loyalty.capture(erin, made.hold.id)
                else:
                    await loyalty.release(erin, made.hold.id)
        except InsufficientPoints:
            pass

    await asyncio.gather(*(one(i, n) for i, n in enumerate(numbers)))
    balance = await loyalty.balance(erin)
    assert balance.current.cents >= 0 and balance.held == Points(0)
    assert balance.current.cents + balance.withdrawn.cents == 30_000
    _chain_holds(list(await loyalty.history(erin, 1000)), balance.current)
    report = await loyalty.reconcile()
    assert report.ok, report.summary()
    assert backend_uri
    # The batches committed (or were redone alone) with their events: one per entry,
    # none for a refused move, in balance_after order (issue 18).
    await assert_the_feed_tells_the_history(loyalty, erin)


def _luhn_digit(digits: str) -> int:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d)
        if i % 2 == 0:
            n *= 2
            n -= 9 if n > 9 else 0
        total += n
    return (10 - total % 10) % 10


async def test_holds_of_one_order_at_once_make_one_hold(loyalty: Gophermart) -> None:
    """On PostgreSQL concurrent holds are written in one batch (one transaction): the
    open-hold index refuses the second of an order, the batch is written one by one,
    and the second asks again: the same hold (the same sum) or a conflict."""
    erin = await _member(loyalty)
    same = await asyncio.gather(*(loyalty.hold(erin, SPENT, "10") for _ in range(4)))
    assert len({outcome.hold.id for outcome in same}) == 1
    assert sum(outcome.created for outcome in same) == 1
    other = await asyncio.gather(
        loyalty.hold(erin, OTHER, "10"), loyalty.hold(erin, OTHER, "20"), return_exceptions=True
    )
    assert sorted(type(o).__name__ for o in other) == ["HoldConflict", "HoldOutcome"]
    balance = await loyalty.balance(erin)
    assert balance.held.cents in (20_00, 30_00)  # 10 on SPENT, 10 or 20 on OTHER
    assert balance.current.cents + balance.held.cents == 100_00
    assert (await loyalty.reconcile()).ok
