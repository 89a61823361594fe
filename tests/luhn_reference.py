"""An independent Luhn implementation for the tests (not the one in ``src``).

Formulation: from the rightmost digit, every second digit is doubled and the *digits*
of the product are summed (``divmod(2 * d, 10)``); the number is valid when the total
is a multiple of ten. Valid numbers are built by computing the check digit.
"""

from __future__ import annotations

from hypothesis import strategies as st


def luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        d = "0123456789".index(char)
        if index % 2 == 1:
            tens, ones = divmod(2 * d, 10)
            d = tens + ones
        total += d
    return total % 10 == 0


def check_digit(payload: str) -> str:
    """The digit that makes ``payload + digit`` Luhn-valid (found by trying all ten)."""
    matches = [c for c in "0123456789" if luhn_ok(payload + c)]
    assert len(matches) == 1, (payload, matches)
    return matches[0]


def with_check_digit(payload: str) -> str:
    return payload + check_digit(payload)


#: Luhn-valid numbers of 1..64 ASCII digits (64 is the service's length bound).
valid_numbers = st.text(alphabet="0123456789", min_size=0, max_size=63).map(with_check_digit)
