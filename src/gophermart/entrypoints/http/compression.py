"""Response compression that honours ``Accept-Encoding`` weights.

Litestar's ``CompressionMiddleware`` compresses whenever the header *contains* "gzip",
so ``gzip;q=0`` (RFC 9110, 12.4.2: "not acceptable") still got gzip, and ``*`` did not.
This subclass decides with the header's weights and lets Litestar do the rest.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final

from litestar.datastructures import Headers
from litestar.enums import CompressionEncoding
from litestar.middleware.compression import CompressionMiddleware
from litestar.types import Receive, Scope, Send

_GZIP: Final = frozenset({"gzip", "x-gzip"})  # x-gzip: the same coding (RFC 9110, 8.4.1.3)


def _weight(parameters: str) -> float:
    """The ``q`` of one ``coding;q=…`` item: 1 when absent, 0 when unreadable (not
    compressing is always safe; identity is acceptable unless excluded)."""
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "q":
            try:
                weight = float(value.strip())
            except ValueError:
                return 0.0
            return weight if 0.0 <= weight <= 1.0 else 0.0
    return 1.0


@lru_cache(maxsize=256)  # clients send few distinct values; parsed once each
def accepts_gzip(accept_encoding: str) -> bool:
    """Whether gzip is acceptable: its own weight if it is named, else ``*``'s."""
    named: float | None = None
    anything: float | None = None
    for item in accept_encoding.split(","):
        coding, _, parameters = item.partition(";")
        coding = coding.strip().lower()
        if coding in _GZIP:
            named = max(named or 0.0, _weight(parameters))
        elif coding == "*":
            anything = _weight(parameters)
    if named is not None:
        return named > 0
    return anything is not None and anything > 0


class WeightedCompression(CompressionMiddleware):
    """``CompressionConfig(middleware_class=WeightedCompression)``: gzip exactly when the
    client's ``Accept-Encoding`` makes it acceptable."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        accept_encoding = Headers.from_scope(scope).get("accept-encoding", "")
        if accept_encoding and accepts_gzip(accept_encoding):
            send = self.create_compression_send_wrapper(
                send=send, compression_encoding=CompressionEncoding.GZIP, scope=scope
            )
        await self.app(scope, receive, send)
