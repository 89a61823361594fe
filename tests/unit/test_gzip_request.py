"""GzipRequestMiddleware alone, with a small cap: what reaches the app, or the refusal."""

from __future__ import annotations

import gzip
from typing import Any

import pytest

from gophermart.entrypoints.http.gzip_request import GzipRequestMiddleware

CAP = 1000


async def _through(body: bytes, chunks: int = 1) -> tuple[int, bytes]:
    """POST ``body`` (gzip) through the middleware in ``chunks`` pieces: (status, what
    the app received, or the refusal's body)."""
    received: list[bytes] = []
    sent: list[dict[str, Any]] = []

    async def app(_scope: Any, receive: Any, send: Any) -> None:
        received.append((await receive())["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    step = -(-len(body) // chunks)
    pieces = [body[i : i + step] for i in range(0, len(body), step)] or [b""]
    messages = [
        {"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1}
        for i, piece in enumerate(pieces)
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "headers": [(b"content-encoding", b"gzip")]}
    await GzipRequestMiddleware(app, max_inflated=CAP)(scope, receive, send)  # type: ignore[arg-type]
    status = sent[0]["status"]
    return status, received[0] if status == 200 else sent[1]["body"]


async def test_every_member_is_inflated_within_one_cap() -> None:
    members = gzip.compress(b"a" * 400) + gzip.compress(b"b" * 400) + gzip.compress(b"c" * 200)
    assert await _through(members, chunks=3) == (200, b"a" * 400 + b"b" * 400 + b"c" * 200)
    past = members + gzip.compress(b"d")
    assert await _through(past) == (413, b'{"error":"request body too large"}')


@pytest.mark.parametrize("tail", [b"x", b"\x00", b"\x1f\x8b\x08"])
async def test_anything_after_the_last_member_is_malformed(tail: bytes) -> None:
    assert await _through(gzip.compress(b"fine") + tail) == (
        400,
        b'{"error":"malformed gzip body"}',
    )
