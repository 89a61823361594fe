"""The ASGI factory each server process calls (``uvicorn ...asgi:create --factory``).

The CLI resolves settings once (flags over env over defaults, schema migrated, secret
settled) and hands them to the server processes in one private environment variable.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import msgspec
from litestar import Litestar
from litestar.types import ASGIApp

from gophermart.entrypoints.http.app import http_app
from gophermart.entrypoints.logs import configure_logging, flush_access_lines
from gophermart.entrypoints.metrics import Metrics, instrument, publishing
from gophermart.entrypoints.observe import Observed
from gophermart.facade import Gophermart
from gophermart.settings import Settings, parse_listen_address, refuse

RESOLVED_SETTINGS_ENV = "_GOPHERMART_RESOLVED_SETTINGS"


def export_settings(settings: Settings) -> None:
    os.environ[RESOLVED_SETTINGS_ENV] = msgspec.json.encode(settings).decode()


@contextlib.asynccontextmanager
async def _settle_garbage_collector(_app: Litestar) -> AsyncIterator[None]:
    """Move everything alive after start-up (modules, the app, pools) out of the GC's
    sight, and collect young objects less eagerly: full collections walking those
    long-lived objects were the server's worst latency spikes (docs/performance.md)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    yield


def _publishing_pools(
    metrics: Metrics, loyalty: Gophermart
) -> Callable[[Litestar], contextlib.AbstractAsyncContextManager[None]]:
    """Each process publishes its requests every second and its pools' state every few
    while it serves, and withdraws its live gauges from the aggregate when it stops."""

    def lifespan(_app: Litestar) -> contextlib.AbstractAsyncContextManager[None]:
        return publishing(metrics, loyalty)

    return lifespan


@contextlib.asynccontextmanager
async def _flushing_access_lines(_app: Litestar) -> AsyncIterator[None]:
    try:
        yield
    finally:
        flush_access_lines()


def create() -> ASGIApp:
    raw = os.environ.get(RESOLVED_SETTINGS_ENV)
    if raw is None:
        refuse(RESOLVED_SETTINGS_ENV, "start the service with the `gophermart` command")
    settings = msgspec.json.decode(raw, type=Settings)
    configure_logging(settings.log_level, settings.log_format)
    loyalty = Gophermart.from_settings(replace(settings, migrate=False))  # the CLI did
    # The worker expires holds whether or not it polls an accrual system.
    run_worker = settings.run_worker
    if run_worker and settings.accrual_address is None:
        import logging

        logging.getLogger("gophermart").warning(
            "ACCRUAL_SYSTEM_ADDRESS is not set: orders stay NEW until it is"
        )
    if not settings.metrics:
        app = http_app(
            loyalty,
            run_worker=run_worker,
            lifespan=[_flushing_access_lines, _settle_garbage_collector],
        )
        return Observed(app, access_log_enabled=settings.access_log)
    metrics, scrape_metrics = instrument(loyalty)
    app = http_app(
        loyalty,
        run_worker=run_worker,
        lifespan=[
            _flushing_access_lines,
            _publishing_pools(metrics, loyalty),
            _settle_garbage_collector,
        ],
    )
    metrics_port = None
    if settings.metrics_address is not None:  # bound by the CLI, which knows its port
        metrics_port = parse_listen_address(settings.metrics_address)[1]
    return Observed(
        app,
        metrics=metrics,
        scrape=scrape_metrics,
        access_log_enabled=settings.access_log,
        metrics_port=metrics_port,
    )
