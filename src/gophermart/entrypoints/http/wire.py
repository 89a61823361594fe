"""The wire format: msgspec structs for bodies, and one JSON encoder.

Points are rendered from exact decimals as JSON numbers (``500.5``, ``42``), never
through a float; request amounts are read from the number's own text.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation

import msgspec

from gophermart.domain.errors import InvalidAmount, InvalidInput
from gophermart.domain.points import Points


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
decode_credentials = msgspec.json.Decoder(Credentials).decode
decode_withdraw = msgspec.json.Decoder(WithdrawRequest).decode


def parse_sum(raw: msgspec.Raw) -> Points:
    """A JSON number, exact, positive, at most two decimals."""
    text = bytes(raw).strip()
    if not text or text[:1] not in b"-0123456789":
        raise InvalidInput("sum must be a JSON number")
    try:
        value = Decimal(text.decode("ascii"))
    except (InvalidOperation, UnicodeDecodeError):
        raise InvalidInput("sum must be a JSON number") from None
    if value <= 0:
        raise InvalidAmount("sum must be positive")
    return Points.exact(value)
