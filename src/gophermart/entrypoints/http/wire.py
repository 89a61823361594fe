"""The wire format: msgspec structs for bodies, and one JSON encoder.

Points are rendered from exact decimals as JSON numbers (``500.5``, ``42``), never
through a float; request amounts are read from the number's own text.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import TypeVar

import msgspec

from gophermart.domain.errors import InvalidAmount, InvalidInput
from gophermart.domain.points import Points

_T = TypeVar("_T")


class Credentials(msgspec.Struct):
    login: str
    password: str


class WithdrawRequest(msgspec.Struct):
    order: str
    # Raw: the number's own text, so 0.1 is 0.1 and a string "751" is refused as a type error.
    sum: msgspec.Raw


class OrderOut(msgspec.Struct, omit_defaults=True):
    number: str
    status: str
    uploaded_at: datetime
    accrual: Decimal | None = None


class BalanceOut(msgspec.Struct):
    current: Decimal
    withdrawn: Decimal


class WithdrawalOut(msgspec.Struct):
    order: str
    sum: Decimal
    processed_at: datetime


class ErrorOut(msgspec.Struct):
    error: str


encoder = msgspec.json.Encoder(decimal_format="number")
_credentials = msgspec.json.Decoder(Credentials)
_withdraw = msgspec.json.Decoder(WithdrawRequest)


def decode_credentials(body: bytes) -> Credentials:
    return _decode(_credentials, body)


def decode_withdraw(body: bytes) -> WithdrawRequest:
    return _decode(_withdraw, body)


def _decode(decoder: msgspec.json.Decoder[_T], body: bytes) -> _T:
    """A body, or :class:`InvalidInput` (400) for anything that is not one.

    Extra fields are skipped but still parsed, and msgspec gives up on deep nesting
    (2,000 ``[`` in an ignored field) with a RecursionError: malformed too.
    """
    try:
        return decoder.decode(body)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError too
        raise InvalidInput(f"malformed body: {exc}") from None
    except RecursionError:
        raise InvalidInput("malformed body: nested too deeply") from None


def parse_sum(raw: msgspec.Raw) -> Points:
    """A JSON number, exact, positive, at most two decimals.

    Every JSON number gets an exact answer: ``1.`` and 5,000 zeros is 1 point; one
    whose exponent is beyond even Decimal's range (``1e99999999999999999999``) is
    refused as an amount (422), like any other absurd amount, never as malformed.
    """
    text = bytes(raw).strip()
    if not text or text[:1] not in b"-0123456789":
        raise InvalidInput("sum must be a JSON number")
    try:
        value = Decimal(text.decode("ascii"))
    except (InvalidOperation, UnicodeDecodeError):
        # msgspec checked the JSON, so this is a number: one with an absurd exponent.
        raise InvalidAmount("sum is out of range") from None
    if value <= 0:
        raise InvalidAmount("sum must be positive")
    return Points.exact(value)
