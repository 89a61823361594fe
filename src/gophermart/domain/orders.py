"""Order numbers and the order status machine."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final

from gophermart.domain.errors import IllegalStatusTransition, InvalidInput, InvalidOrderNumber
from gophermart.domain.points import Points
from gophermart.domain.users import UserId

#: Order numbers have "any length" in the contract; a bound still keeps a single
#: request from asking us to Luhn-check megabytes. Real card/order numbers are < 30.
MAX_ORDER_NUMBER_LENGTH: Final = 64


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum over a string of ASCII digits."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        if position % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


@dataclass(frozen=True, slots=True)
class OrderNumber:
    """A string of ASCII digits that passes the Luhn check.

    Kept as text: order numbers have arbitrary length and leading zeros matter.
    """

    value: str

    @classmethod
    def parse(cls, raw: str) -> OrderNumber:
        if not isinstance(raw, str):  # an int would lose leading zeros; None is no number
            raise InvalidOrderNumber("an order number is a string of digits")
        value = raw.strip()
        if not value:
            raise InvalidOrderNumber("order number is empty")
        if len(value) > MAX_ORDER_NUMBER_LENGTH:
            raise InvalidOrderNumber("order number is too long")
        if not (value.isascii() and value.isdigit()):
            raise InvalidOrderNumber("order number must contain only digits")
        if not luhn_valid(value):
            raise InvalidOrderNumber("order number fails the Luhn check")
        return cls(value)

    @classmethod
    def named(cls, raw: object) -> OrderNumber:
        """The number of an order being looked up (an operator's question, a URL's path):
        anything but 1 to 64 ASCII digits is malformed (:class:`InvalidInput`, no
        surrounding whitespace either); digits failing the Luhn check are
        :class:`InvalidOrderNumber`, as at upload."""
        if not (
            isinstance(raw, str)
            and 0 < len(raw) <= MAX_ORDER_NUMBER_LENGTH
            and raw.isascii()
            and raw.isdigit()
        ):
            raise InvalidInput(
                f"an order number is 1 to {MAX_ORDER_NUMBER_LENGTH} digits, not {raw!r:.40}"
            )
        return cls.parse(raw)

    def __str__(self) -> str:
        return self.value


class OrderStatus(enum.StrEnum):
    NEW = "NEW"
    PROCESSING = "PROCESSING"
    INVALID = "INVALID"
    PROCESSED = "PROCESSED"

    @property
    def is_final(self) -> bool:
        return self in (OrderStatus.INVALID, OrderStatus.PROCESSED)


_ALLOWED: Final = {
    OrderStatus.NEW: frozenset(
        {OrderStatus.NEW, OrderStatus.PROCESSING, OrderStatus.INVALID, OrderStatus.PROCESSED}
    ),
    OrderStatus.PROCESSING: frozenset(
        {OrderStatus.PROCESSING, OrderStatus.INVALID, OrderStatus.PROCESSED}
    ),
    OrderStatus.INVALID: frozenset[OrderStatus](),
    OrderStatus.PROCESSED: frozenset[OrderStatus](),
}


class AccrualVerdict(enum.StrEnum):
    """What the accrual system says about an order (its own vocabulary)."""

    UNKNOWN = "UNKNOWN"  # HTTP 204: not registered there (yet)
    REGISTERED = "REGISTERED"
    PROCESSING = "PROCESSING"
    INVALID = "INVALID"
    PROCESSED = "PROCESSED"

    def to_status(self) -> OrderStatus:
        """The contract's mapping: 204 stays NEW, REGISTERED/PROCESSING -> PROCESSING."""
        return _VERDICT_TO_STATUS[self]


_VERDICT_TO_STATUS: Final = {
    AccrualVerdict.UNKNOWN: OrderStatus.NEW,
    AccrualVerdict.REGISTERED: OrderStatus.PROCESSING,
    AccrualVerdict.PROCESSING: OrderStatus.PROCESSING,
    AccrualVerdict.INVALID: OrderStatus.INVALID,
    AccrualVerdict.PROCESSED: OrderStatus.PROCESSED,
}


@dataclass(frozen=True, slots=True)
class Order:
    """An uploaded order. Immutable: transitions return a new ``Order``."""

    number: OrderNumber
    owner: UserId
    status: OrderStatus
    uploaded_at: datetime
    accrual: Points | None = None

    @classmethod
    def upload(cls, number: OrderNumber, owner: UserId, at: datetime) -> Order:
        return cls(number=number, owner=owner, status=OrderStatus.NEW, uploaded_at=at)

    def move_to(self, status: OrderStatus, accrual: Points | None = None) -> Order:
        """Move along NEW -> PROCESSING -> PROCESSED | INVALID.

        Staying in a non-final status is allowed (a poll that learned nothing new);
        anything out of a final status, or backwards, is :class:`IllegalStatusTransition`.
        Only PROCESSED carries an accrual, and only when points were awarded.
        """
        if status not in _ALLOWED[self.status]:
            raise IllegalStatusTransition(f"order {self.number}: {self.status} -> {status}")
        if status is not OrderStatus.PROCESSED and accrual is not None:
            raise IllegalStatusTransition(f"only a PROCESSED order carries an accrual ({status})")
        if accrual is not None and accrual.is_zero:
            accrual = None
        return replace(self, status=status, accrual=accrual)

    def apply(self, verdict: AccrualVerdict, accrual: Points | None) -> Order:
        """Apply what the accrual system said."""
        status = verdict.to_status()
        if status is OrderStatus.NEW and self.status is OrderStatus.PROCESSING:
            # "not registered (yet)" after the accrual system already knew the order is a
            # hiccup on their side, never a step back: stay PROCESSING and ask again.
            status = OrderStatus.PROCESSING
        return self.move_to(status, accrual if status is OrderStatus.PROCESSED else None)

    @property
    def credit(self) -> Points | None:
        """What this order credits to its owner: its accrual, once it is PROCESSED."""
        if self.status is OrderStatus.PROCESSED and self.accrual is not None:
            return self.accrual
        return None
