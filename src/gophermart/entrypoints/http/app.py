"""The HTTP API (SPEC.md) assembled: the controllers (``controllers/``: thin handlers that
parse, call the facade, and render) under one router, and the standalone app.

The API is one more client of :class:`~gophermart.facade.Gophermart`: a standalone app
(:func:`http_app`) or a router a host mounts under its own prefix (:func:`http_router`).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from litestar import Litestar, Router
from litestar.config.compression import CompressionConfig
from litestar.middleware import DefineMiddleware

from gophermart.entrypoints.http.compression import WeightedCompression
from gophermart.entrypoints.http.controllers import (
    METRICS_PATH,
    AccountsController,
    AdminController,
    AdminLedgerController,
    AdminWebhooksController,
    HealthController,
    LedgerController,
    OrdersController,
    PointsController,
)
from gophermart.entrypoints.http.errors import EXCEPTION_HANDLERS
from gophermart.entrypoints.http.gzip_request import GzipRequestMiddleware
from gophermart.entrypoints.http.head import HeadAsGet
from gophermart.entrypoints.http.mount import Mount
from gophermart.entrypoints.http.openapi import API_DESCRIPTION, openapi_config
from gophermart.entrypoints.http.query import StrictQuery
from gophermart.facade import Gophermart

MAX_BODY = 64 * 1024


def http_router(
    loyalty: Gophermart, path: str = "/", *, cookie_secure: bool | None = None
) -> Router:
    """The whole API as one Litestar ``Router``, to mount in a host's app under ``path``
    (``/loyalty`` gives ``/loyalty/api/user/...``). It carries its own error mapping,
    strict query strings, gzip request bodies and body limit; response compression is
    the app's setting. ``loyalty`` must be started: put :func:`loyalty_lifespan` in the
    host's lifespan."""
    settings = loyalty.settings
    mount = Mount(
        loyalty,
        cookie_secure=settings.cookie_secure if cookie_secure is None else cookie_secure,
        cookie_path=path if path.endswith("/") else path + "/",
        token_ttl_seconds=int(settings.token_ttl.total_seconds()),
    )
    return Router(
        path=path,
        route_handlers=[
            AccountsController,
            OrdersController,
            PointsController,
            LedgerController,
            AdminController,
            AdminLedgerController,
            AdminWebhooksController,
            HealthController,
        ],
        opt=mount.opt(),  # how the handlers find the facade (mount.py)
        exception_handlers=dict(EXCEPTION_HANDLERS),
        middleware=[DefineMiddleware(StrictQuery), DefineMiddleware(GzipRequestMiddleware)],
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
        compression_config=CompressionConfig(
            backend="gzip", minimum_size=1, middleware_class=WeightedCompression
        ),
        lifespan=[loyalty_lifespan(loyalty, run_worker=run_worker), *lifespan],
        openapi_config=openapi_config(
            title="Gophermart", version=_version(), description=API_DESCRIPTION
        ),
        logging_config=None,
        debug=debug,
    )
    app.asgi_handler = HeadAsGet(app.asgi_handler)  # before routing: HEAD is GET sans body
    # Listed, not served: the server's ASGI wrapper answers /metrics before Litestar.
    path, item = METRICS_PATH
    # In path order: Litestar keeps a handler's several paths in a set, whose order
    # changes with each process's hash seed, and the document should not.
    paths = {**(app.openapi_schema.paths or {}), path: item}
    app.openapi_schema.paths = dict(sorted(paths.items()))
    return app


def health_app(loyalty: Gophermart) -> Litestar:
    """Only the health routes (``/livez``, ``/healthz``, ``/readyz``): the HTTP face of a
    process that serves no API (``gophermart worker --address``). ``loyalty`` is opened
    and closed by its owner, not by this app. No ``/schema`` (Litestar's default would
    serve a Swagger UI loaded from a CDN, documenting nothing of this face), and every
    error is the API's ``{"error": ...}``."""
    return Litestar(
        route_handlers=[HealthController],
        opt=Mount(loyalty).opt(),
        exception_handlers=dict(EXCEPTION_HANDLERS),
        openapi_config=None,
        logging_config=None,
    )
