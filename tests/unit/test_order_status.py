"""The order status machine: forward only, final is final, accrual only on PROCESSED.

Proves, exhaustively over every (from, to) pair against a reference table written here,
that ``Order.move_to`` allows NEW -> PROCESSING -> PROCESSED | INVALID (and staying in a
non-final status) and refuses everything else with ``IllegalStatusTransition``; that
only PROCESSED carries an accrual and a zero accrual is dropped; that the contract's
mapping of accrual-system verdicts holds (204 -> NEW, REGISTERED/PROCESSING ->
PROCESSING, INVALID, PROCESSED), including that a 204 after PROCESSING keeps PROCESSING;
and what ``Order.credit`` yields.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gophermart.domain.errors import IllegalStatusTransition
from gophermart.domain.orders import AccrualVerdict, Order, OrderNumber, OrderStatus
from gophermart.domain.points import Points
from gophermart.domain.users import UserId

NEW, PROCESSING, INVALID, PROCESSED = (
    OrderStatus.NEW,
    OrderStatus.PROCESSING,
    OrderStatus.INVALID,
    OrderStatus.PROCESSED,
)
AT = datetime(2026, 1, 1, tzinfo=UTC)
NUMBER = OrderNumber.parse("12345678903")
OWNER = UserId(7)

#: The reference: which moves are legal. Forward only; staying put is fine while not
#: final; nothing leaves a final status (not even to itself).
LEGAL: frozenset[tuple[OrderStatus, OrderStatus]] = frozenset(
    {
        (NEW, NEW),
        (NEW, PROCESSING),
        (NEW, INVALID),
        (NEW, PROCESSED),
        (PROCESSING, PROCESSING),
        (PROCESSING, INVALID),
        (PROCESSING, PROCESSED),
    }
)
FINAL = {INVALID, PROCESSED}


def order_in(status: OrderStatus, accrual: Points | None = None) -> Order:
    return Order(NUMBER, OWNER, status, AT, accrual)


def test_upload_starts_new_without_accrual() -> None:
    order = Order.upload(NUMBER, OWNER, AT)
    assert (order.status, order.accrual, order.owner, order.uploaded_at) == (
        NEW,
        None,
        OWNER,
        AT,
    )
    assert order.credit is None


def test_is_final() -> None:
    assert {s for s in OrderStatus if s.is_final} == FINAL


@pytest.mark.parametrize(
    ("before", "after"), list(itertools.product(OrderStatus, repeat=2)), ids=str
)
def test_every_transition_against_reference_table(before: OrderStatus, after: OrderStatus) -> None:
    order = order_in(before)
    if (before, after) in LEGAL:
        moved = order.move_to(after)
        assert moved.status is after
        assert moved.accrual is None
        assert order.status is before  # immutable: a new Order is returned
    else:
        with pytest.raises(IllegalStatusTransition):
            order.move_to(after)


@pytest.mark.parametrize("final", sorted(FINAL))
@pytest.mark.parametrize("verdict", list(AccrualVerdict))
def test_no_verdict_moves_a_final_order(final: OrderStatus, verdict: AccrualVerdict) -> None:
    order = order_in(final, Points(100) if final is PROCESSED else None)
    with pytest.raises(IllegalStatusTransition):
        order.apply(verdict, Points(500))


@pytest.mark.parametrize("target", [NEW, PROCESSING, INVALID])
def test_accrual_only_on_processed(target: OrderStatus) -> None:
    with pytest.raises(IllegalStatusTransition):
        order_in(NEW).move_to(target, Points(100))


def test_processed_carries_its_accrual() -> None:
    done = order_in(PROCESSING).move_to(PROCESSED, Points(50050))
    assert done.accrual == Points(50050)
    assert done.credit == Points(50050)


@pytest.mark.parametrize("before", [NEW, PROCESSING])
def test_zero_accrual_is_dropped(before: OrderStatus) -> None:
    done = order_in(before).move_to(PROCESSED, Points(0))
    assert done.status is PROCESSED
    assert done.accrual is None
    assert done.credit is None


def test_processed_without_points() -> None:
    done = order_in(NEW).move_to(PROCESSED)
    assert done.status is PROCESSED and done.credit is None


@pytest.mark.parametrize(
    ("verdict", "status"),
    [
        (AccrualVerdict.UNKNOWN, NEW),
        (AccrualVerdict.REGISTERED, PROCESSING),
        (AccrualVerdict.PROCESSING, PROCESSING),
        (AccrualVerdict.INVALID, INVALID),
        (AccrualVerdict.PROCESSED, PROCESSED),
    ],
)
def test_verdict_mapping_per_contract(verdict: AccrualVerdict, status: OrderStatus) -> None:
    assert verdict.to_status() is status
    assert order_in(NEW).apply(verdict, None).status is status


def test_every_verdict_is_mapped() -> None:
    assert {v.to_status() for v in AccrualVerdict} == set(OrderStatus)


def test_204_after_processing_keeps_processing() -> None:
    order = order_in(PROCESSING)
    assert order.apply(AccrualVerdict.UNKNOWN, None).status is PROCESSING


@pytest.mark.parametrize(
    "verdict",
    [AccrualVerdict.UNKNOWN, AccrualVerdict.REGISTERED, AccrualVerdict.PROCESSING],
)
def test_non_final_verdicts_ignore_an_accrual(verdict: AccrualVerdict) -> None:
    applied = order_in(NEW).apply(verdict, Points(100))
    assert applied.accrual is None and applied.credit is None


def test_invalid_verdict_ignores_an_accrual_and_credits_nothing() -> None:
    applied = order_in(PROCESSING).apply(AccrualVerdict.INVALID, Points(100))
    assert applied.status is INVALID
    assert applied.accrual is None and applied.credit is None


@given(st.lists(st.sampled_from(list(AccrualVerdict)), max_size=12), st.integers(0, 10**6))
def test_verdict_sequences_only_move_forward(verdicts: list[AccrualVerdict], cents: int) -> None:
    rank = {NEW: 0, PROCESSING: 1, INVALID: 2, PROCESSED: 2}
    order = order_in(NEW)
    for verdict in verdicts:
        if order.status in FINAL:
            with pytest.raises(IllegalStatusTransition):
                order.apply(verdict, Points(cents))
            continue
        nxt = order.apply(verdict, Points(cents))
        assert rank[nxt.status] >= rank[order.status]
        order = nxt
    expected_credit = Points(cents) if order.status is PROCESSED and cents > 0 else None
    assert order.credit == expected_credit


@pytest.mark.parametrize("status", [NEW, PROCESSING, INVALID])
def test_credit_is_none_unless_processed(status: OrderStatus) -> None:
    # even a (hand-built) order carrying an accrual credits nothing before PROCESSED
    assert order_in(status, Points(100)).credit is None
