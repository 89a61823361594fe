"""The HTTP API (SPEC.md): thin handlers that parse, call the facade, and render.

The API is one more client of :class:`~gophermart.facade.Gophermart`: a standalone app
(:func:`http_app`) or a router a host mounts under its own prefix (:func:`http_router`).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any

from litestar import Litestar, Request, Response, Router, get, post
from litestar.config.compression import CompressionConfig
from litestar.datastructures import Cookie
from litestar.di import NamedDependency, Provide
from litestar.handlers import HTTPRouteHandler
from litestar.middleware import DefineMiddleware
from litestar.params import QueryParameter

from gophermart.application.errors import Unauthenticated
from gophermart.application.orders import UploadOutcome
from gophermart.application.ports import OrderView
from gophermart.application.queries import Queries
from gophermart.application.users import Authenticated
from gophermart.domain.errors import InvalidInput
from gophermart.domain.users import UserId
from gophermart.entrypoints.http.errors import EXCEPTION_HANDLERS
from gophermart.entrypoints.http.gzip_request import GzipRequestMiddleware
from gophermart.entrypoints.http.head import HeadAsGet
from gophermart.entrypoints.http.openapi import (
    API_DESCRIPTION,
    ROUTE_DOCS,
    SECURITY,
    openapi_config,
)
from gophermart.entrypoints.http.wire import (
    BalanceOut,
    OrderOut,
    WithdrawalOut,
    decode_credentials,
    decode_withdraw,
    encoder,
    parse_sum,
)
from gophermart.facade import Gophermart

TOKEN_COOKIE = "token"  # noqa: S105 - a cookie name, not a secret
MAX_BODY = 64 * 1024
JSON = "application/json"
TEXT = "text/plain"  # for the empty bodies: they are not JSON (Litestar adds the charset)


def _authenticator(loyalty: Gophermart) -> Callable[[Request[Any, Any, Any]], UserId]:
    def authenticate(request: Request[Any, Any, Any]) -> UserId:
        """The guard of every protected route: a Bearer header or the cookie."""
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

    return authenticate


def _signer(
    *, secure: bool, ttl_seconds: int, cookie_path: str
) -> Callable[[Authenticated], Response[bytes]]:
    """The answer to a register or login: the token as a Bearer header and a cookie."""

    def signed_in(auth: Authenticated) -> Response[bytes]:
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
                    secure=secure,
                    max_age=ttl_seconds,
                    path=cookie_path,
                )
            ],
        )

    return signed_in


async def _credentials(request: Request[Any, Any, Any]) -> tuple[str, str]:
    creds = decode_credentials(await request.body())
    return creds.login, creds.password


def _orders_json(views: Sequence[OrderView]) -> bytes:
    return encoder.encode(
        [
            OrderOut(
                number=v.number,
                status=v.status.value,
                uploaded_at=v.uploaded_at,
                accrual=v.accrual.as_decimal() if v.accrual is not None else None,
            )
            for v in views
        ]
    )


def _health_handlers(loyalty: Gophermart) -> list[HTTPRouteHandler]:
    @get(["/livez", "/healthz"], include_in_schema=False)
    async def live() -> Response[bytes]:
        """Alive: the process serves. No database check (SPEC.md, "Health")."""
        return Response(content=b'{"status":"ok"}', media_type=JSON)

    @get("/readyz", include_in_schema=False)
    async def ready() -> Response[bytes]:
        """Ready: the database answers and its schema is current; 503 says what failed."""
        verdict = await loyalty.readiness()
        if verdict.ready:
            body = {"status": "ready", "checks": dict(verdict.checks)}
            return Response(content=encoder.encode(body), media_type=JSON)
        failed = "; ".join(f"{k}: {v}" for k, v in verdict.checks.items() if v != "ok")
        body = {"error": f"not ready: {failed}", "checks": dict(verdict.checks)}
        return Response(content=encoder.encode(body), status_code=503, media_type=JSON)

    return [live, ready]


#: ``?limit=`` and ``?before=`` of ``GET /api/user/orders`` (optional pages).
OrdersLimit = Annotated[
    int | None,
    QueryParameter(
        ge=1,
        le=Queries.MAX_LIMIT,
        description="At most this many orders (a page); all of them without it.",
    ),
]
OrdersBefore = Annotated[
    str | None,
    QueryParameter(
        description=(
            "Only the orders listed after this one: the number of the last order "
            "of the previous page. With `limit`, the next page."
        ),
    ),
]


def _sign_in_handlers(
    loyalty: Gophermart, signed_in: Callable[[Authenticated], Response[bytes]]
) -> list[HTTPRouteHandler]:
    @post("/api/user/register", status_code=200, **ROUTE_DOCS["register"])
    async def register(request: Request[Any, Any, Any]) -> Response[bytes]:
        login, password = await _credentials(request)
        return signed_in(await loyalty.register(login, password))

    @post("/api/user/login", status_code=200, **ROUTE_DOCS["log_in"])
    async def log_in(request: Request[Any, Any, Any]) -> Response[bytes]:
        login, password = await _credentials(request)
        client = request.client.host if request.client else "unknown"
        return signed_in(await loyalty.log_in(login, password, client))

    return [register, log_in]


def _protected_router(
    loyalty: Gophermart, authenticate: Callable[[Request[Any, Any, Any]], UserId]
) -> Router:
    """The routes that need a credential: the user's orders, points and withdrawals."""
    return Router(
        path="/",
        route_handlers=[
            *_order_handlers(loyalty, authenticate),
            *_points_handlers(loyalty, authenticate),
        ],
        dependencies={"user_id": Provide(authenticate, sync_to_thread=False)},
        security=SECURITY,
    )


# The hot routes (balance, orders, withdraw) read the credential themselves rather than
# through Litestar's dependency injection, which cost about 9 of a request's 30 us of
# framework time (docs/performance.md, "Round two"); same check, same errors.


def _order_handlers(
    loyalty: Gophermart, authenticate: Callable[[Request[Any, Any, Any]], UserId]
) -> list[HTTPRouteHandler]:
    """Uploading an order number, and listing the user's orders."""

    @post("/api/user/orders", status_code=202, **ROUTE_DOCS["upload_order"])
    async def upload_order(
        request: Request[Any, Any, Any], user_id: NamedDependency[UserId]
    ) -> Response[bytes]:
        # The contract says text/plain; the Content-Type is not checked, so that
        # `curl -d 12345678903` (form-encoded by default) works too: the body is the number.
        try:
            text = (await request.body()).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput("the body is not UTF-8") from None
        if not text.strip():
            raise InvalidInput("the body must carry an order number")
        outcome = await loyalty.upload_order(user_id, text)
        status = 202 if outcome is UploadOutcome.ACCEPTED else 200
        return Response(content=b"", status_code=status, media_type=TEXT)

    @get("/api/user/orders", **ROUTE_DOCS["list_orders"])
    async def list_orders(
        request: Request[Any, Any, Any], limit: OrdersLimit = None, before: OrdersBefore = None
    ) -> Response[bytes]:
        views = await loyalty.orders(authenticate(request), limit, before)
        if not views:
            return Response(content=b"", status_code=204, media_type=TEXT)
        return Response(content=_orders_json(views), media_type=JSON)

    return [upload_order, list_orders]


def _points_handlers(
    loyalty: Gophermart, authenticate: Callable[[Request[Any, Any, Any]], UserId]
) -> list[HTTPRouteHandler]:
    """The balance, spending points, and listing the withdrawals."""

    @get("/api/user/balance", **ROUTE_DOCS["balance"])
    async def balance(request: Request[Any, Any, Any]) -> Response[bytes]:
        view = await loyalty.balance(authenticate(request))
        body = encoder.encode(BalanceOut(view.current.as_decimal(), view.withdrawn.as_decimal()))
        return Response(content=body, media_type=JSON)

    @post("/api/user/balance/withdraw", status_code=200, **ROUTE_DOCS["withdraw"])
    async def withdraw(request: Request[Any, Any, Any]) -> Response[bytes]:
        user_id = authenticate(request)
        body = decode_withdraw(await request.body())
        amount = parse_sum(body.sum)
        await loyalty.withdraw(user_id, body.order, amount)
        return Response(content=b"", status_code=200, media_type=TEXT)

    @get("/api/user/withdrawals", **ROUTE_DOCS["list_withdrawals"])
    async def list_withdrawals(user_id: NamedDependency[UserId]) -> Response[bytes]:
        views = await loyalty.withdrawals(user_id)
        if not views:
            return Response(content=b"", status_code=204, media_type=TEXT)
        body = encoder.encode(
            [WithdrawalOut(v.order, v.sum.as_decimal(), v.processed_at) for v in views]
        )
        return Response(content=body, media_type=JSON)

    return [balance, withdraw, list_withdrawals]


def http_router(
    loyalty: Gophermart, path: str = "/", *, cookie_secure: bool | None = None
) -> Router:
    """The whole API as one Litestar ``Router``, to mount in a host's app under ``path``
    (``/loyalty`` gives ``/loyalty/api/user/...``). It carries its own error mapping,
    gzip request bodies and body limit; response compression is the app's setting.
    ``loyalty`` must be started: put :func:`loyalty_lifespan` in the host's lifespan."""
    settings = loyalty.settings
    signed_in = _signer(
        secure=settings.cookie_secure if cookie_secure is None else cookie_secure,
        ttl_seconds=int(settings.token_ttl.total_seconds()),
        cookie_path=path if path.endswith("/") else path + "/",
    )
    return Router(
        path=path,
        route_handlers=[
            *_sign_in_handlers(loyalty, signed_in),
            *_health_handlers(loyalty),
            _protected_router(loyalty, _authenticator(loyalty)),
        ],
        exception_handlers=dict(EXCEPTION_HANDLERS),
        middleware=[DefineMiddleware(GzipRequestMiddleware)],
        request_max_body_size=MAX_BODY,
    )


def loyalty_lifespan(
    loyalty: Gophermart, *, run_worker: bool = False
) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """A lifespan hook for the host's app: starts ``loyalty`` (and its accrual worker,
    if asked) with the app and closes it with the app."""

    @asynccontextmanager
    async def lifespan(_app: Litestar) -> AsyncIterator[None]:
        async with loyalty:
            if run_worker:
                await loyalty.start_worker()
            yield

    return lifespan


def _version() -> str:
    try:
        return importlib.metadata.version("gophermart")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - run from a tree
        return "0"


def http_app(
    loyalty: Gophermart,
    *,
    run_worker: bool = False,
    lifespan: Sequence[Callable[[Litestar], AbstractAsyncContextManager[None]]] = (),
    debug: bool = False,
) -> Litestar:
    """The API as a standalone ASGI app that owns ``loyalty``'s life: started with the
    app (migrating if it was opened so), closed at shutdown; responses gzip-compressed
    for clients that accept it; ``HEAD`` answered like ``GET``, without the body."""
    app = Litestar(
        route_handlers=[http_router(loyalty)],
        exception_handlers=dict(EXCEPTION_HANDLERS),
        compression_config=CompressionConfig(backend="gzip", minimum_size=1),
        lifespan=[loyalty_lifespan(loyalty, run_worker=run_worker), *lifespan],
        openapi_config=openapi_config(
            title="Gophermart", version=_version(), description=API_DESCRIPTION
        ),
        logging_config=None,
        debug=debug,
    )
    app.asgi_handler = HeadAsGet(app.asgi_handler)  # before routing: HEAD is GET sans body
    return app


def health_app(loyalty: Gophermart) -> Litestar:
    """Only the health routes (``/livez``, ``/healthz``, ``/readyz``): the HTTP face of a
    process that serves no API (``gophermart worker --address``). ``loyalty`` is opened
    and closed by its owner, not by this app."""
    return Litestar(route_handlers=_health_handlers(loyalty), logging_config=None)
