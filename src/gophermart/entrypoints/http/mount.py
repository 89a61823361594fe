"""How a handler finds the facade it serves: the router it is mounted under carries it.

A router built by :func:`~gophermart.entrypoints.http.app.http_router` puts one
:class:`Mount` in its ``opt``; Litestar hands every handler registered under it a copy of
that ``opt`` at start-up, so two routers mounted in one host app with two facades each
reach their own, and a request pays one dictionary look-up (no closures, no dependency
injection: docs/performance.md, "Round two").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from gophermart.facade import Gophermart

if TYPE_CHECKING:
    from litestar.connection import ASGIConnection

MOUNT: Final = "gophermart"  # the key in the router's ``opt``


@dataclass(frozen=True, slots=True)
class Mount:
    """What the routes under one router share: the facade, and where the cookie goes."""

    loyalty: Gophermart
    cookie_secure: bool = False
    cookie_path: str = "/"
    token_ttl_seconds: int = 0

    def opt(self) -> dict[str, Any]:
        return {MOUNT: self}

    # Litestar deep-copies a router (its ``opt`` included) when it is registered; the
    # facade is one live object, started by the lifespan, and must stay that one.
    def __copy__(self) -> Mount:
        return self

    def __deepcopy__(self, _memo: dict[int, Any]) -> Mount:
        return self


def mount_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Mount:
    # scope["route_handler"] rather than the ``route_handler`` property: a third of the
    # cost, on every request of the hot routes.
    mount: Mount = connection.scope["route_handler"].opt[MOUNT]
    return mount
