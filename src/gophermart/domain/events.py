"""Events: the durable feed of what happened to the points (SPEC, "Events").

Every ledger entry and every change of an order's status is also written, in the same
transaction, as an :class:`Event`. Its ``id`` is public and increases in commit order:
a consumer that read up to an id and asks for what comes after it never misses an
event committed meanwhile (no gap is filled in later). ``type`` says what happened:
``ledger.<kind>`` for an entry (one per :class:`~gophermart.domain.accounts.EntryKind`)
and ``order.<status>`` for an order that became PROCESSING, PROCESSED or INVALID.

``data`` is built here, once, from what the stores keep (the entry, the order), so
every store, the library's feed and the webhooks carry the same payload. Points are
exact decimal strings (``"729.78"``, ``"-5"``), never floats.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Final

from gophermart.domain.accounts import BALANCE, EFFECTS, EntryKind
from gophermart.domain.errors import DomainError
from gophermart.domain.orders import OrderStatus
from gophermart.domain.users import UserId

#: A payload value: a decimal string of points, a text, an id, or nothing.
EventValue = str | int | None
EventData = Mapping[str, EventValue]

LEDGER_PREFIX: Final = "ledger."
ORDER_PREFIX: Final = "order."

#: The statuses an order's event is written for (NEW is where every order starts).
ANNOUNCED_STATUSES: Final = (OrderStatus.PROCESSING, OrderStatus.PROCESSED, OrderStatus.INVALID)


def ledger_type(kind: EntryKind) -> str:
    return LEDGER_PREFIX + kind.value


def order_type(status: OrderStatus) -> str:
    return ORDER_PREFIX + status.value.lower()


#: Every event type, in a stable order (webhook subscriptions are validated against it).
EVENT_TYPES: Final = tuple(ledger_type(kind) for kind in EntryKind) + tuple(
    order_type(status) for status in ANNOUNCED_STATUSES
)


@dataclass(frozen=True, slots=True)
class Event:
    """One event of the feed. ``at``: when it happened (UTC): a ledger event's is its
    entry's ``created_at``; an order event's is the store's clock when the status was
    written. Its one JSON form (``{"id","type","user_id","at","data"}``) is
    ``gophermart.adapters.event_wire``'s."""

    id: int
    type: str
    user_id: UserId
    at: datetime
    data: EventData


class EventsPruned(DomainError):
    """The cursor is older than the feed's retention: events after it were pruned, so
    the feed cannot answer "everything after it". ``oldest`` is the cursor to resume
    from (everything after it is still kept); what was pruned in between has to be
    caught up another way (e.g. the balances and the history, which are never pruned).
    """

    def __init__(self, cursor: int, oldest: int) -> None:
        super().__init__(f"events after {cursor} are pruned (retention); resume after {oldest}")
        self.cursor = cursor
        self.oldest = oldest


def points_text(cents: int) -> str:
    """Hundredths as an exact decimal string, without trailing zeros ("5", "-0.5")."""
    whole, fraction = divmod(cents, 100)
    if fraction == 0:
        return str(whole)
    return str(Decimal(cents).scaleb(-2).normalize())


def ledger_data(
    entry_id: int,
    kind: EntryKind,
    order: str | None,
    stored_amount: int,
    owed_change: int,
    reason: str | None,
    hold_id: int | None,
) -> dict[str, EventValue]:
    """A ledger event's payload: the entry as its owner's history shows it (``amount``
    signed: + a credit, - a debit; ``owed_change`` signed too), with the entry's id."""
    return {
        "entry_id": entry_id,
        "kind": kind.value,
        "order": order,
        "amount": points_text(EFFECTS[kind][BALANCE] * stored_amount),
        "owed_change": points_text(owed_change),
        "reason": reason,
        "hold_id": hold_id,
    }


def order_data(number: str, status: OrderStatus, accrual: int | None) -> dict[str, EventValue]:
    """An order event's payload: the order, its new status, and its accrual when it
    was PROCESSED with points (final: a later reversal is an event of its own)."""
    credited = accrual if status is OrderStatus.PROCESSED and accrual else None
    return {
        "order": number,
        "status": status.value,
        "accrual": points_text(credited) if credited is not None else None,
    }
