"""The accrual system over HTTP (httpx): every outcome becomes an explicit answer.

Amounts are parsed exactly: the JSON body is decoded with ``accrual`` as a
``Decimal`` read from the number's own digits, then rounded half up to kopecks.
"""

from __future__ import annotations

import email.utils
import re
import time
from decimal import Decimal
from typing import Final

import httpx
import msgspec

from gophermart.application.ports import AccrualAnswer, AccrualReply, RateLimited, Unavailable
from gophermart.domain.errors import InvalidAmount
from gophermart.domain.orders import AccrualVerdict, OrderNumber
from gophermart.domain.points import Points

#: When a 429 carries no usable Retry-After, pause this long: the limits are per minute.
DEFAULT_RETRY_AFTER: Final = 60.0
#: And never longer than this, whatever a confused server says.
MAX_RETRY_AFTER: Final = 3600.0

BAD: Final = "bad_answer"  # Unavailable.kind of an answer we cannot use
_RATE_RE: Final = re.compile(r"\b([0-9]{1,9})\s+requests?\s+per\s+minute", re.IGNORECASE)


class _Body(msgspec.Struct):
    order: str
    status: str
    accrual: Decimal | None = None


_decode = msgspec.json.Decoder(_Body).decode
_VERDICTS: Final = {
    "REGISTERED": AccrualVerdict.REGISTERED,
    "PROCESSING": AccrualVerdict.PROCESSING,
    "INVALID": AccrualVerdict.INVALID,
    "PROCESSED": AccrualVerdict.PROCESSED,
}


class HttpAccrualClient:
    """One pooled ``httpx.AsyncClient`` for the whole process."""

    def __init__(
        self,
        base_url: str,
        timeout: float = 5.0,
        max_connections: int = 32,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            transport=transport,
            headers={"Accept": "application/json"},
        )

    async def fetch(self, number: OrderNumber) -> AccrualAnswer:
        try:
            response = await self._client.get(f"/api/orders/{number.value}")
        except httpx.TimeoutException as exc:
            return Unavailable(f"{type(exc).__name__}: {exc}", "timeout")
        except httpx.HTTPError as exc:
            return Unavailable(f"{type(exc).__name__}: {exc}", "network")
        return interpret(number, response.status_code, response.headers, response.content)

    async def aclose(self) -> None:
        await self._client.aclose()


def interpret(
    number: OrderNumber, status: int, headers: httpx.Headers, body: bytes
) -> AccrualAnswer:
    """Map one HTTP answer to what it means for the order. Pure, so it is tested alone."""
    if status == 204:
        return AccrualReply(AccrualVerdict.UNKNOWN)
    if status == 429:
        return RateLimited(
            retry_after=parse_retry_after(headers.get("Retry-After")),
            per_minute=parse_rate(body),
        )
    if status != 200:
        return Unavailable(f"HTTP {status}", "5xx" if status >= 500 else "http_other")
    try:
        parsed = _decode(body)
    except msgspec.DecodeError as exc:
        return Unavailable(f"unreadable answer: {exc}", BAD)
    verdict = _VERDICTS.get(parsed.status)
    if verdict is None:
        return Unavailable(f"unknown status {parsed.status!r}", BAD)
    if parsed.order != number.value:
        return Unavailable(f"answer names order {parsed.order!r}, not {number.value}", BAD)
    accrual = None
    if verdict is AccrualVerdict.PROCESSED and parsed.accrual is not None:
        try:
            accrual = Points.rounded(parsed.accrual)
        except InvalidAmount as exc:
            # A negative or absurd accrual is the accrual system's bug; keep asking
            # rather than crediting nonsense or marking the order final.
            return Unavailable(f"unusable accrual {parsed.accrual}: {exc}", BAD)
    return AccrualReply(verdict, accrual)


def parse_retry_after(value: str | None, now: float | None = None) -> float:
    """Seconds to wait: delta-seconds or an HTTP date; a safe default otherwise."""
    if value is None:
        return DEFAULT_RETRY_AFTER
    value = value.strip()
    seconds: float | None = None
    if value.isascii() and value.isdigit():  # ASCII: '²'.isdigit() is true too
        seconds = float(value) if len(value) <= 9 else MAX_RETRY_AFTER
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
            seconds = when.timestamp() - (now if now is not None else time.time())
        except (TypeError, ValueError, IndexError):
            seconds = None
    if seconds is None:
        return DEFAULT_RETRY_AFTER
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def parse_rate(body: bytes) -> int | None:
    """N from ``No more than N requests per minute allowed``; ``None`` if absent."""
    match = _RATE_RE.search(body.decode("utf-8", "replace"))
    if match is None:
        return None
    rate = int(match.group(1))
    return rate if rate > 0 else None
