"""The balance's body, written by hand for speed (wire.balance_json), is byte for byte
what the Balance struct's encoding would be, for every amount."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gophermart.domain.points import Points
from gophermart.entrypoints.http.wire import Balance, balance_json, encoder

CENTS = st.one_of(
    st.integers(min_value=0, max_value=2_000),
    st.integers(min_value=0, max_value=2**63 - 1),
    st.sampled_from([0, 1, 5, 10, 50, 99, 100, 101, 110, 50_050, 10**15, 2**63 - 1]),
)


@given(CENTS, CENTS, CENTS, CENTS)
def test_balance_json_is_the_structs_encoding(a: int, b: int, c: int, d: int) -> None:
    figures = [Points(a), Points(b), Points(c), Points(d)]
    expected = encoder.encode(Balance(*(p.as_decimal() for p in figures)))
    assert balance_json(*figures) == expected
