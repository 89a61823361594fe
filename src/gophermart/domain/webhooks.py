"""Webhooks: where events are pushed, which ones, how each POST is signed, and when a
failed one is tried again (SPEC "The ledger a shop runs on", bullet **Events**).

Pure rules, no I/O: the delivery worker (``application/webhook_delivery.py``) and the
operator routes apply them.

* An endpoint's **URL** is an absolute ``http`` or ``https`` URL with a host, at most
  :data:`MAX_URL_LENGTH` characters, with no credentials (they would be shown in every
  listing) and no fragment (never sent).
* Its **event filter** is a list of patterns: a known type (``ledger.accrual``,
  ``order.processed``), a family (``ledger.*``, ``order.*``) or everything (``*``).
  An unknown type is refused rather than kept: a typo would silently deliver nothing.
* A POST is **signed** like Stripe's: ``Gophermart-Signature: t=<unix>,v1=<hex
  HMAC-SHA256(secret, "<t>.<body>")>``. The timestamp inside the signed text lets a
  receiver refuse a replay of an old request (docs/operations.md shows the check).
* A failed attempt is tried again after an exponential delay with **full jitter**
  (a random wait between 0 and the ceiling), for ``retry_for`` from the event's first
  attempt; then the delivery is ``failed``, kept and replayable.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import random
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final
from urllib.parse import urlsplit

from gophermart.domain.errors import DomainError, InvalidInput
from gophermart.domain.events import EVENT_TYPES

MAX_URL_LENGTH: Final = 2048
MAX_FILTERS: Final = 64
#: The families a filter may name as ``<family>.*``.
FAMILIES: Final = frozenset(t.partition(".")[0] for t in EVENT_TYPES)
#: The headers of a delivery.
SIGNATURE_HEADER: Final = "Gophermart-Signature"
EVENT_ID_HEADER: Final = "Gophermart-Event-Id"


class InvalidWebhook(DomainError):
    """A URL or an event filter the service will not deliver to. HTTP ``422``."""


class UnknownWebhook(DomainError):
    """No webhook endpoint has this id (deleted ones are still known). HTTP ``404``."""

    def __init__(self, endpoint_id: int) -> None:
        super().__init__(f"no webhook endpoint {endpoint_id}")
        self.endpoint_id = endpoint_id


class UnknownEvent(DomainError):
    """No delivery of this event id to any live endpoint. HTTP ``404``."""

    def __init__(self, event_id: int) -> None:
        super().__init__(f"event {event_id} was never delivered to a live endpoint")
        self.event_id = event_id


#: Endpoint and event ids are BIGINT keys: 1 to 2^63 - 1.
MAX_ID: Final = 2**63 - 1


def valid_id(value: object, unknown: Callable[[int], DomainError], what: str) -> int:
    """An id as a host hands it in: a whole number (``int``, not ``bool``, not text);
    another type is :class:`InvalidInput`, a number no row can have is ``unknown(value)``
    (as for one that does not exist)."""
    if type(value) is not int:
        raise InvalidInput(f"{what} is a whole number, not {type(value).__name__}")
    if not 1 <= value <= MAX_ID:
        raise unknown(value)
    return value


def webhook_url(raw: object) -> str:
    """``raw`` as an endpoint's URL, or :class:`InvalidWebhook` saying why not."""
    if not isinstance(raw, str):
        raise InvalidWebhook(f"url is text, not {type(raw).__name__}")
    if len(raw) > MAX_URL_LENGTH:
        raise InvalidWebhook(f"url is at most {MAX_URL_LENGTH} characters")
    if not raw.isascii() or not raw.isprintable() or " " in raw:
        raise InvalidWebhook("url must be printable ASCII without spaces (percent-encode the rest)")
    try:
        parts = urlsplit(raw)
        port = parts.port  # parsing it refuses a port that is not a number
    except ValueError as exc:
        raise InvalidWebhook(f"url is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidWebhook("url must be http:// or https://")
    if not parts.hostname:
        raise InvalidWebhook("url must name a host")
    if parts.username is not None or parts.password is not None:
        raise InvalidWebhook("url must not carry credentials (they would show in listings)")
    if parts.fragment or raw.endswith("#"):
        raise InvalidWebhook("url must not have a fragment (it is never sent)")
    if port == 0:
        raise InvalidWebhook("url's port must be 1-65535")
    return raw


def event_filter(raw: object) -> tuple[str, ...]:
    """``raw`` as an endpoint's event filter (patterns, in order, without repeats)."""
    if not isinstance(raw, list | tuple) or not raw:
        raise InvalidWebhook("events is a non-empty list of event types or patterns")
    if len(raw) > MAX_FILTERS:
        raise InvalidWebhook(f"events has at most {MAX_FILTERS} patterns")
    patterns: list[str] = []
    for item in raw:
        if not isinstance(item, str):
            raise InvalidWebhook(f"an event pattern is text, not {type(item).__name__}")
        family, dot, rest = item.partition(".")
        known = item == "*" or item in EVENT_TYPES or (rest == "*" and dot and family in FAMILIES)
        if not known:
            raise InvalidWebhook(
                f"unknown event type {item[:80]!r}: one of {', '.join(sorted(EVENT_TYPES))}, "
                f"a family ({', '.join(f + '.*' for f in sorted(FAMILIES))}) or *"
            )
        if item not in patterns:
            patterns.append(item)
    return tuple(patterns)


def matches(patterns: Iterable[str], event_type: str) -> bool:
    """Whether an event of ``event_type`` is delivered under ``patterns``."""
    family = event_type.partition(".")[0]
    return any(p == "*" or p == event_type or p == family + ".*" for p in patterns)


def new_secret() -> str:
    """A signing secret: 32 random bytes, shown once to the operator who registers."""
    return "whsec_" + secrets.token_urlsafe(32)


def signature(secret: str, body: bytes, at: int) -> str:
    """The ``Gophermart-Signature`` value for ``body`` sent at unix time ``at``."""
    return Signer(secret)(body, at)


class Signer:
    """:func:`signature` for one secret, called per POST: the HMAC's keyed state (the
    key's two padded blocks hashed) is computed once and copied for each body."""

    __slots__ = ("_keyed",)

    def __init__(self, secret: str) -> None:
        self._keyed = hmac.new(secret.encode(), digestmod=hashlib.sha256)

    def __call__(self, body: bytes, at: int) -> str:
        mac = self._keyed.copy()
        mac.update(b"%d." % at)
        mac.update(body)
        return f"t={at},v1={mac.hexdigest()}"


def verify(secret: str, body: bytes, header: str, now: int, tolerance: int = 300) -> bool:
    """What a receiver does (docs/operations.md): the header's ``v1`` is the HMAC of
    ``"<t>.<body>"`` and ``t`` is within ``tolerance`` seconds of ``now``."""
    fields = dict(part.partition("=")[::2] for part in header.split(","))
    try:
        at = int(fields.get("t", ""))
    except ValueError:
        return False
    if abs(now - at) > tolerance:
        return False
    expected = signature(secret, body, at).partition(",v1=")[2]
    return hmac.compare_digest(expected, fields.get("v1", ""))


class DeliveryState(enum.StrEnum):
    PENDING = "pending"  # to be sent (now, or after its backoff)
    DELIVERED = "delivered"  # a 2xx came back
    FAILED = "failed"  # retried for the whole window; kept, replayable


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """When to try a failed delivery again, how long one POST may take, and how long a
    claimed delivery stays hidden from other workers (the lease, also what a crash costs).
    """

    retry_for: timedelta = timedelta(hours=24)
    base: float = 1.0
    cap: float = 600.0
    deadline: float = 10.0
    #: What the lease adds to the deadline: the claim's and the outcome's transactions.
    lease_margin: float = 5.0

    def __post_init__(self) -> None:
        if not (0 < self.base <= self.cap and self.deadline > 0 and self.lease_margin > 0):
            raise ValueError("a delivery policy needs 0 < base <= cap and positive deadlines")

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.deadline + self.lease_margin)

    def delay(self, attempts: int, rnd: Callable[[], float] = random.random) -> float:
        """Seconds until the next try after ``attempts`` failed ones: full jitter under
        ``min(cap, base * 2 ** (attempts - 1))``. The exponent is capped: 2.0 ** 1024
        overflows."""
        ceiling = min(self.cap, self.base * 2.0 ** min(max(0, attempts - 1), 64))
        return ceiling * rnd()

    def next_try(
        self,
        first_at: datetime,
        now: datetime,
        attempts: int,
        rnd: Callable[[], float] = random.random,
    ) -> datetime | None:
        """When to try again, or ``None``: the window from ``first_at`` is spent."""
        at = now + timedelta(seconds=self.delay(attempts, rnd))
        return at if at < first_at + self.retry_for else None


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one POST came to: ``status`` (``None`` without an answer) and, when it was
    not delivered, why (``timeout``, ``network``, ``http_503`` ...: also the metric's label).
    """

    status: int | None
    error: str | None = None
    outcome: str = "2xx"

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300
