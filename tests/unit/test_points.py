"""Points are exact: integer hundredths, never floats.

Proves that ``Points.exact`` accepts exactly the amounts with at most two decimals
(and refuses negative, non-finite, absurd and non-decimal input), that
``Points.rounded`` rounds half up to the kopeck (checked against an integer-arithmetic
reference built from the decimal's own digits), that ``as_decimal`` renders exactly and
without trailing zeros, and that arithmetic never produces a negative amount.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gophermart.domain.errors import BalanceOverflow, InvalidAmount
from gophermart.domain.points import MAX_AMOUNT_CENTS, MAX_CENTS, Points

# --- independent references -----------------------------------------------------


def reference_cents_half_up(value: Decimal) -> int:
    """Hundredths of a non-negative finite decimal, rounded half up, on integers only."""
    sign, digits, exponent = value.as_tuple()
    assert sign == 0 and isinstance(exponent, int)
    n = int("".join(map(str, digits)) or "0")
    shift = exponent + 2  # value * 100 == n * 10**shift
    if shift >= 0:
        return n * 10**shift
    divisor = 10**-shift
    quotient, remainder = divmod(n, divisor)
    return quotient + (1 if 2 * remainder >= divisor else 0)


def make_decimal(n: int, scale: int) -> Decimal:
    """n * 10**-scale, built from text so no arithmetic context is involved."""
    return Decimal(f"{n}E-{scale}")


decimals = st.builds(make_decimal, st.integers(min_value=0, max_value=10**20), st.integers(0, 9))
#: any value a balance can take (up to the BIGINT column's limit)
points = st.builds(Points, st.integers(min_value=0, max_value=MAX_CENTS))
#: any single amount a user or the accrual system may send
amounts = st.builds(Points, st.integers(min_value=0, max_value=MAX_AMOUNT_CENTS))


# --- Points.exact ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "cents"),
    [
        ("0", 0),
        ("1", 100),
        ("500.5", 50050),
        ("500.50", 50050),
        ("0.01", 1),
        ("42.00", 4200),
        ("751", 75100),
        (Decimal("729.98"), 72998),
        (Decimal("1E+2"), 10000),
        (7, 700),
        ("10000000000000", MAX_AMOUNT_CENTS),  # 10^13 points, the single-amount ceiling
        ("1." + "0" * 5000, 100),  # exactly 1, past int()'s 4,300-digit limit
        ("1" + "0" * 5000 + "e-5000", 100),
        ("12.5" + "0" * 60000, 1250),
        ("0." + "0" * 5000, 0),
        ("1e2", 10000),
    ],
)
def test_exact_accepts_at_most_two_decimals(raw: object, cents: int) -> None:
    assert Points.exact(raw).cents == cents  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "raw",
    [
        "0.001",
        "729.975",
        "1.005",
        "0.009",
        Decimal("0.125"),
        "-1",
        "-0.01",
        Decimal("-5"),
        -3,
        "NaN",
        "sNaN",
        "Infinity",
        "-Infinity",
        Decimal("NaN"),
        Decimal("Infinity"),
        "1e30",
        "1e999999",
        "10000000000000.01",  # one kopeck over the ceiling
        "1e999999999",
        "1e-999999999",
        "0." + "0" * 5000 + "1",  # a kopeck's fraction 5,000 places down
        "1." + "0" * 5000 + "1",
        "9" * 5000,
        "",
        "abc",
        "1,5",
        "0x10",
        True,
        False,
        1.5,
        None,
        [1],
    ],
)
def test_exact_refuses(raw: object) -> None:
    with pytest.raises(InvalidAmount):
        Points.exact(raw)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=MAX_AMOUNT_CENTS), st.integers(0, 2))
def test_exact_accepts_every_amount_with_at_most_two_places(cents: int, places: int) -> None:
    # cents / 100 written with exactly `places` decimals when that is lossless
    scale = 2 - places
    if cents % 10**scale:
        cents -= cents % 10**scale
    amount = make_decimal(cents // 10**scale, places)
    assert Points.exact(amount).cents == cents
    assert Points.exact(str(amount)).cents == cents


@given(st.integers(min_value=0, max_value=10**18), st.integers(3, 9))
def test_exact_refuses_a_third_decimal(n: int, scale: int) -> None:
    amount = make_decimal(n, scale)
    if n % 10 ** (scale - 2) == 0 and n // 10 ** (scale - 2) <= MAX_AMOUNT_CENTS:
        # trailing zeros only: really two decimals
        assert Points.exact(amount).cents == n // 10 ** (scale - 2)
    else:  # a third decimal, or over the ceiling
        with pytest.raises(InvalidAmount):
            Points.exact(amount)


@pytest.mark.parametrize(
    "raw", ["1.00000000000000000000000000001", "0.0100000000000000000000000000001"]
)
def test_exact_refuses_extra_decimals_beyond_context_precision(raw: str) -> None:
    with pytest.raises(InvalidAmount):
        Points.exact(raw)


def test_points_constructor_refuses_bool_negative_and_huge() -> None:
    for bad in (True, False, -1):
        with pytest.raises(InvalidAmount):
            Points(bad)
    with pytest.raises(InvalidAmount):
        Points(1.0)  # type: ignore[arg-type]
    with pytest.raises(BalanceOverflow):
        Points(MAX_CENTS + 1)
    assert Points(MAX_CENTS).cents == MAX_CENTS == 2**63 - 1  # what a BIGINT holds


# --- Points.rounded --------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "cents"),
    [
        ("729.975", 72998),
        ("0.005", 1),
        ("0.004", 0),
        ("0.0049999999", 0),
        ("0.015", 2),
        ("0.025", 3),  # half *up*, not banker's rounding to even (which would give 2)
        ("2.675", 268),
        ("500", 50000),
        ("500.5", 50050),
        (Decimal("1.994999"), 199),
        (Decimal("1.995"), 200),
        (0, 0),
    ],
)
def test_rounded_half_up_examples(raw: object, cents: int) -> None:
    assert Points.rounded(raw).cents == cents  # type: ignore[arg-type]


@given(decimals)
def test_rounded_matches_integer_reference(value: Decimal) -> None:
    expected = reference_cents_half_up(value)
    if expected > MAX_AMOUNT_CENTS:
        with pytest.raises(InvalidAmount):
            Points.rounded(value)
    else:
        assert Points.rounded(value).cents == expected
        assert Points.rounded(str(value)).cents == expected


@given(decimals)
def test_rounded_is_within_half_a_kopeck(value: Decimal) -> None:
    if value > Decimal(MAX_AMOUNT_CENTS) / 100:
        return
    cents = Points.rounded(value).cents
    assert abs(Decimal(cents) - value * 100) <= Decimal("0.5")


@pytest.mark.parametrize("raw", ["-0.01", "-729.975", "NaN", "Infinity", "1e999999", True, 1.5])
def test_rounded_refuses(raw: object) -> None:
    with pytest.raises(InvalidAmount):
        Points.rounded(raw)  # type: ignore[arg-type]


# --- rendering -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cents", "text"),
    [
        (50050, "500.5"),
        (4200, "42"),
        (0, "0"),
        (1, "0.01"),
        (10, "0.1"),
        (100000, "1000"),
        (72998, "729.98"),
        (MAX_AMOUNT_CENTS, "10000000000000"),
        (MAX_CENTS, "92233720368547758.07"),
    ],
)
def test_as_decimal_exact_without_trailing_zeros(cents: int, text: str) -> None:
    rendered = Points(cents).as_decimal()
    assert rendered == Decimal(text)
    assert str(rendered) == text
    assert str(Points(cents)) == text


@given(points)
def test_as_decimal_properties(p: Points) -> None:
    rendered = p.as_decimal()
    text = str(rendered)
    whole, frac = divmod(p.cents, 100)
    assert rendered * 100 == p.cents
    assert "E" not in text.upper()
    if frac == 0:
        assert text == str(whole)
    else:
        assert "." in text and not text.endswith("0")
        assert len(text.split(".")[1]) <= 2


@given(amounts)
def test_round_trip_through_decimal_and_text(p: Points) -> None:
    assert Points.exact(p.as_decimal()) == p
    assert Points.exact(str(p)) == p
    assert Points.rounded(p.as_decimal()) == p


# --- arithmetic ------------------------------------------------------------------


@given(points, points)
def test_subtraction_never_negative(a: Points, b: Points) -> None:
    if a.cents >= b.cents:
        assert (a - b).cents == a.cents - b.cents
    else:
        with pytest.raises(InvalidAmount):
            a - b


@given(points, points)
def test_addition_and_ordering(a: Points, b: Points) -> None:
    if a.cents + b.cents <= MAX_CENTS:
        assert (a + b).cents == a.cents + b.cents
        assert (a + b) - b == a
    else:
        with pytest.raises(BalanceOverflow):
            a + b
    assert (a < b) == (a.cents < b.cents)
    assert (a == b) == (a.cents == b.cents)


def test_is_zero() -> None:
    assert Points(0).is_zero
    assert not Points(1).is_zero


def test_sums_may_pass_the_single_amount_ceiling_up_to_the_column() -> None:
    """Issue 9, finding 7: after one accrual of 10^13 points every later credit raised."""
    ceiling = Points(MAX_AMOUNT_CENTS)
    assert (ceiling + Points(1)).cents == MAX_AMOUNT_CENTS + 1
    assert (ceiling + ceiling + ceiling).cents == 3 * MAX_AMOUNT_CENTS
    assert (Points(MAX_CENTS - 5) + Points(5)).cents == MAX_CENTS
    with pytest.raises(BalanceOverflow, match="ledger"):
        Points(MAX_CENTS - 5) + Points(6)
    # a single amount from outside is still capped
    with pytest.raises(InvalidAmount):
        Points.exact(str(ceiling + Points(1)))
