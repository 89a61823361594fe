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

Today there is one kind of credential, the user's token (:data:`USER_TOKEN`). The
operator routes to come (``/api/admin/``) take another kind (an operator key): a second
:class:`Credential` with its own reader and security scheme, required by the admin
controller in the same way; nothing here changes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from litestar import Controller, Request
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.spec import SecurityRequirement, SecurityScheme

from gophermart.application.errors import Unauthenticated
from gophermart.domain.users import UserId
from gophermart.entrypoints.http.mount import mount_of

TOKEN_COOKIE: Final = "token"  # noqa: S105 - a cookie name, not a secret

AnyRequest = Request[Any, Any, Any]


@dataclass(frozen=True, slots=True)
class Credential:
    """One kind of credential: how a request presents it (``read``: the principal, or
    :class:`Unauthenticated`) and how the OpenAPI document names it."""

    read: Callable[[AnyRequest], object]
    schemes: Mapping[str, SecurityScheme]
    #: Alternatives: any one of them is enough (OpenAPI's list of requirements).
    security: list[SecurityRequirement] = field(default_factory=list)


def _user_from_token(request: AnyRequest) -> UserId:
    """A Bearer header or, without one, the cookie (SPEC.md: "either works")."""
    loyalty = mount_of(request).loyalty
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("expected 'Authorization: Bearer <token>'")
        return loyalty.authenticate(token.strip())
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


def _authenticating(credential: Credential) -> Callable[[AnyRequest], Awaitable[None]]:
    read = credential.read

    async def authenticate(request: AnyRequest) -> None:
        # OPTIONS is answered by Litestar's own handler (the allowed methods), which it
        # files under the controller too; it never needed a credential.
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
