"""The events' payload and wire form (domain/events.py, adapters/event_wire.py): points
as exact decimal strings, the one JSON form read back to the same event."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gophermart import (
    EVENT_TYPES,
    EntryKind,
    Event,
    OrderStatus,
    Points,
    UserId,
    event_from_json,
    event_json,
)
from gophermart.domain.events import ledger_data, order_data, points_text

CENTS = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@given(CENTS)
def test_points_are_exact_decimal_strings(cents: int) -> None:
    text = points_text(cents)
    assert Decimal(text) * 100 == cents
    assert "E" not in text and "e" not in text
    if cents >= 0:
        assert text == str(Points(cents))  # the wire's rendering of a balance


def test_a_ledger_payload_is_signed_by_its_kind() -> None:
    debit = ledger_data(7, EntryKind.WITHDRAWAL, "2377225624", 1250, 0, None, None)
    assert debit == {
        "entry_id": 7,
        "kind": "withdrawal",
        "order": "2377225624",
        "amount": "-12.5",
        "owed_change": "0",
        "reason": None,
        "hold_id": None,
    }
    down = ledger_data(8, EntryKind.ADJUSTMENT, None, -300, 0, "typo", None)
    assert down["amount"] == "-3"  # an adjustment's stored amount carries its sign
    paid = ledger_data(9, EntryKind.ACCRUAL_REVERSAL, None, 500, -500, None, None)
    assert (paid["amount"], paid["owed_change"]) == ("-5", "-5")


@pytest.mark.parametrize("status", list(OrderStatus))
def test_an_order_payload_names_its_accrual_only_when_processed(status: OrderStatus) -> None:
    data = order_data("9278923470", status, 72978)
    assert data["accrual"] == ("729.78" if status is OrderStatus.PROCESSED else None)
    assert data["status"] == status.value


def test_every_kind_and_announced_status_has_a_type() -> None:
    assert len(EVENT_TYPES) == len(set(EVENT_TYPES)) == len(EntryKind) + 3
    assert "ledger.accrual" in EVENT_TYPES and "order.processed" in EVENT_TYPES
    assert "order.new" not in EVENT_TYPES


@given(
    st.integers(min_value=1, max_value=2**63 - 1),
    st.sampled_from(EVENT_TYPES),
    st.integers(min_value=1, max_value=2**63 - 1),
    st.datetimes(timezones=st.just(UTC)),
    st.dictionaries(st.text(max_size=10), st.one_of(st.none(), st.integers(), st.text())),
)
def test_the_wire_form_reads_back_to_the_same_event(
    id_: int, type_: str, user: int, at: datetime, data: dict[str, str | int | None]
) -> None:
    event = Event(id_, type_, UserId(user), at, data)
    body = event_json(event)
    assert event_from_json(body) == event
    assert body.startswith(b'{"id":') and b'"type":' in body and b'"data":' in body
