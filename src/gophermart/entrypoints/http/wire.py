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
    """Points available now, the total ever spent, what open holds keep, and what is
    owed (reversed points already spent, paid off first from later credits)."""

    current: Annotated[Decimal, _doc("points that can be spent or held now", type="number")]
    withdrawn: Annotated[Decimal, _doc("points spent (less refunds)", type="number")]
    held: Annotated[Decimal, _doc("points reserved by open holds", type="number")]
    owed: Annotated[Decimal, _doc("points owed after a reversal", type="number")]


class Withdrawal(msgspec.Struct):
    """Points spent on an order."""

    order: Annotated[str, _doc("the order the points paid for")]
    sum: Annotated[Decimal, _doc("points spent", type="number")]
    processed_at: Annotated[datetime, _doc("when (RFC 3339)")]


ENTRY_KINDS = (
    "accrual",
    "withdrawal",
    "accrual_reversal",
    "withdrawal_refund",
    "adjustment",
    "hold",
    "hold_release",
)


class Entry(msgspec.Struct, omit_defaults=True):
    """One ledger entry, as its owner sees it."""

    id: Annotated[str, _doc("opaque; a page's `before`", "1042")]
    kind: Annotated[str, _doc("what moved the points", enum=list(ENTRY_KINDS))]
    amount: Annotated[Decimal, _doc("signed: + a credit, - a debit", -20, type="number")]
    balance_after: Annotated[Decimal, _doc("`current` once this entry was written", type="number")]
    created_at: Annotated[datetime, _doc("when (RFC 3339)")]
    order: Annotated[str | None, _doc("the order it concerns, if any", one_of=None)] = None
    reason: Annotated[str | None, _doc("why, when one was given", one_of=None)] = None
    owed: Annotated[
        Decimal | None,
        _doc("what it added to (+) or paid off (-) the owed points", type="number", one_of=None),
    ] = None


class Movement(msgspec.Struct, omit_defaults=True):
    """What an operator's correction wrote: the entry as the history shows it (its
    ``id`` is in the history), and who made it."""

    kind: Annotated[str, _doc("what moved the points", enum=list(ENTRY_KINDS))]
    amount: Annotated[Decimal, _doc("signed: + a credit, - a debit", type="number")]
    balance_after: Annotated[Decimal, _doc("`current` once it was written", type="number")]
    created_at: Annotated[datetime, _doc("when (RFC 3339)")]
    operator: Annotated[str | None, _doc("the operator key's name", one_of=None)] = None
    order: Annotated[str | None, _doc("the order it concerns, if any", one_of=None)] = None
    reason: Annotated[str | None, _doc("why", one_of=None)] = None
    owed: Annotated[
        Decimal | None,
        _doc("what it added to (+) or paid off (-) the owed points", type="number", one_of=None),
    ] = None


class AdjustmentRequest(msgspec.Struct):
    """An operator's correction of a balance."""

    amount: Annotated[
        msgspec.Raw,
        _doc("signed points: + gives, - takes; at most two decimals", -5, type="number"),
    ]
    reason: Annotated[str, _doc("why (recorded on the entry)", "goodwill", max_length=500)]


class CorrectionRequest(msgspec.Struct):
    """A reversal or a refund: how much (all that is left without ``sum``) and why."""

    reason: Annotated[str | None, _doc("why (recorded on the entry)", max_length=500)] = None
    # Raw (the number's own text); absent is an empty Raw: a Raw has no place in a union.
    sum: Annotated[
        msgspec.Raw,
        _doc("points: positive, at most two decimals; all that is left without it", type="number"),
    ] = msgspec.field(default_factory=lambda: msgspec.Raw(b""))

    def amount(self) -> Points | None:
        """The sum asked for; ``None`` for all that is left (no ``sum``, or null)."""
        return None if bytes(self.sum).strip() in (b"", b"null") else parse_sum(self.sum)


class HoldRequest(msgspec.Struct):
    """Points to reserve for an order being paid."""

    order: Annotated[str, _doc("the order being paid: digits passing the Luhn check", "2377225624")]
    sum: Annotated[
        msgspec.Raw,
        _doc("points to reserve: positive, at most two decimals", 100.5, type="number"),
    ]
    ttl: Annotated[
        int, _doc("seconds until it expires unless captured", 900, minimum=1, maximum=86400)
    ] = 900


class HoldBody(msgspec.Struct):
    """A hold: points reserved for an order until captured, released or expired."""

    id: Annotated[str, _doc("the hold's id (capture and release name it)", "17")]
    order: Annotated[str, _doc("the order being paid")]
    sum: Annotated[Decimal, _doc("points reserved", type="number")]
    expires_at: Annotated[datetime, _doc("when it is released unless captured (RFC 3339)")]
    state: Annotated[str, _doc("where it is", enum=["open", "captured", "released", "expired"])]


class AdminUser(msgspec.Struct):
    """A user's account, as an operator sees it."""

    id: Annotated[int, _doc("the user's id (the library's verbs take it as user_id)")]
    login: Annotated[str, _doc("the login, as registered")]
    current: Annotated[Decimal, _doc("points available now", type="number")]
    withdrawn: Annotated[Decimal, _doc("points ever spent", type="number")]
    held: Annotated[Decimal, _doc("points reserved by open holds", type="number")]
    owed: Annotated[
        Decimal,
        _doc("points taken back by reversals that the balance could not cover", type="number"),
    ]
    holds: Annotated[list[HoldBody], _doc("the open holds, oldest first")]


class AdminOrder(msgspec.Struct):
    """An order, as an operator sees it: its status and where it stands in the accrual
    system's queue."""

    number: Annotated[str, _doc("the order number", pattern="^[0-9]+$")]
    login: Annotated[str, _doc("who uploaded it")]
    status: Annotated[str, _doc("where the order is", enum=list(ORDER_STATUSES))]
    accrual: Annotated[
        Decimal | None,
        _doc("points credited; null when none were", type=["number", "null"], one_of=None),
    ]
    reversed: Annotated[
        Decimal, _doc("points of the accrual taken back by reversals", type="number")
    ]
    attempts: Annotated[int, _doc("polls of the accrual system so far")]
    next_attempt_at: Annotated[
        datetime | None,
        _doc(
            "when it is next polled (or, while a worker polls it, its lease ends); null once final"
        ),
    ]
    parked: Annotated[
        str | None,
        _doc(
            "why the worker parked it (its credit cannot be applied; asked again hourly), or null"
        ),
    ]


class WebhookRequest(msgspec.Struct):
    """An endpoint to register: where to POST, and which events."""

    url: Annotated[
        str, _doc("http:// or https://, at most 2048 characters", "https://shop.example/hooks")
    ]
    events: Annotated[
        list[str],
        _doc(
            "event types (`ledger.accrual`), families (`ledger.*`, `order.*`) or `*`",
            ["ledger.*", "order.processed"],
        ),
    ]


class Webhook(msgspec.Struct):
    """A registered endpoint (never its secret)."""

    id: Annotated[int, _doc("the endpoint's id")]
    url: Annotated[str, _doc("where events are POSTed")]
    events: Annotated[list[str], _doc("the event filter")]
    created_at: Annotated[datetime, _doc("when it was registered")]
    deleted_at: Annotated[datetime | None, _doc("when it was deleted; null while live")] = None


class NewWebhookBody(msgspec.Struct):
    """A registered endpoint and its signing secret, shown this once."""

    id: Annotated[int, _doc("the endpoint's id")]
    url: Annotated[str, _doc("where events are POSTed")]
    events: Annotated[list[str], _doc("the event filter")]
    created_at: Annotated[datetime, _doc("when it was registered")]
    secret: Annotated[
        str,
        _doc(
            "the HMAC-SHA256 key of Gophermart-Signature; shown only now, keep it",
            "whsec_0123456789abcdef",
        ),
    ]


class Delivery(msgspec.Struct):
    """One event's delivery to one endpoint."""

    event_id: Annotated[int, _doc("the event's id (Gophermart-Event-Id)")]
    event_type: Annotated[str, _doc("the event's type", "ledger.accrual")]
    user_id: Annotated[int, _doc("whose event it is")]
    state: Annotated[str, _doc("where it is", enum=["pending", "delivered", "failed"])]
    attempts: Annotated[int, _doc("POSTs so far")]
    created_at: Annotated[datetime, _doc("when it was queued for the endpoint")]
    last_attempt_at: Annotated[datetime | None, _doc("the last POST's time, or null")]
    last_status: Annotated[int | None, _doc("the last answer's HTTP status, or null")]
    last_error: Annotated[str | None, _doc("why the last POST was not a delivery, or null")]
    next_attempt_at: Annotated[
        datetime | None,
        _doc("when it is tried next (or a worker's lease ends); null unless pending"),
    ]
    delivered_at: Annotated[datetime | None, _doc("when a 2xx came back, or null")]


class Redelivered(msgspec.Struct):
    """An event queued again."""

    event_id: Annotated[int, _doc("the event's id")]
    pending: Annotated[int, _doc("its deliveries now pending (one per live endpoint that had it)")]


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


def _number(cents: int) -> str:
    """A non-negative amount as a JSON number, exactly as ``encoder`` writes
    ``Points.as_decimal()`` (500.5, 42, 0.05), without making a Decimal."""
    whole, fraction = divmod(cents, 100)
    if not fraction:
        return str(whole)
    return f"{whole}.{fraction:02d}".rstrip("0")


def balance_json(current: Points, withdrawn: Points, held: Points, owed: Points) -> bytes:
    """The :class:`Balance` body, written directly: the hottest read's answer, ~4 us
    cheaper than building four Decimals and encoding the struct (measured in process;
    tests/unit check it against the struct's encoding)."""
    return b'{"current":%b,"withdrawn":%b,"held":%b,"owed":%b}' % (
        _number(current.cents).encode(),
        _number(withdrawn.cents).encode(),
        _number(held.cents).encode(),
        _number(owed.cents).encode(),
    )


_credentials = msgspec.json.Decoder(Credentials)
_withdraw = msgspec.json.Decoder(WithdrawalRequest)


def decode_credentials(body: bytes) -> Credentials:
    return _decode(_credentials, body)


def decode_withdraw(body: bytes) -> WithdrawalRequest:
    return _decode(_withdraw, body)


_hold = msgspec.json.Decoder(HoldRequest)
_adjustment = msgspec.json.Decoder(AdjustmentRequest)
_correction = msgspec.json.Decoder(CorrectionRequest)
_webhook = msgspec.json.Decoder(WebhookRequest)


def decode_hold(body: bytes) -> HoldRequest:
    return _decode(_hold, body)


def decode_adjustment(body: bytes) -> AdjustmentRequest:
    return _decode(_adjustment, body)


def decode_correction(body: bytes) -> CorrectionRequest:
    """An empty body is a correction of all that is left, without a reason."""
    return _decode(_correction, body) if body.strip() else CorrectionRequest()


def decode_webhook(body: bytes) -> WebhookRequest:
    return _decode(_webhook, body)


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


def parse_signed(raw: msgspec.Raw) -> Decimal:
    """A JSON number, exact, either sign (an adjustment): the sign and the hundredths are
    the domain's to check."""
    text = bytes(raw).strip()
    if not text or text[:1] not in b"-0123456789":
        raise InvalidInput("amount must be a JSON number")
    try:
        return Decimal(text.decode("ascii"))
    except (InvalidOperation, UnicodeDecodeError):
        raise InvalidAmount("amount is out of range") from None


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
