"""The server's ASGI wrapper (entrypoints/observe.py) driven in process: the request id it
takes or makes, and the ``/metrics`` it answers."""

from __future__ import annotations

import io
import logging
import re
from typing import Any

import pytest

from gophermart.entrypoints.logs import REQUEST_ID, configure_logging, flush_access_lines
from gophermart.entrypoints.observe import Observed

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLWhlcmU"


@pytest.fixture
def logged(captured: io.StringIO) -> io.StringIO:
    configure_logging("INFO", "text")
    logging.getLogger().handlers[0].setStream(captured)  # type: ignore[attr-defined]
    return captured


class Inner:
    """The app behind the wrapper: answers 401 and logs a line with the request id."""

    def __init__(self) -> None:
        self.seen: list[str | None] = []

    async def __call__(self, _scope: Any, _receive: Any, send: Any) -> None:
        self.seen.append(REQUEST_ID.get())
        logging.getLogger("gophermart.http").warning("something to say")
        await send({"type": "http.response.start", "status": 401, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


async def call(
    app: Any, path: str = "/api/user/balance", method: str = "GET", headers: Any = ()
) -> list[dict[str, Any]]:
    """Drive ``app`` once; the messages it sent."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": list(headers)}
    await app(scope, receive, send)
    return sent


def echoed(sent: list[dict[str, Any]]) -> str:
    return dict(sent[0]["headers"])[b"x-request-id"].decode()


@pytest.mark.parametrize(
    "credential", [JWT, f"Bearer:{JWT}", "bearer=0123456789abcdef", "BEARER.abc", f"id-{JWT}"]
)
async def test_a_request_id_shaped_like_a_credential_is_replaced(
    logged: io.StringIO, credential: str
) -> None:
    """Before: a token sent as ``X-Request-ID`` was taken as the id and written as is
    into every line of the request (the access line's fast path included)."""
    inner = Inner()
    app = Observed(inner, access_log_enabled=True)
    sent = await call(app, headers=[(b"x-request-id", credential.encode())])
    flush_access_lines()
    assert re.fullmatch(r"[0-9a-f]{16}", echoed(sent)), echoed(sent)
    assert inner.seen == [echoed(sent)]
    out = logged.getvalue()
    assert f"request_id={echoed(sent)}" in out and "path=/api/user/balance" in out
    assert credential not in out and JWT not in out


async def test_a_sane_request_id_is_still_taken(logged: io.StringIO) -> None:
    inner = Inner()
    sent = await call(
        Observed(inner, access_log_enabled=True), headers=[(b"x-request-id", b"edge-42.a:b")]
    )
    flush_access_lines()
    assert echoed(sent) == "edge-42.a:b" == inner.seen[0]
    assert "request_id=edge-42.a:b" in logged.getvalue()


# --- /metrics ----------------------------------------------------------------------


class Scrapes:
    """A scrape that counts its calls and answers a fixed body."""

    def __init__(self, body: bytes = b"# metrics\ngophermart_up 1\n") -> None:
        self.body = body
        self.calls = 0

    async def __call__(self) -> bytes:
        self.calls += 1
        return self.body


def content_length(sent: list[dict[str, Any]]) -> int:
    return int(dict(sent[0]["headers"])[b"content-length"])


async def test_head_metrics_says_the_length_of_the_get() -> None:
    """Before: ``HEAD /metrics`` said ``Content-Length: 0``."""
    scrapes = Scrapes()
    app = Observed(Inner(), scrape=scrapes)
    got = await call(app, "/metrics")
    head = await call(app, "/metrics", method="HEAD")
    assert got[0]["status"] == head[0]["status"] == 200
    assert content_length(head) == content_length(got) == len(scrapes.body)
    assert got[1]["body"] == scrapes.body and head[1]["body"] == b""


def server_scope(port: int, path: str, method: str = "GET") -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [],
        "server": ("127.0.0.1", port),
    }


async def _send_scope(app: Any, scope: dict[str, Any]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def test_with_a_metrics_address_metrics_leave_the_api_address() -> None:
    """``GOPHERMART_METRICS_ADDRESS``: the scrape is answered on that listener only; the
    API's ``/metrics`` is the app's (a 404 there), and the metrics listener answers
    nothing else (404, the API's JSON error)."""
    scrapes, inner = Scrapes(), Inner()
    app = Observed(inner, scrape=scrapes, metrics_port=9100)
    on_metrics = await _send_scope(app, server_scope(9100, "/metrics"))
    assert on_metrics[0]["status"] == 200 and on_metrics[1]["body"] == scrapes.body
    head = await _send_scope(app, server_scope(9100, "/metrics", "HEAD"))
    assert content_length(head) == len(scrapes.body)
    elsewhere = await _send_scope(app, server_scope(9100, "/api/user/balance"))
    assert elsewhere[0]["status"] == 404
    assert elsewhere[1]["body"] == b'{"error":"Not Found"}'
    assert inner.seen == []  # the API never saw them
    on_api = await _send_scope(app, server_scope(8080, "/metrics"))
    assert on_api[0]["status"] == 401 and len(inner.seen) == 1  # the app answered
    assert scrapes.calls == 2
