"""``gophermart worker``: the accrual worker alone, for scaling it out.

Any number of these (and of server processes with their in-process workers) can run
against one PostgreSQL database: orders are leased with ``FOR UPDATE SKIP LOCKED``,
uploads wake every worker through LISTEN/NOTIFY, and the 429 pause is shared.

With ``--address`` (``GOPHERMART_WORKER_ADDRESS``) it also serves ``/livez``, ``/readyz``
and, unless ``GOPHERMART_METRICS=0``, ``/metrics`` (the worker's counters, the queue
gauges and its pools), so an orchestrator can probe it and Prometheus can scrape it like
a server process. Without it, it serves no HTTP at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import uvicorn
from dependency_injector import providers

from gophermart.bootstrap import prepare
from gophermart.facade import Gophermart
from gophermart.settings import ConfigError, Settings, parse_listen_address

log = logging.getLogger("gophermart.worker")

ADDRESS_SETTING = "GOPHERMART_WORKER_ADDRESS"


class _Server(uvicorn.Server):
    """uvicorn inside the worker's loop: the worker's own signal handlers stop it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def _http_face(settings: Settings, loyalty: Gophermart) -> AsyncIterator[None]:
    """Serve the health routes (and the metrics) on ``settings.worker_address`` while
    the block runs. Enter it before the worker starts: the worker reports to the metrics
    installed here."""
    from gophermart.entrypoints.http.app import health_app
    from gophermart.entrypoints.metrics import (
        PrometheusWorkerMetrics,
        process_metrics,
        publish_forever,
        scrape,
    )
    from gophermart.entrypoints.observe import Observed

    assert settings.worker_address is not None
    host, port = parse_listen_address(settings.worker_address, ADDRESS_SETTING)
    listening = _listen(host, port)
    app: Any = Observed(health_app(loyalty), access_log_enabled=settings.access_log)
    background: list[asyncio.Task[None]] = []
    metrics = None
    if settings.metrics:
        metrics = process_metrics()
        loyalty.container.worker_metrics.override(
            providers.Object(PrometheusWorkerMetrics(metrics))
        )

        async def scrape_metrics() -> bytes:
            assert metrics is not None
            return await scrape(metrics, loyalty)

        app = Observed(
            health_app(loyalty), scrape=scrape_metrics, access_log_enabled=settings.access_log
        )
    server = _Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            lifespan="off",  # ``loyalty`` is opened and closed by the worker
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=5,
        )
    )
    background.append(asyncio.create_task(server.serve([listening]), name="worker-http"))
    if metrics is not None:
        background.append(
            asyncio.create_task(publish_forever(metrics, loyalty), name="metrics-publisher")
        )
    try:
        log.info("worker health and metrics on http://%s:%d", host, port)
        yield
    finally:
        server.should_exit = True
        for task in background[1:]:
            task.cancel()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if metrics is not None:
            metrics.process_exited()
        listening.close()


def _listen(host: str, port: int) -> socket.socket:
    """Bound and listening before the worker starts: a port taken meanwhile (the CLI
    checked it first) is one clear line, not a server failing later in the background."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"{ADDRESS_SETTING}: cannot listen on {host}:{port}: {exc.strerror}"
        ) from None
    sock.setblocking(False)
    return sock


async def _main(settings: Settings) -> None:
    settings = await prepare(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loyalty = Gophermart.from_settings(settings, migrate=False)
    face = (
        _http_face(settings, loyalty)
        if settings.worker_address is not None
        else contextlib.nullcontext()
    )
    async with loyalty, face, loyalty.running_worker():
        log.info("accrual worker running against %s", settings.accrual_address)
        await stop.wait()
        log.info("stopping: finishing the orders in hand")


def run(settings: Settings) -> int:
    try:
        import uvloop

        uvloop.run(_main(settings))
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(_main(settings))
    return 0
