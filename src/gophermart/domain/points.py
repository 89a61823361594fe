"""Points: exact amounts in integer hundredths (kopecks).

1 point = 1 rouble, at most two decimals. Amounts never touch binary floats: they are
parsed from decimal text, kept as ``int`` hundredths, and rendered back as exact
decimals.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Final

from gophermart.domain.errors import BalanceOverflow, InvalidAmount

_HUNDREDTH: Final = Decimal("0.01")

#: What the ledger can hold: amounts, balances and totals live in signed 64-bit
#: (``BIGINT``) columns of hundredths. Sums may grow up to this, and no further:
#: arithmetic that would pass it raises :class:`BalanceOverflow`.
MAX_CENTS: Final = 2**63 - 1

#: The largest *single* amount taken from outside (a withdrawal, one order's accrual):
#: 10^13 points, far beyond any real purchase. Balances are not capped by it.
MAX_AMOUNT_CENTS: Final = 10**15

#: Digits a parsed amount may have before it is refused outright (10^21 points and up
#: is far over :data:`MAX_AMOUNT_CENTS`): no arithmetic is done on anything larger.
_MAX_ADJUSTED_EXPONENT: Final = 20


@dataclass(frozen=True, slots=True, order=True)
class Points:
    """A non-negative amount of points, stored as integer hundredths.

    Any value up to :data:`MAX_CENTS` (what the database column holds) is a valid
    ``Points``: a balance or a total. Amounts parsed from outside (:meth:`exact`,
    :meth:`rounded`) are capped lower, at :data:`MAX_AMOUNT_CENTS`.
    """

    cents: int

    def __post_init__(self) -> None:
        if type(self.cents) is not int:  # bool is an int subclass; refuse it too
            raise InvalidAmount("points are counted in whole hundredths")
        if self.cents < 0:
            raise InvalidAmount("points cannot be negative")
        if self.cents > MAX_CENTS:
            raise BalanceOverflow(f"{self.cents} hundredths do not fit the ledger")

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
        if cents > MAX_AMOUNT_CENTS:  # checked before int() so 1e999999 cannot eat memory
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
        """Addition up to what the ledger holds (raises :class:`BalanceOverflow` past it)."""
        total = self.cents + other.cents
        if total > MAX_CENTS:
            raise BalanceOverflow(f"{self} + {other} is more than the ledger can hold")
        return Points(total)

    def __sub__(self, other: Points) -> Points:
        """Subtraction that refuses to go negative (raises :class:`InvalidAmount`)."""
        return Points(self.cents - other.cents)

    def __str__(self) -> str:
        return str(self.as_decimal())


def _exact_cents(amount: Decimal) -> int:
    """The amount in hundredths, in integer arithmetic: decimal arithmetic would round
    to its 28-digit context first, and 1.00000000000000000000000000001 would pass as 1.

    Trailing zeros are dropped from the digits first, so ``1.`` followed by 5,000 zeros
    is exactly 1 (and never meets ``int()``'s limit on digit strings): what remains is
    a coefficient that is not a multiple of ten, so it is a whole number of hundredths
    exactly when its exponent is at least -2.
    """
    _, digits, exponent = amount.as_tuple()
    assert isinstance(exponent, int)  # finite: checked by _to_decimal
    kept = len(digits)
    while kept and digits[kept - 1] == 0:
        kept -= 1
    if kept == 0:
        return 0
    shift = exponent + (len(digits) - kept) + 2  # value * 100 == coefficient * 10**shift
    if shift < 0:
        raise InvalidAmount("amounts have at most two decimals")
    # _to_decimal bounded the magnitude (adjusted exponent <= 20), so kept + shift, the
    # number of digits of the result, is at most 23.
    cents: int = int("".join(map(str, digits[:kept]))) * 10**shift
    if cents > MAX_AMOUNT_CENTS:
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
    if amount.adjusted() > _MAX_ADJUSTED_EXPONENT:  # refuse before any arithmetic on it
        raise InvalidAmount("amount is absurdly large")
    return amount
