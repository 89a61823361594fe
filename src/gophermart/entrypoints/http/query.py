"""Query strings read strictly, before Litestar parses them (a pure ASGI middleware).

Litestar keeps the last of a repeated parameter (``limit=5&limit=6`` was a page of 6)
and converts integers leniently (``limit=1e3`` was 1000, ``1.0`` was 1). Here a
parameter given twice is ``400``, and the integer parameters must be plain decimal
digits; what passes is then typed and range-checked by Litestar as declared on each
route. A request without a query string (every hot route) costs one lookup.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import parse_qsl

from litestar.types import ASGIApp, Receive, Scope, Send

from gophermart.entrypoints.http.errors import send_error

#: The API's integer query parameters (``?limit=`` of the listings, controllers/orders.py).
DIGITS_ONLY: Final = frozenset({"limit"})


def query_problem(query: bytes) -> str | None:
    """What is wrong with ``query`` (the raw query string), or ``None``."""
    seen: set[str] = set()
    # Names are compared percent-decoded (%6Cimit is limit), blanks kept (limit=&limit=5).
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if name in seen:
            return f"query parameter {name!r} is given more than once"
        seen.add(name)
        if name in DIGITS_ONLY and not (value.isascii() and value.isdigit()):
            return f"{name} must be written in plain decimal digits"
    return None


class StrictQuery:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = scope.get("query_string")
        if query:
            problem = query_problem(query)
            if problem is not None:
                await send_error(send, 400, problem)
                return
        await self.app(scope, receive, send)
