"""``HEAD`` answers like ``GET``, without the body (RFC 9110, section 9.3.2).

Litestar routes ``HEAD`` only to handlers declared for it, so a health check or a
client probing a listing with ``HEAD`` got ``405``. Rather than a twin handler per
route, the request is served as the ``GET`` it stands for, before routing, and the
body is dropped on the way out: status and headers (``Content-Length`` included)
are exactly the ``GET``'s, on every route present and future.
"""

from __future__ import annotations

from typing import Any, cast

from litestar.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    """ASGI wrapper: serve ``HEAD`` as ``GET`` and send no body."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fields = cast("dict[str, Any]", scope)
        if fields["type"] != "http" or fields["method"] != "HEAD":
            await self._app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return  # swallow the chunks; the last one closes the response
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self._app(cast("Scope", {**fields, "method": "GET"}), receive, without_body)
