"""Order numbers: ASCII digits that pass the Luhn check, kept as text.

Proves, against an independent Luhn implementation (``luhn_reference``), that
``OrderNumber.parse`` accepts exactly the Luhn-valid ASCII digit strings (up to the
64-digit bound), that every single-digit change of a valid number is refused, that
non-ASCII digits and other characters are refused with ``InvalidOrderNumber``, and that
surrounding whitespace is tolerated while leading zeros are kept.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gophermart.domain.errors import InvalidOrderNumber
from gophermart.domain.orders import MAX_ORDER_NUMBER_LENGTH, OrderNumber, luhn_valid
from tests.luhn_reference import check_digit, luhn_ok, valid_numbers, with_check_digit

digit_strings = st.text(alphabet="0123456789", min_size=1, max_size=MAX_ORDER_NUMBER_LENGTH)


def test_reference_luhn_agrees_with_known_numbers() -> None:
    # numbers from the contract and the textbook example; the reference must know them
    for good in ("9278923470", "12345678903", "346436439", "2377225624", "79927398713", "0"):
        assert luhn_ok(good), good
    for bad in ("79927398710", "12345678900", "1", "10"):
        assert not luhn_ok(bad), bad


@pytest.mark.parametrize(
    "raw", ["9278923470", "12345678903", "346436439", "2377225624", "79927398713", "0", "00"]
)
def test_known_valid_numbers_parse(raw: str) -> None:
    assert OrderNumber.parse(raw).value == raw
    assert str(OrderNumber.parse(raw)) == raw


@given(digit_strings)
def test_parse_accepts_exactly_the_luhn_valid_digit_strings(raw: str) -> None:
    if luhn_ok(raw):
        assert OrderNumber.parse(raw).value == raw
    else:
        with pytest.raises(InvalidOrderNumber):
            OrderNumber.parse(raw)


@given(valid_numbers)
def test_generated_valid_numbers_always_parse(raw: str) -> None:
    number = OrderNumber.parse(raw)
    assert number.value == raw  # text, so leading zeros survive
    assert number == OrderNumber.parse(raw)
    assert luhn_valid(raw)


@given(valid_numbers, st.data())
def test_changing_any_single_digit_breaks_the_check(raw: str, data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(raw) - 1), label="position")
    replacement = data.draw(
        st.sampled_from([d for d in "0123456789" if d != raw[position]]), label="digit"
    )
    changed = raw[:position] + replacement + raw[position + 1 :]
    assert not luhn_ok(changed)  # Luhn catches every single-digit error
    with pytest.raises(InvalidOrderNumber):
        OrderNumber.parse(changed)


@given(st.text(alphabet="0123456789", min_size=0, max_size=20))
def test_exactly_one_check_digit_completes_a_payload(payload: str) -> None:
    accepted = []
    for digit in "0123456789":
        try:
            OrderNumber.parse(payload + digit)
        except InvalidOrderNumber:
            continue
        accepted.append(digit)
    assert accepted == [check_digit(payload)]


@given(valid_numbers, st.sampled_from([" ", "\n", "\r\n", "\t", "  \n"]), st.booleans())
def test_surrounding_whitespace_is_tolerated(raw: str, pad: str, both: bool) -> None:
    padded = pad + raw + pad if both else raw + pad
    assert OrderNumber.parse(padded).value == raw


@pytest.mark.parametrize("raw", ["", " ", "\n", "\t\r\n "])
def test_empty_is_refused(raw: str) -> None:
    with pytest.raises(InvalidOrderNumber):
        OrderNumber.parse(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "١٢٣",  # Arabic-Indic digits: str.isdigit() is True for them
        "１２３４５６７８９０３",  # fullwidth digits
        "१२३",  # Devanagari
        "²",  # superscript two: isdigit() but not a decimal digit
        "12345678903\u00a0x",
        "1234 5678 903",
        "12345-678903",
        "+12345678903",
        "-0",
        "1.0",
        "0x1f",
        "12345678903a",
        "a12345678903",
    ],
)
def test_non_ascii_digits_and_other_characters_are_refused(raw: str) -> None:
    with pytest.raises(InvalidOrderNumber):
        OrderNumber.parse(raw)


@given(valid_numbers, st.data())
def test_valid_number_with_one_foreign_character_is_refused(raw: str, data: st.DataObject) -> None:
    foreign = data.draw(
        st.characters(exclude_characters="0123456789").filter(lambda c: not c.isspace()),
        label="foreign",
    )
    position = data.draw(st.integers(0, len(raw)), label="position")
    with pytest.raises(InvalidOrderNumber):
        OrderNumber.parse(raw[:position] + foreign + raw[position:])


def test_unicode_digit_lookalikes_of_a_valid_number_are_refused() -> None:
    valid = "12345678903"
    fullwidth = "".join(chr(ord(c) - ord("0") + 0xFF10) for c in valid)
    arabic = "".join(chr(ord(c) - ord("0") + 0x0660) for c in valid)
    for lookalike in (fullwidth, arabic):
        assert lookalike.isdigit()  # the trap: str.isdigit() alone would accept them
        with pytest.raises(InvalidOrderNumber):
            OrderNumber.parse(lookalike)


def test_length_bound() -> None:
    longest = with_check_digit("1" * (MAX_ORDER_NUMBER_LENGTH - 1))
    assert OrderNumber.parse(longest).value == longest
    too_long = with_check_digit("1" * MAX_ORDER_NUMBER_LENGTH)
    assert luhn_ok(too_long)
    with pytest.raises(InvalidOrderNumber):
        OrderNumber.parse(too_long)
    with pytest.raises(InvalidOrderNumber):
        OrderNumber.parse("1" * 1_000_000)
