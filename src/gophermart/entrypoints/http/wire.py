"""The wire format: msgspec structs for bodies, and one JSON encoder.

Points are rendered from exact decimals as JSON numbers (``500.5``, ``42``), never
through a float; request amounts are read from the number's own text.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, TypeVar

import msgspec

from gophermart.domain.errors import InvalidAmount, InvalidInput
from gophermart.domain.points import Points

_T = TypeVar("_T")

# The ``Meta`` annotations document the fields for the OpenAPI schema (entrypoints/http/
# openapi.py) and change nothing on the wire: no constraint is declared to msgspec (the
# domain checks the values and words the errors), ``extra_json_schema`` only describes.
# Request structs are rendered by msgspec's JSON Schema, response structs by Litestar's
# schema generator (which reads ``description``/``examples``/``extra`` from there).


def _doc(description: str, **schema: object) -> msgspec.Meta:
    return msgspec.Meta(description=description, extra_json_schema=schema)


def _out(description: str, **schema: object) -> msgspec.Meta:
    return msgspec.Meta(extra_json_schema={"description": description, "extra": schema})


class Credentials(msgspec.Struct):
    login: Annotated[
        str, _doc("1-64 characters, case-sensitive", minLength=1, maxLength=64, examples=["alice"])
    ]
    password: Annotated[
        str, _doc("1-256 characters", minLength=1, maxLength=256, examples=["correct horse"])
    ]


class WithdrawRequest(msgspec.Struct):
    order: Annotated[
        str, _doc("a new order number: digits passing the Luhn check", examples=["2377225624"])
    ]
    # Raw: the number's own text, so 0.1 is 0.1 and a string "751" is refused as a type error.
    sum: Annotated[
        msgspec.Raw,
        _doc(
            "points to spend: a JSON number, positive, at most two decimals",
            type="number",
            exclusiveMinimum=0,
            examples=[751],
        ),
    ]


ORDER_STATUSES = ("NEW", "PROCESSING", "INVALID", "PROCESSED")


class OrderOut(msgspec.Struct, omit_defaults=True):
    number: Annotated[str, _out("the order number", pattern="^[0-9]+$")]
    status: Annotated[str, _out("where the order is", enum=list(ORDER_STATUSES))]
    uploaded_at: Annotated[datetime, _out("when it was uploaded (RFC 3339)")]
    accrual: Annotated[
        Decimal | None,
        _out("points credited; present only when points were awarded", type="number", one_of=None),
    ] = None


class BalanceOut(msgspec.Struct):
    current: Annotated[Decimal, _out("points available now", type="number")]
    withdrawn: Annotated[Decimal, _out("points ever spent", type="number")]


class WithdrawalOut(msgspec.Struct):
    order: Annotated[str, _out("the order the points paid for")]
    sum: Annotated[Decimal, _out("points spent", type="number")]
    processed_at: Annotated[datetime, _out("when (RFC 3339)")]


class ErrorOut(msgspec.Struct):
    error: Annotated[str, _out("what went wrong, for a human")]


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
