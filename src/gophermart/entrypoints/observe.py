"""The server's eyes: one plain ASGI wrapper around the app that, per request, sets the
request id (``X-Request-ID``: the client's if it is sane and not shaped like a
credential, a new one otherwise; echoed in the answer and carried by every log line of
the request), records the HTTP metrics, writes the access log line (at INFO with
GOPHERMART_ACCESS_LOG=1, else at DEBUG: it measured up to ~10 % of a hot read's server
CPU), and answers ``GET /metrics`` (on every listener, or only on the metrics address's).

One wrapper rather than framework middleware or plugins: it runs once per request with
no per-request objects beyond a closure, which is what keeps its cost on the hot reads
to a few per cent (docs/operations.md has the bench pairs). It sits outside Litestar, so
it also sees the answers Litestar gives before any route (404, 405), labelled with the
route template Litestar matched (``unmatched`` for none), never the raw path.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from litestar.types import ASGIApp, Message, Receive, Send

from gophermart.entrypoints.logs import (
    REQUEST_ID,
    access_line,
    access_logger,
    looks_like_credential,
)
from gophermart.entrypoints.metrics import CONTENT_TYPE, Metrics

_SANE_ID: Final = re.compile(rb"[A-Za-z0-9._~:@+=/-]{1,128}")
_HEADER: Final = b"x-request-id"
_LOGIN: Final = "/api/user/login"


def new_request_id() -> str:
    """64 random bits in hex: unique enough to find one request's lines, and cheap."""
    return f"{random.getrandbits(64):016x}"


class Observed:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics | None = None,
        scrape: Callable[[], Awaitable[bytes]] | None = None,
        access_log_enabled: bool = False,
        metrics_port: int | None = None,
    ) -> None:
        """``scrape`` answers ``/metrics``: on every listener, or with ``metrics_port``
        (``GOPHERMART_METRICS_ADDRESS``'s) only on that one, which answers nothing else."""
        self.app = app
        self._metrics = metrics
        self._scrape = scrape
        self._access = access_log_enabled
        self._metrics_port = metrics_port if scrape is not None else None
        self._metrics_here = scrape is not None and metrics_port is None

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._metrics_port is not None:
            if scope["server"][1] == self._metrics_port:  # the metrics listener
                await self._serve_metrics(scope, send)
                return
        elif self._metrics_here and scope["path"] == "/metrics":
            await self._serve_metrics(scope, send)
            return
        raw_id = None
        for name, value in scope["headers"]:
            if name == _HEADER:
                raw_id = value
                break
        # A token sent as the id (by mistake or to plant it) would be written into every
        # line of the request: such an id is replaced like an insane one.
        if raw_id is not None and _SANE_ID.fullmatch(raw_id) and not looks_like_credential(raw_id):
            request_id = raw_id.decode("ascii")
        else:
            raw_id = None
            request_id = new_request_id()
        echoed = (_HEADER, raw_id or request_id.encode("ascii"))
        status = 500  # if the app fails before answering, the server answers 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), echoed]
            await send(message)

        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route: str = scope.get("path_template") or "unmatched"
            method = scope["method"]
            if self._metrics is not None:
                self._metrics.observe_request(route, method, status, elapsed)
                if status == 429 and route == _LOGIN:
                    self._metrics.login_throttled.inc()
            if self._access:
                access_line(method, route, scope["path"], status, elapsed * 1000)
            elif access_logger.isEnabledFor(logging.DEBUG):  # off: DEBUG level only
                access_line(method, route, scope["path"], status, elapsed * 1000, logging.DEBUG)
            REQUEST_ID.reset(token)

    async def _serve_metrics(self, scope: Any, send: Send) -> None:
        assert self._scrape is not None
        if scope["path"] != "/metrics":  # on the metrics listener: nothing else there
            await _answer(send, 404, _NOT_FOUND, _JSON, head=scope["method"] == "HEAD")
            return
        if scope["method"] not in ("GET", "HEAD"):
            await _answer(send, 405, b"method not allowed\n", b"text/plain; charset=utf-8")
            return
        body = await self._scrape()
        await _answer(send, 200, body, CONTENT_TYPE.encode(), head=scope["method"] == "HEAD")


_NOT_FOUND: Final = b'{"error":"Not Found"}'  # the API's own 404 body
_JSON: Final = b"application/json"


async def _answer(
    send: Send, status: int, body: bytes, content_type: bytes, *, head: bool = False
) -> None:
    """The answer; for ``HEAD`` its headers, ``Content-Length`` included, without it."""
    headers: Any = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body, "more_body": False})
