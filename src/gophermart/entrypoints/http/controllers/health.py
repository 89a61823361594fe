"""Health (SPEC.md, "Health"): ``/livez`` (alias ``/healthz``) and ``/readyz``, no
credential; and the OpenAPI description of ``/metrics``, which Litestar does not serve."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from litestar import Controller, Request, get
from litestar.enums import HttpMethod
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.spec import (
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    PathItem,
    Reference,
    Schema,
)
from litestar.response.base import ASGIResponse

from gophermart.entrypoints.http.controllers.common import (
    ERROR_HEADERS,
    JSON,
    OPERATION,
    SERVER_ERRORS,
    documented,
    json_doc,
    json_response,
    retry_after,
)
from gophermart.entrypoints.http.mount import mount_of
from gophermart.entrypoints.http.wire import Health, NotReady, Readiness, encoder

_LIVE: Final = encoder.encode(Health("ok"))
_MAYBE_RETRY_AFTER: Final = {"Retry-After": retry_after(required=False)}


def _operation_id_from_path(
    _handler: HTTPRouteHandler, _method: HttpMethod | str, path: Sequence[Any]
) -> str:
    """``livez`` and ``healthz``: one handler, an operation each, named by its path."""
    return str(path[-1]).strip("/")


class HealthController(Controller):
    path = "/"
    tags = ["health"]

    @get(
        ["/livez", "/healthz"],
        operation_id=_operation_id_from_path,
        summary="Alive: the process serves (no database check)",
        description="For a liveness probe. `/healthz` is an alias of `/livez`.",
        responses={
            200: json_doc(Health, "The process serves", {"status": "ok"}),
            500: SERVER_ERRORS[500],
        },
        operation_class=OPERATION,
    )
    async def live(self) -> ASGIResponse:
        return json_response(_LIVE)

    @get(
        "/readyz",
        operation_id="readyz",
        summary="Ready: the database answers and its schema is current",
        description="For a readiness probe: `503` says which check failed. Not for a "
        "liveness probe: a database outage would restart every instance.",
        responses={
            200: json_doc(Readiness, "Ready", {"status": "ready", "checks": {"database": "ok"}}),
            503: json_doc(
                NotReady,
                "Not ready, and which check failed",
                {
                    "error": "not ready: database: unreachable",
                    "checks": {"database": "unreachable"},
                },
            ),
            500: SERVER_ERRORS[500],
        },
        # The verdict's 503 comes with no Retry-After (a probe polls on its own period).
        operation_class=documented(error_headers={**ERROR_HEADERS, "503": _MAYBE_RETRY_AFTER}),
    )
    async def ready(self, request: Request[Any, Any, Any]) -> ASGIResponse:
        verdict = await mount_of(request).loyalty.readiness()
        checks = dict(verdict.checks)
        if verdict.ready:
            return json_response(encoder.encode(Readiness("ready", checks)))
        failed = "; ".join(f"{k}: {v}" for k, v in checks.items() if v != "ok")
        return json_response(encoder.encode(NotReady(f"not ready: {failed}", checks)), 503)


#: ``GET /metrics``: answered by the server's ASGI wrapper (entrypoints/observe.py) before
#: Litestar, when metrics are on; described here so that the document lists it.
METRICS_PATH: Final = (
    "/metrics",
    PathItem(
        get=Operation(
            operation_id="metrics",
            tags=["health"],
            summary="Prometheus metrics, summed over the server's processes",
            description="Unauthenticated (keep it private at the proxy). Served by the "
            "`gophermart` server itself, not by a router mounted in a host's app.",
            responses={
                "200": OpenAPIResponse(
                    description="Prometheus text exposition format (version 0.0.4)",
                    content={
                        "text/plain": OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING))
                    },
                ),
                "404": OpenAPIResponse(
                    description="Metrics are off (`GOPHERMART_METRICS=0`), or served on "
                    "their own address (`GOPHERMART_METRICS_ADDRESS`)",
                    content={
                        JSON: OpenAPIMediaType(schema=Reference("#/components/schemas/Error"))
                    },
                ),
            },
        )
    ),
)
