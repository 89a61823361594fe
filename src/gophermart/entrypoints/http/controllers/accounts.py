"""Accounts: registering and logging in, each answered with the token as a Bearer header
and an HttpOnly cookie (SPEC.md, "Authentication")."""

from __future__ import annotations

from typing import Any, Final

from litestar import Controller, Request, Response, post
from litestar.datastructures import Cookie, ResponseHeader

from gophermart.application.users import Authenticated
from gophermart.entrypoints.http.auth import TOKEN_COOKIE
from gophermart.entrypoints.http.controllers.common import (
    BODY_ERRORS,
    MALFORMED,
    TEXT,
    body_of,
    documented,
    error_doc,
)
from gophermart.entrypoints.http.mount import Mount, mount_of
from gophermart.entrypoints.http.wire import Credentials, decode_credentials


def _signed_in(mount: Mount, auth: Authenticated) -> Response[bytes]:
    return Response(
        content=b"",
        status_code=200,
        media_type=TEXT,
        headers={"Authorization": f"Bearer {auth.token}"},
        cookies=[
            Cookie(
                key=TOKEN_COOKIE,
                value=auth.token,
                httponly=True,
                samesite="lax",
                secure=mount.cookie_secure,
                max_age=mount.token_ttl_seconds,
                path=mount.cookie_path,
            )
        ],
    )


async def _credentials(request: Request[Any, Any, Any]) -> tuple[str, str]:
    creds = decode_credentials(await request.body())
    return creds.login, creds.password


# --- OpenAPI ------------------------------------------------------------------------

_SIGNED_IN: Final[dict[str, Any]] = {
    "status_code": 200,
    "media_type": TEXT,
    "response_headers": [
        ResponseHeader(
            name="Authorization",
            value="Bearer <token>",
            documentation_only=True,
            description="`Bearer <token>`: send it back on protected routes",
        )
    ],
    "response_cookies": [
        Cookie(
            key=TOKEN_COOKIE,
            documentation_only=True,
            httponly=True,
            samesite="lax",
            description="The same token as an HttpOnly cookie",
        )
    ],
    "dependencies": body_of(Credentials),
    "operation_class": documented(
        body_description="A login (1-64 characters) and a password (1-256 characters).",
        body_examples={"alice": {"login": "alice", "password": "correct horse"}},
    ),
}


class AccountsController(Controller):
    """``POST /api/user/register`` and ``POST /api/user/login``: no credential needed."""

    path = "/api/user"
    tags = ["users"]

    @post(
        "/register",
        operation_id="register",
        summary="Register and sign in",
        description="Creates the user with an empty account and authenticates them: the "
        "token comes back in the `Authorization` header and the `token` cookie.",
        response_description="Registered and authenticated (empty body)",
        responses={
            400: MALFORMED,
            409: error_doc("The login is taken", "login taken"),
            **BODY_ERRORS,
        },
        **_SIGNED_IN,
    )
    async def register(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        login, password = await _credentials(request)
        mount = mount_of(request)
        return _signed_in(mount, await mount.loyalty.register(login, password))

    @post(
        "/login",
        operation_id="log_in",
        summary="Sign in",
        description="Repeated failures for one login or one client address are refused "
        "with `429` and `Retry-After` (5 failures per login in 15 minutes, 50 per address).",
        response_description="Authenticated (empty body)",
        responses={
            400: MALFORMED,
            401: error_doc("Wrong login/password pair", "wrong login or password"),
            429: error_doc(
                "Too many failed attempts for this login or client address; retry after "
                "`Retry-After` seconds",
                "too many failed attempts; retry in 4 s",
            ),
            **BODY_ERRORS,
        },
        **_SIGNED_IN,
    )
    async def log_in(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        login, password = await _credentials(request)
        client = request.client.host if request.client else "unknown"
        mount = mount_of(request)
        return _signed_in(mount, await mount.loyalty.log_in(login, password, client))
