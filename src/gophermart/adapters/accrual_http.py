"""The accrual system over HTTP (httpx): every outcome becomes an explicit answer.

Amounts are parsed exactly: the JSON body is decoded with a non-integer ``accrual`` as a
``Decimal`` read from the number's own digits, then rounded half up to kopecks. Only a
JSON number is an accrual: the string ``"100"`` is not.

A poll is bounded in time and in size, whatever the server does: the whole exchange
(connection, request, status line, headers and body) must finish within ``deadline``
seconds (httpx's own timeouts are per read, so a server dripping one byte every few
seconds would never trip them), and the body is streamed and abandoned past
``max_body`` bytes (an answer is about a hundred bytes of JSON).
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import time
from decimal import Decimal
from typing import Any, Final

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
#: The whole of one poll, body included (docs/failure-behaviour.md says why 5 s).
DEFAULT_DEADLINE: Final = 5.0
#: The largest answer read: a real one is ~100 bytes; a 429's text is one sentence.
MAX_BODY: Final = 64 * 1024

BAD: Final = "bad_answer"  # Unavailable.kind of an answer we cannot use
_RATE_RE: Final = re.compile(r"\b([0-9]{1,9})\s+requests?\s+per\s+minute", re.IGNORECASE)


class _Body(msgspec.Struct):
    order: str
    status: str
    # Any, read with float_hook=Decimal: a JSON integer arrives as int, a JSON number
    # with a fraction or exponent as an exact Decimal, anything else (a string, a
    # boolean, an object) as itself - and is then refused, not coerced.
    accrual: Any = None


_decode = msgspec.json.Decoder(_Body, float_hook=Decimal).decode
_VERDICTS: Final = {
    "REGISTERED": AccrualVerdict.REGISTERED,
    "PROCESSING": AccrualVerdict.PROCESSING,
    "INVALID": AccrualVerdict.INVALID,
    "PROCESSED": AccrualVerdict.PROCESSED,
}


class _TooLarge(Exception):
    pass


class HttpAccrualClient:
    """One pooled ``httpx.AsyncClient`` for the whole process."""

    def __init__(
        self,
        base_url: str,
        timeout: float = DEFAULT_DEADLINE,
        max_connections: int = 32,
        transport: httpx.AsyncBaseTransport | None = None,
        max_body: int = MAX_BODY,
    ) -> None:
        #: ``timeout`` is the total deadline of one poll; httpx's per-phase timeouts
        #: stay as well (connect within 3 s), each within it.
        self._deadline = timeout
        self._max_body = max_body
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            transport=transport,
            # identity: an answer of a hundred bytes gains nothing from compression, and
            # a compressed body could inflate far past max_body in one chunk.
            headers={"Accept": "application/json", "Accept-Encoding": "identity"},
        )

    async def fetch(self, number: OrderNumber) -> AccrualAnswer:
        try:
            async with asyncio.timeout(self._deadline):
                async with self._client.stream("GET", f"/api/orders/{number.value}") as response:
                    body = await self._read(response)
        except TimeoutError:
            return Unavailable(f"no complete answer within {self._deadline:g}s", "timeout")
        except _TooLarge:
            return Unavailable(f"answer too large (over {self._max_body} bytes)", BAD)
        except httpx.TimeoutException as exc:
            unreachable = isinstance(exc, httpx.ConnectTimeout)
            return Unavailable(f"{type(exc).__name__}: {exc}", "timeout", unreachable)
        except httpx.HTTPError as exc:
            # ConnectError: refused, unreachable, or a name that does not resolve.
            unreachable = isinstance(exc, httpx.ConnectError)
            return Unavailable(f"{type(exc).__name__}: {exc}", "network", unreachable)
        return interpret(number, response.status_code, response.headers, body)

    async def _read(self, response: httpx.Response) -> bytes:
        """The body, streamed: at most ``max_body`` bytes are ever held.

        Only a 200's body must be whole (it is the answer); of any other status the
        first ``max_body`` bytes are enough (a 429's sentence), and the rest is dropped
        with the connection.
        """
        must_be_whole = response.status_code == 200
        declared = response.headers.get("Content-Length", "")
        if (
            must_be_whole
            and declared.isascii()
            and declared.isdigit()
            and (len(declared) > 12 or int(declared) > self._max_body)
        ):
            raise _TooLarge  # said so up front: not a byte of it is read
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > self._max_body:
                if must_be_whole:
                    raise _TooLarge
                del body[self._max_body :]
                break
        return bytes(body)

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
    raw = parsed.accrual
    if verdict is AccrualVerdict.PROCESSED and raw is not None:
        # A string, a boolean, a list... is not an accrual, whatever it spells: the
        # protocol says a number, and guessing would credit what nobody promised.
        if isinstance(raw, bool) or not isinstance(raw, int | Decimal):
            return Unavailable(f"accrual is not a JSON number: {_excerpt(raw)}", BAD)
        try:
            accrual = Points.rounded(raw)
        except InvalidAmount as exc:
            # A negative or absurd accrual is the accrual system's bug; keep asking
            # rather than crediting nonsense or marking the order final.
            return Unavailable(f"unusable accrual {_excerpt(raw)}: {exc}", BAD)
    return AccrualReply(verdict, accrual)


def _excerpt(value: object, limit: int = 40) -> str:
    """A value for a log line, cut short: a hostile answer must not flood the log."""
    text = repr(value) if not isinstance(value, int | Decimal) else str(value)
    return text if len(text) <= limit else text[:limit] + "..."


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
