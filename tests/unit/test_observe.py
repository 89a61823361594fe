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
