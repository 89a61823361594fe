"""The one place where errors become HTTP status codes."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.types import Send

from gophermart.application.errors import (
    ConcurrentUpdate,
    NotOpen,
    Overloaded,
    StoreUnavailable,
    Unauthenticated,
)
from gophermart.domain import errors as domain
from gophermart.domain.operators import OperatorExists, UnknownOperator
from gophermart.domain.webhooks import InvalidWebhook, UnknownEvent, UnknownWebhook
from gophermart.entrypoints.http.wire import Error, encoder

log = logging.getLogger("gophermart.http")

STATUS_OF: Mapping[type[Exception], int] = {
    domain.InvalidInput: 400,
    domain.InvalidOrderNumber: 422,
    domain.InvalidAmount: 422,
    domain.BalanceOverflow: 422,
    domain.LoginTaken: 409,
    domain.InvalidCredentials: 401,
    domain.TooManyAttempts: 429,
    domain.OrderOwnedByAnotherUser: 409,
    domain.InsufficientPoints: 402,
    domain.WithdrawalConflict: 409,
    domain.UnknownUser: 401,
    domain.UnknownOrder: 404,
    domain.UnknownHold: 404,
    domain.HoldConflict: 409,
    domain.ExceedsOriginal: 409,
    domain.UnknownLogin: 404,
    domain.OrderIsFinal: 409,
    OperatorExists: 409,
    UnknownOperator: 404,
    InvalidWebhook: 422,
    UnknownWebhook: 404,
    UnknownEvent: 404,
    Unauthenticated: 401,
    ConcurrentUpdate: 409,
    StoreUnavailable: 503,  # an outage, logged once by the adapters, not per request
    NotOpen: 503,  # a mounted router whose Gophermart the host has not started (or closed)
    Overloaded: 503,  # a full line of password hashes: a fast refusal, not a long wait
}


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> Response[bytes]:
    return Response(
        content=encoder.encode(Error(message)),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


async def send_error(send: Send, status: int, message: str) -> None:
    """The same ``{"error": ...}`` answer, sent by a plain ASGI middleware (which runs
    before Litestar's exception handlers could map an exception)."""
    body = encoder.encode(Error(message))
    headers: Any = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _domain_error(_request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    for kind in type(exc).__mro__:
        status = STATUS_OF.get(kind)
        if status is not None:
            break
    else:  # pragma: no cover - every DomainError subclass is mapped
        return _unexpected(_request, exc)
    headers = None
    if isinstance(exc, domain.TooManyAttempts | StoreUnavailable | Overloaded):
        headers = {"Retry-After": str(exc.retry_after)}
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": 'Bearer realm="gophermart"'}
    return error_response(status, str(exc) or type(exc).__name__, headers)


def _http_error(_request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    return error_response(exc.status_code, exc.detail, dict(exc.headers or {}) or None)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal error")


EXCEPTION_HANDLERS: Mapping[Any, Callable[..., Response[bytes]]] = {
    domain.DomainError: _domain_error,
    Unauthenticated: _domain_error,
    ConcurrentUpdate: _domain_error,
    StoreUnavailable: _domain_error,
    NotOpen: _domain_error,
    Overloaded: _domain_error,
    HTTPException: _http_error,
    Exception: _unexpected,
}


def refusal(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes] | None:
    """The answer the handlers above give ``exc`` (what Litestar would send), or ``None``
    for an unexpected exception (a bug: a 500, which Litestar logs when it is raised on)."""
    for kind in type(exc).__mro__:
        if kind is Exception:
            return None
        handler = EXCEPTION_HANDLERS.get(kind)
        if handler is not None:
            return handler(request, exc)
    return None  # pragma: no cover - every exception derives from Exception
