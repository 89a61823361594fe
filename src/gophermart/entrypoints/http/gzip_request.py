"""Accept request bodies sent with ``Content-Encoding: gzip`` (a pure ASGI middleware).

Decompression is bounded: a small gzip bomb must not become gigabytes in memory.
"""

from __future__ import annotations

import zlib
from typing import Any, Final

from litestar.types import ASGIApp, Receive, Scope, Send

MAX_INFLATED: Final = 1 << 20  # 1 MiB: far more than any request of this API


class GzipRequestMiddleware:
    def __init__(self, app: ASGIApp, max_inflated: int = MAX_INFLATED) -> None:
        self.app = app
        self.max_inflated = max_inflated

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # type: ignore[comparison-overlap]
            await self.app(scope, receive, send)
            return
        encoding = None
        for name, value in scope["headers"]:
            if name == b"content-encoding":
                encoding = value.strip().lower()
                break
        if encoding is None or encoding == b"identity":
            await self.app(scope, receive, send)
            return
        if encoding not in (b"gzip", b"x-gzip"):
            await _reject(send, 415, b"unsupported Content-Encoding")
            return
        compressed = bytearray()
        while True:
            message: Any = await receive()
            if message["type"] == "http.disconnect":
                return
            compressed += message.get("body", b"")
            if len(compressed) > self.max_inflated:
                await _reject(send, 413, b"request body too large")
                return
            if not message.get("more_body", False):
                break
        try:
            inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            body = inflater.decompress(bytes(compressed), self.max_inflated + 1)
            if len(body) > self.max_inflated or inflater.unconsumed_tail:
                await _reject(send, 413, b"request body too large")
                return
            if not inflater.eof:
                raise zlib.error("truncated gzip stream")
        except zlib.error:
            await _reject(send, 400, b"malformed gzip body")
            return
        headers = [
            (n, v) for n, v in scope["headers"] if n not in (b"content-encoding", b"content-length")
        ]
        headers.append((b"content-length", str(len(body)).encode()))
        sent = False

        async def replay() -> Any:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app({**scope, "headers": headers}, replay, send)  # type: ignore[arg-type]


async def _reject(send: Send, status: int, text: bytes) -> None:
    body = b'{"error":"' + text + b'"}'
    start: Any = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    await send(start)
    await send({"type": "http.response.body", "body": body, "more_body": False})
