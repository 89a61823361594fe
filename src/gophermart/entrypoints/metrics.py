"""Prometheus metrics: what the server, its accrual worker and its pools are doing.

``gophermart -w N`` runs N server processes; the scrape of ``/metrics`` (by whichever
process the kernel hands it to) must show them all. prometheus_client's multi-process
mode does that: every process writes its counters to memory-mapped files in one
directory, and the scrape sums the files. The CLI creates that directory for the run
(``PROMETHEUS_MULTIPROC_DIR``) before uvicorn starts the processes, and removes it at
exit (:func:`multiprocess_dir`). Without the variable (an app built in-process, a
test), metrics live in this process's own registry.

Names and meaning are documented in docs/operations.md. Labels are bounded: the route
is Litestar's path *template* (``unmatched`` for a 404), the method one of the API's or
``OTHER``, the status a number: a client cannot invent new series.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import time
from bisect import bisect_left
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gophermart.application.ports import LedgerGauges, QueueDepth, StoreLifecycle, WebhookLag
from gophermart.domain.points import Points

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from gophermart.facade import Gophermart

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
#: An order due for longer than this counts as overdue: nobody is keeping up with it.
OVERDUE_AFTER: Final = 30.0
#: How often each process publishes its pools' state, and its requests.
POOL_SAMPLE_EVERY: Final = 2.0
PUBLISH_EVERY: Final = 1.0
_LATENCY_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
_METHODS: Final = frozenset({"GET", "POST", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"})

log = logging.getLogger("gophermart.metrics")


@contextlib.contextmanager
def multiprocess_dir() -> Iterator[Path]:
    """A fresh directory for this run's metric files, exported to the server processes
    in ``PROMETHEUS_MULTIPROC_DIR`` and removed at exit (stale files from an earlier run
    would be summed into this one's counters)."""
    path = Path(tempfile.mkdtemp(prefix="gophermart-metrics-"))
    previous = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = str(path)
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = previous
        shutil.rmtree(path, ignore_errors=True)


class Metrics:
    """This process's metrics. Create one per process (:func:`process_metrics`)."""

    def __init__(self) -> None:
        self.directory = os.environ.get(MULTIPROC_ENV) or None
        if self.directory:
            # prometheus_client picks its value store when first imported; with -w 1 the
            # CLI imported it before it set the variable, so pick again.
            values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
        # Multi-process: the metrics belong to no registry; a scrape reads the files.
        own: CollectorRegistry | None = None if self.directory else CollectorRegistry()
        self._own_registry = own
        r: Any = own
        self._declare_api(r)
        self._declare_worker(r)
        self._declare_ledger(r)
        self._declare_pools(r)
        self.webhooks = WebhookCounters(r)
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._tally: dict[tuple[str, str, int], list[Any]] = {}

    def _declare_api(self, r: Any) -> None:
        """Requests by route template, method and status; login refusals."""
        self.http_requests = Counter(
            "gophermart_http_requests",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "gophermart_http_request_duration_seconds",
            "Time from the request's arrival to the end of its answer, by route and method",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.login_throttled = Counter(
            "gophermart_login_throttled",
            "Login attempts refused with 429 by the brute-force throttle",
            registry=r,
        )

    def _declare_worker(self, r: Any) -> None:
        """The accrual worker: polls by outcome, credits, parking, the pause and rate."""
        self.polls = Counter(
            "gophermart_accrual_polls",
            "Answers from the accrual system, by outcome (200_<status>, 204, 429, 5xx, "
            "timeout, network, bad_answer, http_other)",
            ["outcome"],
            registry=r,
        )
        self.credits = Counter(
            "gophermart_accrual_credits", "PROCESSED orders credited to balances", registry=r
        )
        self.credited_points = Counter(
            "gophermart_accrual_credited_points", "Points credited to balances", registry=r
        )
        self.lease_expired = Counter(
            "gophermart_accrual_lease_expired",
            "Orders claimed after a previous claim's lease ran out (crash pickups)",
            registry=r,
        )
        self.parked = Counter(
            "gophermart_accrual_parked",
            "Orders parked because their credit cannot be applied (past what a balance holds)",
            registry=r,
        )
        self.paused_until = Gauge(
            "gophermart_accrual_paused_until_seconds",
            "Unix time until which the accrual system asked us to pause (429); in the past "
            "when not paused",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.rate_limit = Gauge(
            "gophermart_accrual_rate_limit_per_minute",
            "The requests-per-minute limit learnt from the accrual system's 429 (0: none)",
            registry=r,
            multiprocess_mode="livemax",
        )

    def _declare_ledger(self, r: Any) -> None:
        """The ledger's events (its open positions are read at scrape time)."""
        self.holds_expired = Counter(
            "gophermart_holds_expired",
            "Holds not captured by their expires_at, released by the service",
            registry=r,
        )
        self.reversals = Counter(
            "gophermart_reversals", "Accrual reversals made (orders taken back)", registry=r
        )
        self.reversed_points = Counter(
            "gophermart_reversed_points", "Points taken back by accrual reversals", registry=r
        )
        self.reversed_owed_points = Counter(
            "gophermart_reversed_owed_points",
            "Of the points reversed, those beyond the balance: recorded as owed",
            registry=r,
        )
        self.events_written = Counter(
            "gophermart_events_written",
            "Events that became readable in the feed (PostgreSQL: numbered by this "
            "process's sequencer runs; elsewhere: the feed's growth seen by the worker)",
            registry=r,
        )

    def _declare_pools(self, r: Any) -> None:
        """Database pools: connections by state, their ceiling, requests waiting."""
        self.pool_connections = Gauge(
            "gophermart_db_pool_connections",
            "Database connections of the pools, by pool and state (in_use, idle)",
            ["pool", "state"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.pool_max = Gauge(
            "gophermart_db_pool_max_connections",
            "The most connections the pools may open",
            ["pool"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.pool_waiting = Gauge(
            "gophermart_db_pool_waiting",
            "Requests waiting for a pooled connection right now (PostgreSQL pool)",
            ["pool"],
            registry=r,
            multiprocess_mode="livesum",
        )

    # --- HTTP: recorded per request in plain Python, published every second ---------
    #
    # A prometheus_client increment in multi-process mode takes a lock and writes a
    # memory-mapped file: three of them per request (count, bucket, sum) cost ~3 us,
    # about 2 % of a hot read. Tallying in a dict and publishing the sums once a second
    # (and before every scrape and at shutdown) costs a fraction of that; a scrape may
    # see other processes' last second a little late.

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        tally = self._tally.get(key)
        if tally is None:
            tally = self._tally[key] = [0, 0.0, [0] * (len(_LATENCY_BUCKETS) + 1)]
        tally[0] += 1
        tally[1] += seconds
        tally[2][bisect_left(_LATENCY_BUCKETS, seconds)] += 1

    def publish(self) -> None:
        """Move the requests tallied since the last call into the Prometheus metrics."""
        tallies, self._tally = self._tally, {}
        for (route, method, status), (count, total, buckets) in tallies.items():
            children = self._children.get((route, method, status))
            if children is None:
                label = method if method in _METHODS else "OTHER"
                children = (
                    self.http_requests.labels(route, label, str(status)),
                    self.http_duration.labels(route, label),
                )
                self._children[(route, method, status)] = children
            requests, duration = children
            requests.inc(count)
            bucket_values = getattr(duration, "_buckets", None)
            sum_value = getattr(duration, "_sum", None)
            if bucket_values is None or sum_value is None:  # pragma: no cover - old client
                for index, n in enumerate(buckets):
                    bound = _LATENCY_BUCKETS[min(index, len(_LATENCY_BUCKETS) - 1)]
                    for _ in range(n):
                        duration.observe(bound)
                continue
            # prometheus_client keeps cumulative buckets itself: one value per bucket,
            # counting observations whose bucket is exactly that one.
            for index, n in enumerate(buckets):
                if n:
                    bucket_values[index].inc(n)
            sum_value.inc(total)

    # --- the scrape ----------------------------------------------------------------

    def exposition(self, queue: QueueDepth | None, *read: Collector) -> bytes:
        """The scrape's text: this process's metrics (or every process's), the queue, and
        ``read``: the other figures read from the database for this scrape."""
        self.publish()
        registry = CollectorRegistry()
        if self.directory:
            multiprocess.MultiProcessCollector(registry, path=self.directory)  # type: ignore[no-untyped-call]
        else:
            assert self._own_registry is not None
            registry.register(_Forward(self._own_registry))
        for collector in (_QueueCollector(queue), *read):
            registry.register(collector)
        return generate_latest(registry)

    def process_exited(self) -> None:
        """Publish the last requests; drop this process's live gauges (pools, pause)
        from the aggregate."""
        self.publish()
        if self.directory:
            multiprocess.mark_process_dead(os.getpid(), self.directory)  # type: ignore[no-untyped-call]


class _Forward(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        return self._registry.collect()


class _QueueCollector(Collector):
    """The accrual queue, read from the database at scrape time: fleet-wide, exact, and
    one cheap aggregate per scrape rather than a query per process and interval."""

    def __init__(self, queue: QueueDepth | None) -> None:
        self._queue = queue

    def collect(self) -> Iterable[Metric]:
        orders = GaugeMetricFamily(
            "gophermart_accrual_queue_orders",
            "Non-final orders by state: due (waiting for a worker), overdue (due for over "
            f"{OVERDUE_AFTER:.0f} s), leased (a worker is polling them), scheduled (backing "
            "off or paused)",
            labels=["state"],
        )
        up = GaugeMetricFamily(
            "gophermart_accrual_queue_scrape_ok",
            "1 if the queue depth could be read from the database during this scrape",
        )
        if self._queue is not None:
            orders.add_metric(["due"], self._queue.due)
            orders.add_metric(["overdue"], self._queue.overdue)
            orders.add_metric(["scheduled"], self._queue.scheduled)
            orders.add_metric(["leased"], self._queue.leased)
            yield orders
        up.add_metric([], 1 if self._queue is not None else 0)
        yield up


class _LedgerCollector(Collector):
    """The ledger's open positions, read from the database at scrape time with the queue
    depth (partial indexes: what is open, not the whole ledger)."""

    def __init__(self, gauges: LedgerGauges) -> None:
        self._gauges = gauges

    def collect(self) -> Iterable[Metric]:
        g = self._gauges
        for name, text, value in (
            (
                "gophermart_holds_open",
                "Holds open now (points reserved, not yet captured)",
                g.holds_open,
            ),
            ("gophermart_held_points", "Points kept by the open holds", g.held.as_decimal()),
            (
                "gophermart_accounts_owing",
                "Accounts that owe points (reversals beyond the balance)",
                g.accounts_owing,
            ),
            (
                "gophermart_owed_points",
                "Points owed, to be paid off from later credits",
                g.owed.as_decimal(),
            ),
        ):
            family = GaugeMetricFamily(name, text)
            family.add_metric([], float(value))
            yield family


class WebhookCounters:
    """The delivery worker's counters (its backlog is read at scrape time)."""

    def __init__(self, r: Any) -> None:
        self.attempts = Counter(
            "gophermart_webhook_attempts",
            "Webhook POSTs, by outcome (2xx, http_3xx, http_4xx, http_5xx, timeout, network)",
            ["outcome"],
            registry=r,
        )
        self.failed = Counter(
            "gophermart_webhook_deliveries_failed",
            "Webhook deliveries given up after their retry window (kept, replayable)",
            registry=r,
        )


class PrometheusWebhookMetrics:
    """The WebhookMetrics port as Prometheus counters."""

    def __init__(self, counters: WebhookCounters) -> None:
        self._c = counters
        self._outcomes: dict[str, Any] = {}

    def attempted(self, outcome: str) -> None:
        child = self._outcomes.get(outcome)
        if child is None:
            child = self._outcomes[outcome] = self._c.attempts.labels(outcome)
        child.inc()

    def failed(self) -> None:
        self._c.failed.inc()


class _WebhookLagCollector(Collector):
    """Each live endpoint's backlog, read from the database at scrape time (one
    aggregate over the pending deliveries' partial index)."""

    def __init__(self, lags: Sequence[WebhookLag]) -> None:
        self._lags = lags

    def collect(self) -> Iterable[Metric]:
        lag = GaugeMetricFamily(
            "gophermart_webhook_lag_seconds",
            "Age of the oldest event still undelivered to the endpoint (0: caught up)",
            labels=["endpoint"],
        )
        pending = GaugeMetricFamily(
            "gophermart_webhook_pending",
            "Deliveries pending for the endpoint (due, leased or backing off)",
            labels=["endpoint"],
        )
        now = time.time()
        for item in self._lags:
            oldest = item.oldest_event_at
            age = max(0.0, now - oldest.timestamp()) if oldest is not None else 0.0
            lag.add_metric([str(item.endpoint_id)], age)
            pending.add_metric([str(item.endpoint_id)], item.pending)
        yield lag
        yield pending


class PrometheusEventMetrics:
    """The accrual worker's events (the ``EventMetrics`` port) as Prometheus metrics."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics
        self._outcomes: dict[str, Any] = {}

    def polled(self, outcome: str) -> None:
        child = self._outcomes.get(outcome)
        if child is None:
            child = self._outcomes[outcome] = self._m.polls.labels(outcome)
        child.inc()

    def credited(self, points: Points) -> None:
        self._m.credits.inc()
        self._m.credited_points.inc(float(points.as_decimal()))

    def rate_limited(self, until: datetime, per_minute: int | None) -> None:
        self._m.paused_until.set(until.timestamp())
        self._m.rate_limit.set(per_minute or 0)

    def lease_expired(self, count: int) -> None:
        self._m.lease_expired.inc(count)

    def parked(self) -> None:
        self._m.parked.inc()

    def holds_expired(self, count: int) -> None:
        self._m.holds_expired.inc(count)

    def reversed(self, points: Points, owed: Points) -> None:
        self._m.reversals.inc()
        self._m.reversed_points.inc(float(points.as_decimal()))
        if owed.cents:
            self._m.reversed_owed_points.inc(float(owed.as_decimal()))

    def events_written(self, count: int) -> None:
        self._m.events_written.inc(count)


_PROCESS_METRICS: Metrics | None = None


def process_metrics() -> Metrics:
    """This process's :class:`Metrics`, created on first use (metric names are global)."""
    global _PROCESS_METRICS
    if _PROCESS_METRICS is None:
        _PROCESS_METRICS = Metrics()
    return _PROCESS_METRICS


# --- pools: each process publishes its own, every few seconds ----------------------


def _sample_pools(metrics: Metrics, loyalty: Gophermart) -> None:
    lifecycle: StoreLifecycle = loyalty.container.store.lifecycle()
    for pool in lifecycle.pool_stats():
        metrics.pool_connections.labels(pool.name, "in_use").set(pool.in_use)
        metrics.pool_connections.labels(pool.name, "idle").set(pool.idle)
        metrics.pool_max.labels(pool.name).set(pool.size_max)
        if pool.waiting is not None:
            metrics.pool_waiting.labels(pool.name).set(pool.waiting)


async def publish_forever(metrics: Metrics, loyalty: Gophermart) -> None:
    """Each second: publish the requests tallied; every few seconds: the pools."""
    last_pools = float("-inf")
    while True:
        try:
            metrics.publish()
            if time.monotonic() - last_pools >= POOL_SAMPLE_EVERY:
                last_pools = time.monotonic()
                _sample_pools(metrics, loyalty)
        except Exception:  # metrics must never take the server down
            log.debug("publishing metrics failed", exc_info=True)
        await asyncio.sleep(PUBLISH_EVERY)


#: What a scrape reads from the database: the accrual queue, the ledger's open
#: positions, the webhooks' backlog (each None when it could not be read).
_StoreFigures = tuple[QueueDepth | None, LedgerGauges | None, "Sequence[WebhookLag] | None"]


class Scraper:
    """This process's answer to ``GET /metrics``: cheap however often it is asked.

    A render (the metric files read and summed, the text written: ~1.5 ms of CPU with a
    hundred series, more with more routes) is served again for :data:`FRESH` seconds.
    The queue depth, the one database round trip of a scrape, is read at most once per
    :data:`QUEUE_FRESH` seconds. Scrapes are answered one at a time, at most one per
    :data:`SPACING` seconds: a scraper in a loop waits (no CPU) instead of taking the
    process's time from the API. Before, 16 clients scraping in a loop each paid a
    render and a database read, and a bystander's hot read waited behind them (issue 15).
    """

    #: Seconds a render is served again: the requests are published once a second anyway.
    FRESH: Final = 1.0
    #: Seconds the queue depth is reused: an order is overdue after 30 s, so a few
    #: seconds' lag changes no alert.
    QUEUE_FRESH: Final = 5.0
    #: At most 100 scrapes a second per process: plenty for any number of Prometheus
    #: servers, and a bound on what a client scraping in a loop can take.
    SPACING: Final = 0.01

    def __init__(
        self,
        metrics: Metrics,
        loyalty: Gophermart,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._metrics = metrics
        self._loyalty = loyalty
        self._clock = clock
        self._body: tuple[float, bytes] | None = None
        self._queue: tuple[float, _StoreFigures] | None = None
        self._turn = asyncio.Lock()
        self._answered = float("-inf")

    async def __call__(self) -> bytes:
        async with self._turn:  # one at a time: scrapes arriving together share a render
            wait = self._answered + self.SPACING - self._clock()
            if wait > 0:
                await asyncio.sleep(wait)
            body = self._body
            if body is None or self._clock() - body[0] >= self.FRESH:
                body = (self._clock(), await self._render())
                self._body = body
            self._answered = self._clock()
            return body[1]

    async def _render(self) -> bytes:
        started = time.monotonic()
        queue, ledger, lags = await self._store_figures()
        _sample_pools(self._metrics, self._loyalty)
        read: list[Collector] = [] if ledger is None else [_LedgerCollector(ledger)]
        read += [] if lags is None else [_WebhookLagCollector(lags)]
        body = self._metrics.exposition(queue, *read)
        log.debug("metrics rendered in %.1f ms", (time.monotonic() - started) * 1000)
        return body

    async def _store_figures(self) -> _StoreFigures:
        cached = self._queue
        if cached is not None and self._clock() - cached[0] < self.QUEUE_FRESH:
            return cached[1]
        figures: _StoreFigures = (None, None, None)
        try:
            figures = await asyncio.wait_for(self._read_store_figures(), timeout=2.0)
        except Exception as exc:  # the database may be down: the other metrics still count
            log.warning("metrics: cannot read the accrual queue depth: %s", exc)
        self._queue = (self._clock(), figures)  # a failure too: no retry on every scrape
        return figures

    async def _read_store_figures(self) -> _StoreFigures:
        return (
            await self._loyalty.queue_depth(OVERDUE_AFTER),
            await self._loyalty.ledger_gauges(),
            await self._loyalty.webhook_lag(),
        )


# --- one process's wiring: the server's processes and a standalone worker alike ------


def instrument(loyalty: Gophermart) -> tuple[Metrics, Scraper]:
    """This process's metrics, with ``loyalty``'s worker reporting to them (call it
    before the worker starts), and the scrape that serves them."""
    from dependency_injector import providers

    metrics = process_metrics()
    loyalty.container.event_metrics.override(providers.Object(PrometheusEventMetrics(metrics)))
    loyalty.container.webhook_metrics.override(
        providers.Object(PrometheusWebhookMetrics(metrics.webhooks))
    )
    return metrics, Scraper(metrics, loyalty)


@contextlib.asynccontextmanager
async def publishing(metrics: Metrics, loyalty: Gophermart) -> AsyncIterator[None]:
    """Publish the requests every second and the pools every few while the block runs;
    at its end, withdraw this process's live gauges from the aggregate."""
    task = asyncio.create_task(publish_forever(metrics, loyalty), name="metrics-publisher")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        metrics.process_exited()
