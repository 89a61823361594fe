"""Accounts: registering and logging in, each answered with the token as a Bearer header
and an HttpOnly cookie (SPEC.md, "Authentication"), and a ``device`` cookie that makes
the login throttle recognise the owner's device next time.

Both routes cost a password hash, which waits its turn in a bounded line
(``adapters/security.py``). uvicorn does not cancel a handler whose client hung up, so
these handlers watch for it themselves (:func:`_unless_hung_up`): a client that hangs up
takes its queued hash with it (SPEC: "Bounded work per client").
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Final, TypeVar

from litestar import Controller, Request, Response, post
from litestar.datastructures import Cookie, ResponseHeader
from litestar.types import Receive

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
from gophermart.entrypoints.http.errors import error_response
from gophermart.entrypoints.http.mount import Mount, mount_of
from gophermart.entrypoints.http.wire import Credentials, decode_credentials

T = TypeVar("T")

#: The device cookie: a random token, sent back only to the login route (so no other
#: request carries it). It outlives the throttle's memory of it: a device back after a
#: long absence is recognised again from its next successful login.
DEVICE_COOKIE: Final = "device"
_DEVICE_MAX_AGE: Final = 365 * 86400
_LOGIN: Final = "api/user/login"  # the login route, below the mount's path
#: The status an answer nobody will read is logged with (nginx's "client closed request").
CLIENT_CLOSED: Final = 499


def _cookie(mount: Mount, root: str, key: str, value: str, max_age: int, path: str = "") -> Cookie:
    return Cookie(
        key=key,
        value=value,
        httponly=True,
        samesite="lax",
        secure=mount.cookie_secure,
        max_age=max_age,
        path=root + mount.cookie_path + path,
    )


def _signed_in(
    request: Request[Any, Any, Any], mount: Mount, auth: Authenticated
) -> Response[bytes]:
    # Below the ASGI root_path too: an app mounted in a Starlette or FastAPI host's
    # Mount("/loyalty", ...) is told its prefix only there.
    root = request.scope.get("root_path", "").rstrip("/")
    cookies = [_cookie(mount, root, TOKEN_COOKIE, auth.token, mount.token_ttl_seconds)]
    if auth.device:
        device = _cookie(mount, root, DEVICE_COOKIE, auth.device, _DEVICE_MAX_AGE, _LOGIN)
        cookies.append(device)
    return Response(
        content=b"",
        status_code=200,
        media_type=TEXT,
        headers={"Authorization": f"Bearer {auth.token}"},
        cookies=cookies,
    )


async def _credentials(request: Request[Any, Any, Any]) -> tuple[str, str]:
    creds = decode_credentials(await request.body())
    return creds.login, creds.password


async def _hung_up(receive: Receive) -> bool:
    """Whether the client hangs up. Once the body is read, the next message an ASGI
    server sends is ``http.disconnect``, when the connection is gone."""
    try:
        message = await receive()
    except Exception:  # a server that will not say: never taken for a hang-up
        return False
    return message["type"] == "http.disconnect"


async def _unless_hung_up(
    request: Request[Any, Any, Any], work: Coroutine[Any, Any, T]
) -> T | None:
    """``work``'s result; ``None`` if the client hung up first, and then ``work`` was
    cancelled: a hash still waiting its turn leaves the line and is never computed."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_hung_up(request.receive))
    try:
        await asyncio.wait((task, watch), return_when=asyncio.FIRST_COMPLETED)
        if not task.done() and watch.result():
            task.cancel()
            await asyncio.wait((task,))  # its clean-up done (a turn handed on)
            if not task.cancelled():
                task.exception()  # it ended first after all: nobody is there to be told
            return None
        return await task
    finally:
        watch.cancel()
        task.cancel()  # only if this handler itself was cancelled first


def _gone() -> Response[bytes]:
    return error_response(CLIENT_CLOSED, "client closed the request")


def _client(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client else "unknown"


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
        ),
        Cookie(
            key=DEVICE_COOKIE,
            documentation_only=True,
            httponly=True,
            samesite="lax",
            path="/api/user/login",
            description="This device, recognised at later logins (sent back only to "
            "the login route): an attempt carrying it is not held to the login's lock",
        ),
    ],
    "dependencies": body_of(Credentials),
    "operation_class": documented(
        body_description="A login (1-64 characters) and a password (1-256 characters).",
        body_examples={"alice": {"login": "alice", "password": "correct horse"}},
    ),
}


_BUSY = error_doc(
    "Too many password checks are already queued (a login storm), or the database is "
    "unavailable or too slow: refused at once, nothing was changed; retry after "
    "`Retry-After` seconds",
    "too many password checks queued",
)
_LOGIN_POLICY: Final = (
    "Failures are throttled, counted alike by every process of a deployment. An "
    "(address, login) pair gets 5 failures, a login from all addresses together 20; "
    "past that, attempts are refused with `429` and `Retry-After` (before any password "
    "check) for 2 s, then 4 s, 8 s ... up to 15 minutes. An address or a device (the "
    "`device` cookie set here) that logged in to the login before is held to its "
    "pair's lock only, so guesses from elsewhere cannot lock the owner out. An address "
    "is never locked: past 50 failures over all logins its attempts are delayed by "
    "0.1 s per failure over, up to 3 s. Counters are forgotten after 15 quiet minutes."
)


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
            503: _BUSY,
        },
        **_SIGNED_IN,
    )
    async def register(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        login, password = await _credentials(request)
        mount = mount_of(request)
        device = request.cookies.get(DEVICE_COOKIE)
        work = mount.loyalty.register(login, password, _client(request), device)
        auth = await _unless_hung_up(request, work)
        return _gone() if auth is None else _signed_in(request, mount, auth)

    @post(
        "/login",
        operation_id="log_in",
        summary="Sign in",
        description=_LOGIN_POLICY,
        response_description="Authenticated (empty body)",
        responses={
            400: MALFORMED,
            401: error_doc("Wrong login/password pair", "wrong login or password"),
            429: error_doc(
                "Too many failed attempts at this login, from this address or from "
                "everywhere; retry after `Retry-After` seconds",
                "too many failed attempts, retry after 4s",
            ),
            **BODY_ERRORS,
            503: _BUSY,
        },
        **_SIGNED_IN,
    )
    async def log_in(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        login, password = await _credentials(request)
        mount = mount_of(request)
        device = request.cookies.get(DEVICE_COOKIE)
        work = mount.loyalty.log_in(login, password, _client(request), device)
        auth = await _unless_hung_up(request, work)
        return _gone() if auth is None else _signed_in(request, mount, auth)
