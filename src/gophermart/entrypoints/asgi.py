"""The ASGI factory each server process calls (``uvicorn ...asgi:create --factory``).

The CLI resolves settings once (flags over env over defaults, schema migrated, secret
settled) and hands them to the server processes in one private environment variable.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import AsyncIterator

import msgspec
from litestar import Litestar

from gophermart.entrypoints.http.app import http_app
from gophermart.facade import Gophermart
from gophermart.settings import ConfigError, Settings, configure_logging

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


def create() -> Litestar:
    raw = os.environ.get(RESOLVED_SETTINGS_ENV)
    if raw is None:
        raise ConfigError("start the service with the `gophermart` command")
    settings = msgspec.json.decode(raw, type=Settings)
    configure_logging(settings.log_level)
    loyalty = Gophermart.from_settings(settings, migrate=False)  # the CLI migrated
    run_worker = settings.run_worker and settings.accrual_address is not None
    if settings.run_worker and not run_worker:
        import logging

        logging.getLogger("gophermart").warning(
            "ACCRUAL_SYSTEM_ADDRESS is not set: orders stay NEW until it is"
        )
    return http_app(loyalty, run_worker=run_worker, lifespan=[_settle_garbage_collector])
