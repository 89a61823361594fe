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

# The ``Meta`` annotations document the fields for the OpenAPI schema and change nothing
# on the wire: no constraint is declared to msgspec (the domain checks the values and words
# the errors). Litestar's schema generator renders every struct as a named component
# (``#/components/schemas/<class name>``: the class names are the names clients generated
# from the document get) and reads ``description``, ``examples`` and ``extra`` (OpenAPI
# ``Schema`` attributes, snake_case) from ``extra_json_schema``.


def _doc(description: str, *examples: object, **schema: object) -> msgspec.Meta:
    documented: dict[str, object] = {"description": description, "extra": schema}
    if examples:
        documented["examples"] = list(examples)
    return msgspec.Meta(extra_json_schema=documented)


class Credentials(msgspec.Struct):
    """A login and a password: the body of register and of log in."""

    login: Annotated[
        str, _doc("1-64 characters, case-sensitive", "alice", min_length=1, max_length=64)
    ]
    password: Annotated[
        str, _doc("1-256 characters", "correct horse", min_length=1, max_length=256)
    ]


class WithdrawalRequest(msgspec.Struct):
    """Points to spend on a new order."""

    order: Annotated[str, _doc("a new order number: digits passing the Luhn check", "2377225624")]
    # Raw: the number's own text, so 0.1 is 0.1 and a string "751" is refused as a type error.
    sum: Annotated[
        msgspec.Raw,
        _doc(
            "points to spend: a JSON number, positive, at most two decimals",
            751,
            type="number",
            exclusive_minimum=0,
        ),
    ]


ORDER_STATUSES = ("NEW", "PROCESSING", "INVALID", "PROCESSED")


class Order(msgspec.Struct, omit_defaults=True):
    """An uploaded order number and what it earned."""

    number: Annotated[str, _doc("the order number", pattern="^[0-9]+$")]
    status: Annotated[str, _doc("where the order is", enum=list(ORDER_STATUSES))]
    uploaded_at: Annotated[datetime, _doc("when it was uploaded (RFC 3339)")]
    accrual: Annotated[
        Decimal | None,
        _doc("points credited; present only when points were awarded", type="number", one_of=None),
    ] = None


class Balance(msgspec.Struct):
    """Points available now, and the total ever spent."""

    current: Annotated[Decimal, _doc("points available now", type="number")]
    withdrawn: Annotated[Decimal, _doc("points ever spent", type="number")]


class Withdrawal(msgspec.Struct):
    """Points spent on an order."""

    order: Annotated[str, _doc("the order the points paid for")]
    sum: Annotated[Decimal, _doc("points spent", type="number")]
    processed_at: Annotated[datetime, _doc("when (RFC 3339)")]


class Error(msgspec.Struct):
    """Every error's body."""

    error: Annotated[str, _doc("what went wrong, for a human")]


class Health(msgspec.Struct):
    """The process serves."""

    status: Annotated[str, _doc("always `ok`", enum=["ok"])]


class Readiness(msgspec.Struct):
    """Ready to serve: the database answers and its schema is current."""

    status: Annotated[str, _doc("always `ready`", enum=["ready"])]
    checks: Annotated[dict[str, str], _doc("each check and what it found (`ok`)")]


class NotReady(msgspec.Struct):
    """Not ready, and why."""

    error: Annotated[str, _doc("the checks that failed, for a human")]
    checks: Annotated[dict[str, str], _doc("each check and what it found (`ok` or what failed)")]


encoder = msgspec.json.Encoder(decimal_format="number")
_credentials = msgspec.json.Decoder(Credentials)
_withdraw = msgspec.json.Decoder(WithdrawalRequest)


def decode_credentials(body: bytes) -> Credentials:
    return _decode(_credentials, body)


def decode_withdraw(body: bytes) -> WithdrawalRequest:
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
