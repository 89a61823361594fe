"""``gophermart worker``: the worker alone, for scaling it out: it polls the accrual
system (when ``ACCRUAL_SYSTEM_ADDRESS`` is set; without it orders stay NEW), expires
holds, numbers and prunes events, delivers webhooks and prunes idempotency keys.

Any number of these (and of server processes with their in-process workers) can run
against one PostgreSQL database: orders are leased with ``FOR UPDATE SKIP LOCKED``,
uploads wake every worker through LISTEN/NOTIFY, and the 429 pause is shared.

With ``--address`` (``GOPHERMART_WORKER_ADDRESS``, bound by the CLI before anything else
starts) it also serves ``/livez``, ``/readyz`` and, unless ``GOPHERMART_METRICS=0``,
``/metrics`` (the worker's counters, the queue gauges and its pools), so an orchestrator
can probe it and Prometheus can scrape it like a server process. Without it, it serves no
HTTP at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import uvicorn

from gophermart.bootstrap import prepare
from gophermart.facade import Gophermart
from gophermart.settings import Settings

log = logging.getLogger("gophermart.worker")


class _Server(uvicorn.Server):
    """uvicorn inside the worker's loop: the worker's own signal handlers stop it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def _http_face(
    settings: Settings, loyalty: Gophermart, listening: socket.socket
) -> AsyncIterator[None]:
    """Serve the health routes (and the metrics) on ``listening`` while the block runs.
    Enter it before the worker starts: the worker reports to the metrics installed here."""
    from gophermart.entrypoints.connections import ConnectionLimits
    from gophermart.entrypoints.http.app import health_app
    from gophermart.entrypoints.metrics import instrument, publishing
    from gophermart.entrypoints.observe import Observed

    metrics, scrape = instrument(loyalty) if settings.metrics else (None, None)
    app = Observed(health_app(loyalty), scrape=scrape, access_log_enabled=settings.access_log)
    config = uvicorn.Config(
        app,
        lifespan="off",  # ``loyalty`` is opened and closed by the worker
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=5,
        **ConnectionLimits.of(settings).uvicorn_options(),
    )
    server = _Server(config)
    serving = asyncio.create_task(server.serve([listening]), name="worker-http")
    host, port = listening.getsockname()[:2]
    log.info("worker health and metrics on http://%s:%d", host, port)
    try:
        if metrics is None:
            yield
        else:
            async with publishing(metrics, loyalty):
                yield
    finally:
        server.should_exit = True
        await serving


async def _main(settings: Settings, listening: socket.socket | None) -> None:
    settings = await prepare(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loyalty = Gophermart.from_settings(replace(settings, migrate=False))  # prepare() did
    face = (
        _http_face(settings, loyalty, listening)
        if listening is not None
        else contextlib.nullcontext()
    )
    async with loyalty, face, loyalty.running_worker():
        if settings.accrual_address:
            log.info("accrual worker running against %s", settings.accrual_address)
        else:
            log.info(
                "worker running without an accrual system (ACCRUAL_SYSTEM_ADDRESS unset): "
                "orders stay NEW; holds, events and webhooks go on"
            )
        await stop.wait()
        log.info("stopping: finishing the orders in hand")


def run(settings: Settings, listening: socket.socket | None = None) -> int:
    """Run until SIGINT/SIGTERM; with ``listening`` (bound by the CLI before anything
    else starts), serve the health routes and the metrics on it."""
    try:
        import uvloop

        uvloop.run(_main(settings, listening))
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(_main(settings, listening))
    finally:
        if listening is not None:
            listening.close()
    return 0
