"""Points: exact amounts in integer hundredths (kopecks).

1 point = 1 rouble, at most two decimals. Amounts never touch binary floats: they are
parsed from decimal text, kept as ``int`` hundredths, and rendered back as exact
decimals.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Final

from gophermart.domain.errors import InvalidAmount

_HUNDREDTH: Final = Decimal("0.01")

#: The largest single amount we accept: 10^13 points. Far beyond any real purchase,
#: and small enough that millions of them still fit a signed 64-bit column of
#: hundredths, so sums can never overflow the database.
MAX_CENTS: Final = 10**15


@dataclass(frozen=True, slots=True, order=True)
class Points:
    """A non-negative amount of points, stored as integer hundredths."""

    cents: int

    def __post_init__(self) -> None:
        if type(self.cents) is not int:  # bool is an int subclass; refuse it too
            raise InvalidAmount("points are counted in whole hundredths")
        if self.cents < 0:
            raise InvalidAmount("points cannot be negative")
        if self.cents > MAX_CENTS:
            raise InvalidAmount("amount is absurdly large")

    @classmethod
    def exact(cls, value: Decimal | int | str) -> Points:
        """Parse an amount that must already be exact to the kopeck (a user's input).

        More than two decimals, NaN, infinity or a non-number is :class:`InvalidAmount`.
        """
        return cls(_exact_cents(_to_decimal(value)))

    @classmethod
    def rounded(cls, value: Decimal | int | str) -> Points:
        """Parse an amount with any precision, rounding half up to the kopeck.

        This is how the accrual system's answers are read: 729.975 becomes 729.98.
        """
        amount = _to_decimal(value)
        return cls._from_cents_decimal(amount.quantize(_HUNDREDTH, ROUND_HALF_UP) * 100)

    @classmethod
    def _from_cents_decimal(cls, cents: Decimal) -> Points:
        if cents > MAX_CENTS:  # checked before int() so 1e999999 cannot eat memory
            raise InvalidAmount("amount is absurdly large")
        return cls(int(cents))

    @property
    def is_zero(self) -> bool:
        return self.cents == 0

    def as_decimal(self) -> Decimal:
        """The exact decimal value, without trailing zeros (500.50 -> 500.5, 42.00 -> 42)."""
        whole, frac = divmod(self.cents, 100)
        if frac == 0:
            return Decimal(whole)
        return Decimal(self.cents).scaleb(-2).normalize()

    def __add__(self, other: Points) -> Points:
        return Points(self.cents + other.cents)

    def __sub__(self, other: Points) -> Points:
        """Subtraction that refuses to go negative (raises :class:`InvalidAmount`)."""
        return Points(self.cents - other.cents)

    def __str__(self) -> str:
        return str(self.as_decimal())


def _exact_cents(amount: Decimal) -> int:
    """The amount in hundredths, in integer arithmetic: decimal arithmetic would round
    to its 28-digit context first, and 1.00000000000000000000000000001 would pass as 1."""
    _, digits, exponent = amount.as_tuple()
    assert isinstance(exponent, int)  # finite: checked by _to_decimal
    coefficient = int("".join(map(str, digits)) or "0")
    shift = exponent + 2
    if coefficient == 0:
        return 0
    if shift >= 0:
        cents = int(coefficient * 10**shift)
    else:
        # More fractional digits than the coefficient has: cannot be a whole number of
        # hundredths (and 10**shift of a hostile exponent would never finish).
        if -shift > len(digits) or coefficient % 10**-shift:
            raise InvalidAmount("amounts have at most two decimals")
        cents = int(coefficient // 10**-shift)
    if cents > MAX_CENTS:
        raise InvalidAmount("amount is absurdly large")
    return cents


def _to_decimal(value: Decimal | int | str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        raise InvalidAmount("an amount must be a decimal number")
    try:
        amount = Decimal(value) if not isinstance(value, Decimal) else value
    except (InvalidOperation, ValueError) as exc:
        raise InvalidAmount("an amount must be a decimal number") from exc
    if not amount.is_finite():
        raise InvalidAmount("an amount must be a finite number")
    if amount < 0:
        raise InvalidAmount("an amount cannot be negative")
    if amount.adjusted() > 20:  # 10^21 and up: refuse before any arithmetic on it
        raise InvalidAmount("amount is absurdly large")
    return amount
