"""The one authentication path of the protected routes.

A protected controller names the :class:`Credential` it requires (``@requires``). Its
``before_request`` hook reads the credential on every request before the handler runs,
puts the principal in ``scope["user"]`` (``request.user`` in the handler) and raises
:class:`~gophermart.Unauthenticated` (401 with ``WWW-Authenticate``, via errors.py) when
it is missing or wrong.

Why a ``before_request`` hook, measured in process on the balance route (a handler that
reads its own header as the baseline): a Litestar guard added ~10 us a request (Litestar
copies the route handler for every guard call), a dependency ~4 us, this hook ~0.5 us. An
ASGI middleware of the controller cost as little, but runs outside Litestar's response
compression, so its 401s went out uncompressed. A handler's own ``before_request`` would
replace the controller's, so ``@requires`` refuses a controller that has one.

There are two kinds of credential: the user's token (:data:`USER_TOKEN`, the shopper
routes) and the operator's key (:data:`OPERATOR_KEY`, ``/api/admin/``), each with its own
reader and security scheme. Neither opens the other's routes: a key is no token (its
signature check fails) and a token is no key (it is not even shaped like one). An
operator key is checked against the database, so its reader is a coroutine; the user's
token is checked in process and its hook awaits nothing.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from litestar import Controller, Request
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.spec import SecurityRequirement, SecurityScheme

from gophermart.application.errors import Unauthenticated
from gophermart.domain.operators import OperatorName
from gophermart.domain.users import UserId
from gophermart.entrypoints.http.mount import mount_of

TOKEN_COOKIE: Final = "token"  # noqa: S105 - a cookie name, not a secret

AnyRequest = Request[Any, Any, Any]


@dataclass(frozen=True, slots=True)
class Credential:
    """One kind of credential: how a request presents it (``read``: the principal, or
    :class:`Unauthenticated`; a plain function or a coroutine function) and how the
    OpenAPI document names it."""

    read: Callable[[AnyRequest], object] | Callable[[AnyRequest], Awaitable[object]]
    schemes: Mapping[str, SecurityScheme]
    #: Alternatives: any one of them is enough (OpenAPI's list of requirements).
    security: list[SecurityRequirement] = field(default_factory=list)


def _bearer(request: AnyRequest) -> str | None:
    """The credential of the ``Authorization: Bearer <credential>`` header (``None``
    without the header; :class:`Unauthenticated` for another scheme or none at all)."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise Unauthenticated("expected 'Authorization: Bearer <credential>'")
    return credential.strip()


def _user_from_token(request: AnyRequest) -> UserId:
    """A Bearer header or, without one, the cookie (SPEC.md: "either works")."""
    loyalty = mount_of(request).loyalty
    token = _bearer(request)
    if token is not None:
        return loyalty.authenticate(token)
    cookie = request.cookies.get(TOKEN_COOKIE)
    if not cookie:
        raise Unauthenticated("missing credentials")
    return loyalty.authenticate(cookie)


USER_TOKEN: Final = Credential(
    read=_user_from_token,
    schemes={
        "bearer": SecurityScheme(
            type="http",
            scheme="bearer",
            bearer_format="JWT",
            description="The token from the `Authorization` header of register/login.",
        ),
        "cookie": SecurityScheme(
            type="apiKey",
            name=TOKEN_COOKIE,
            security_scheme_in="cookie",
            description="The HttpOnly `token` cookie set by register/login.",
        ),
    },
    security=[{"bearer": []}, {"cookie": []}],
)


async def _operator_from_key(request: AnyRequest) -> OperatorName:
    """The Bearer header only: a key is never a cookie (no browser session carries it)."""
    key = _bearer(request)
    if key is None:
        raise Unauthenticated("missing operator key: send 'Authorization: Bearer <key>'")
    return await mount_of(request).loyalty.authenticate_operator(key)


OPERATOR_KEY: Final = Credential(
    read=_operator_from_key,
    schemes={
        "operatorKey": SecurityScheme(
            type="http",
            scheme="bearer",
            bearer_format="gmo_…",
            description="An operator key, made by `gophermart operator add NAME` (shown "
            "once; revoked by `gophermart operator revoke NAME`). Opens `/api/admin/` only.",
        ),
    },
    security=[{"operatorKey": []}],
)


def operator_of(request: AnyRequest) -> OperatorName:
    """The operator an admin route's request speaks for (its key's name): what the
    ledger records on the entries that request causes."""
    name: OperatorName = request.scope["user"]
    return name


def _authenticating(credential: Credential) -> Callable[[AnyRequest], Awaitable[None]]:
    read = credential.read
    # OPTIONS is answered by Litestar's own handler (the allowed methods), which it
    # files under the controller too; it never needed a credential.
    if inspect.iscoroutinefunction(read):

        async def authenticate_later(request: AnyRequest) -> None:
            if request.scope["method"] != "OPTIONS":
                request.scope["user"] = await read(request)

        return authenticate_later

    async def authenticate(request: AnyRequest) -> None:
        if request.scope["method"] != "OPTIONS":
            request.scope["user"] = read(request)

    return authenticate


_C = TypeVar("_C", bound=type[Controller])


def requires(credential: Credential) -> Callable[[_C], _C]:
    """Class decorator of a protected controller: every route of it requires
    ``credential``, and says so in the OpenAPI document."""

    def protect(controller: _C) -> _C:
        for name, value in vars(controller).items():
            if name == "before_request" or (
                isinstance(value, HTTPRouteHandler) and value.before_request is not None
            ):
                raise TypeError(f"{controller.__name__}.{name}: a before_request would skip auth")
        # Class attributes, as a controller's body would set them (mypy reads Controller's
        # __slots__ as instance-only).
        controller.before_request = _authenticating(credential)  # type: ignore[misc]
        controller.security = credential.security  # type: ignore[misc]
        return controller

    return protect
