"""Reading the accrual system's HTTP answers: pure functions, every outcome explicit.

Proves that ``interpret`` maps 204 to UNKNOWN, 200 bodies to verdicts with accruals
parsed exactly from the JSON number's digits and rounded half up (729.975 -> 72998
kopecks), 429 to ``RateLimited`` with Retry-After and the announced rate, and anything
else (5xx, garbled JSON, a body about another order, an unknown status, a negative
accrual) to ``Unavailable`` - never to a final status. Also proves ``parse_retry_after``
(seconds, HTTP-date, garbage -> 60, past dates -> 0, capped) and ``parse_rate``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gophermart.adapters.accrual_http import (
    DEFAULT_RETRY_AFTER,
    MAX_BODY,
    MAX_RETRY_AFTER,
    HttpAccrualClient,
    interpret,
    parse_rate,
    parse_retry_after,
)
from gophermart.application.ports import AccrualReply, RateLimited, Unavailable
from gophermart.domain.orders import AccrualVerdict, OrderNumber
from gophermart.domain.points import Points

NUMBER = OrderNumber.parse("12345678903")
NO_HEADERS = httpx.Headers()


def body(**fields: object) -> bytes:
    return json.dumps({"order": NUMBER.value, **fields}).encode()


def ok(raw: bytes) -> object:
    return interpret(NUMBER, 200, NO_HEADERS, raw)


# --- 200 -------------------------------------------------------------------------


def test_processed_accrual_parsed_exactly_and_rounded_half_up() -> None:
    raw = b'{"order": "12345678903", "status": "PROCESSED", "accrual": 729.975}'
    assert ok(raw) == AccrualReply(AccrualVerdict.PROCESSED, Points(72998))


@pytest.mark.parametrize(
    ("number_text", "cents"),
    [
        ("500", 50000),
        ("500.5", 50050),
        ("0.1", 10),
        ("0.29", 29),  # 0.29 is not exact as a binary float: 0.29 * 100 = 28.999...
        ("1.005", 101),  # as a float 1.005 is 1.00499999..., half-up on digits gives 101
        ("0.004", 0),
        ("1e2", 10000),
        ("12345678901.125", 1234567890113),
    ],
)
def test_accrual_read_from_the_numbers_digits(number_text: str, cents: int) -> None:
    raw = ('{"order":"12345678903","status":"PROCESSED","accrual":' + number_text + "}").encode()
    assert ok(raw) == AccrualReply(AccrualVerdict.PROCESSED, Points(cents))


@given(st.integers(0, 10**12), st.integers(0, 6))
def test_accrual_half_up_property(n: int, scale: int) -> None:
    text = str(n) if scale == 0 else f"{n // 10**scale}.{n % 10**scale:0{scale}d}"
    raw = ('{"order":"12345678903","status":"PROCESSED","accrual":' + text + "}").encode()
    shift = scale - 2
    expected = n * 10 ** (-shift) if shift <= 0 else (n + 5 * 10 ** (shift - 1)) // 10**shift
    assert ok(raw) == AccrualReply(AccrualVerdict.PROCESSED, Points(expected))


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        ("REGISTERED", AccrualVerdict.REGISTERED),
        ("PROCESSING", AccrualVerdict.PROCESSING),
        ("INVALID", AccrualVerdict.INVALID),
        ("PROCESSED", AccrualVerdict.PROCESSED),
    ],
)
def test_statuses(status: str, verdict: AccrualVerdict) -> None:
    assert ok(body(status=status)) == AccrualReply(verdict, None)


@pytest.mark.parametrize("status", ["REGISTERED", "PROCESSING", "INVALID"])
def test_accrual_ignored_unless_processed(status: str) -> None:
    reply = ok(body(status=status, accrual=100))
    assert isinstance(reply, AccrualReply) and reply.accrual is None


def test_processed_with_null_accrual() -> None:
    assert ok(body(status="PROCESSED", accrual=None)) == AccrualReply(AccrualVerdict.PROCESSED)


def test_unknown_fields_are_ignored() -> None:
    raw = body(status="PROCESSED", accrual=1, extra="ignored")
    assert ok(raw) == AccrualReply(AccrualVerdict.PROCESSED, Points(100))


@pytest.mark.parametrize(
    "raw",
    [
        b'{"order": "79927398713", "status": "PROCESSED", "accrual": 500}',  # another order
        b'{"order": "012345678903", "status": "PROCESSED", "accrual": 500}',
        body(status="DONE", accrual=500),  # unknown status
        body(status="processed", accrual=500),
        body(status="UNKNOWN"),
        body(status="PROCESSED", accrual=-5),  # negative: their bug, keep asking
        body(status="PROCESSED", accrual="lots"),
        body(status="PROCESSED", accrual="100"),  # a string, not a number: never credited
        body(status="PROCESSED", accrual="1e2"),
        body(status="PROCESSED", accrual=True),
        body(status="PROCESSED", accrual=[100]),
        body(status="PROCESSED", accrual={"value": 100}),
        b'{"order": "12345678903", "status": "PROCESSED", "accrual": -0.01}',
        b'{"order": "12345678903", "status": "PROCESSED", "accrual": 1' + b"0" * 30 + b"}",
        b'{"order": "12345678903", "status": "PROCESSED", "accrual": 1e40}',
        b'{"status": "PROCESSED", "accrual": 500}',  # no order
        b'{"order": 12345678903, "status": "PROCESSED"}',  # order as a number
        b"",
        b"not json",
        b"[]",
        b"<html>oops</html>",
    ],
)
def test_garbled_or_foreign_answers_are_unavailable(raw: bytes) -> None:
    answer = ok(raw)
    assert isinstance(answer, Unavailable)
    assert answer.kind == "bad_answer"  # counted apart from outages (metrics)


# --- other status codes ----------------------------------------------------------


def test_204_is_unknown() -> None:
    assert interpret(NUMBER, 204, NO_HEADERS, b"") == AccrualReply(AccrualVerdict.UNKNOWN)


@pytest.mark.parametrize("code", [500, 502, 503, 504, 400, 404, 301, 201, 202])
def test_other_codes_are_unavailable(code: int) -> None:
    answer = interpret(NUMBER, code, NO_HEADERS, body(status="PROCESSED", accrual=500))
    assert isinstance(answer, Unavailable)
    assert str(code) in answer.reason
    assert answer.kind == ("5xx" if code >= 500 else "http_other")


def test_429_reads_retry_after_and_rate() -> None:
    answer = interpret(
        NUMBER,
        429,
        httpx.Headers({"Retry-After": "5"}),
        b"No more than 10 requests per minute allowed",
    )
    assert answer == RateLimited(retry_after=5.0, per_minute=10)


def test_429_without_header_or_rate() -> None:
    assert interpret(NUMBER, 429, NO_HEADERS, b"slow down") == RateLimited(
        retry_after=DEFAULT_RETRY_AFTER, per_minute=None
    )


# --- parse_retry_after -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0", 0.0),
        ("5", 5.0),
        (" 120 ", 120.0),
        ("3600", 3600.0),
        ("86400", MAX_RETRY_AFTER),  # capped
        ("9" * 400, MAX_RETRY_AFTER),
        (None, DEFAULT_RETRY_AFTER),
        ("", DEFAULT_RETRY_AFTER),
        ("soon", DEFAULT_RETRY_AFTER),
        ("5.5", DEFAULT_RETRY_AFTER),  # not delta-seconds
        ("-5", DEFAULT_RETRY_AFTER),  # not delta-seconds either: treated as garbage
        ("Mon, 99 Foo 2020", DEFAULT_RETRY_AFTER),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float) -> None:
    assert parse_retry_after(value) == seconds


def test_retry_after_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(later, now=now.timestamp()) == pytest.approx(90.0)


def test_retry_after_date_in_the_past_is_zero() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    earlier = format_datetime(now - timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(earlier, now=now.timestamp()) == 0.0


def test_retry_after_far_future_date_is_capped() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    far = format_datetime(now + timedelta(days=30), usegmt=True)
    assert parse_retry_after(far, now=now.timestamp()) == MAX_RETRY_AFTER


@given(st.text(max_size=40))
def test_retry_after_is_always_a_bounded_number(value: str) -> None:
    seconds = parse_retry_after(value)
    assert 0.0 <= seconds <= MAX_RETRY_AFTER


def test_retry_after_superscript_digit_is_garbage() -> None:
    headers = httpx.Headers([(b"Retry-After", b"\xb2")])
    assert headers.get("Retry-After") == "\u00b2"
    assert parse_retry_after(headers.get("Retry-After")) == DEFAULT_RETRY_AFTER


# --- parse_rate ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "rate"),
    [
        (b"No more than 10 requests per minute allowed", 10),
        (b"No more than 1 request per minute allowed", 1),
        (b"no more than 600 REQUESTS PER MINUTE allowed\n", 600),
        (b"No more than 0 requests per minute allowed", None),
        (b"", None),
        (b"Too Many Requests", None),
        (b"No more than ten requests per minute allowed", None),
        (b"\xff\xfe garbage", None),
    ],
)
def test_parse_rate(raw: bytes, rate: int | None) -> None:
    assert parse_rate(raw) == rate


def test_parse_rate_with_absurd_number() -> None:
    rate = parse_rate(b"No more than " + b"9" * 5000 + b" requests per minute allowed")
    assert rate is None or rate > 0


# --- through the client, with a mock transport -----------------------------------


async def test_client_uses_interpret_and_maps_network_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == f"/api/orders/{NUMBER.value}"
        return httpx.Response(200, content=body(status="PROCESSED", accrual=729.975))

    client = HttpAccrualClient("http://accrual.test/", transport=httpx.MockTransport(handler))
    try:
        assert await client.fetch(NUMBER) == AccrualReply(AccrualVerdict.PROCESSED, Points(72998))
    finally:
        await client.aclose()

    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = HttpAccrualClient("http://accrual.test", transport=httpx.MockTransport(broken))
    try:
        assert isinstance(await client.fetch(NUMBER), Unavailable)
    finally:
        await client.aclose()


def test_a_numeric_string_is_not_an_accrual_and_the_reason_says_so() -> None:
    answer = ok(body(status="PROCESSED", accrual="100"))
    assert isinstance(answer, Unavailable)
    assert "not a JSON number" in answer.reason


def test_a_hostile_accrual_is_cut_short_in_the_reason() -> None:
    answer = ok(body(status="PROCESSED", accrual="9" * 10_000))
    assert isinstance(answer, Unavailable) and len(answer.reason) < 200


async def _drip(chunks: int, every: float) -> AsyncIterator[bytes]:
    for _ in range(chunks):
        await asyncio.sleep(every)
        yield b" "


async def test_a_dripping_answer_runs_into_the_total_deadline() -> None:
    """Finding 1: httpx's timeout is per read, so one byte every so often never trips
    it. The deadline is for the whole poll."""

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=_drip(1000, 0.02))  # 20 s, a byte every 20 ms

    client = HttpAccrualClient(
        "http://accrual.test", timeout=0.3, transport=httpx.MockTransport(handler)
    )
    try:
        started = time.monotonic()
        answer = await client.fetch(NUMBER)
        assert time.monotonic() - started < 2.0
    finally:
        await client.aclose()
    assert isinstance(answer, Unavailable) and "within 0.3s" in answer.reason


async def _endless(chunk: bytes, sent: list[int]) -> AsyncIterator[bytes]:
    while True:
        sent[0] += len(chunk)
        yield chunk
        await asyncio.sleep(0)


async def test_a_huge_answer_is_cut_at_the_cap_not_read() -> None:
    sent = [0]

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=_endless(b"x" * 16384, sent))

    client = HttpAccrualClient("http://accrual.test", transport=httpx.MockTransport(handler))
    try:
        answer = await client.fetch(NUMBER)
    finally:
        await client.aclose()
    assert isinstance(answer, Unavailable) and "too large" in answer.reason
    assert sent[0] <= MAX_BODY + 2 * 16384  # stopped reading right past the cap


async def test_an_announced_huge_answer_is_refused_unread() -> None:
    sent = [0]

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            headers={"Content-Length": str(200 * 2**20)},
            content=_endless(b"x" * 16384, sent),
        )

    client = HttpAccrualClient("http://accrual.test", transport=httpx.MockTransport(handler))
    try:
        answer = await client.fetch(NUMBER)
    finally:
        await client.aclose()
    assert isinstance(answer, Unavailable) and "too large" in answer.reason
    assert sent[0] <= 16384


async def test_a_long_429_body_still_pauses() -> None:
    """Only a 200 must be whole: a 429's first bytes carry the rate."""
    text = b"No more than 7 requests per minute allowed" + b" " * (2 * MAX_BODY)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "2"}, content=text)

    client = HttpAccrualClient("http://accrual.test", transport=httpx.MockTransport(handler))
    try:
        assert await client.fetch(NUMBER) == RateLimited(retry_after=2.0, per_minute=7)
    finally:
        await client.aclose()


async def test_the_client_asks_for_an_uncompressed_answer() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Accept-Encoding"))
        return httpx.Response(204)

    client = HttpAccrualClient("http://accrual.test", transport=httpx.MockTransport(handler))
    try:
        await client.fetch(NUMBER)
    finally:
        await client.aclose()
    assert seen == ["identity"]


@pytest.mark.parametrize(
    ("error", "kind", "unreachable"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), "network", True),
        (httpx.ConnectError("[Errno -2] Name or service not known"), "network", True),
        (httpx.ConnectTimeout("timed out"), "timeout", True),
        (httpx.ReadTimeout("timed out"), "timeout", False),  # reached, then slow
        (httpx.ReadError("reset"), "network", False),
        (httpx.RemoteProtocolError("garbage"), "network", False),
    ],
)
async def test_failures_to_reach_the_system_are_told_apart(
    error: httpx.HTTPError, kind: str, unreachable: bool
) -> None:
    """Not reaching the accrual system at all (refused, DNS, connect timeout) is an
    outage of the whole system, logged once (accrual_sync); the rest is one answer's."""

    def failing(request: httpx.Request) -> httpx.Response:
        error.request = request
        raise error

    client = HttpAccrualClient("http://accrual.test", transport=httpx.MockTransport(failing))
    try:
        answer = await client.fetch(NUMBER)
    finally:
        await client.aclose()
    assert isinstance(answer, Unavailable)
    assert (answer.kind, answer.unreachable) == (kind, unreachable)
