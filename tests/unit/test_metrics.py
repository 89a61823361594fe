"""The request tally: what is recorded per request in plain Python is what Prometheus
shows after publishing (counts, cumulative buckets, sums), with bounded labels; and the
scrape: one render and one queue read shared by concurrent scrapes."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gophermart.application.ports import LedgerGauges, QueueDepth, WebhookLag
from gophermart.domain.points import Points
from gophermart.entrypoints.metrics import Metrics, Scraper


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.exposition(None).decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_tallied_requests_become_counts_buckets_and_sums() -> None:
    metrics = Metrics()
    for seconds in (0.0005, 0.001, 0.003, 0.003, 0.2, 42.0):
        metrics.observe_request("/api/user/balance", "GET", 200, seconds)
    metrics.observe_request("/api/user/balance", "GET", 401, 0.002)
    metrics.observe_request("unmatched", "BREW", 404, 0.002)
    got = samples(metrics)  # the scrape publishes first

    def bucket(le: str) -> float:
        labels = (("le", le), ("method", "GET"), ("route", "/api/user/balance"))
        return got[("gophermart_http_request_duration_seconds_bucket", labels)]

    ok = (("method", "GET"), ("route", "/api/user/balance"), ("status", "200"))
    assert got[("gophermart_http_requests_total", ok)] == 6
    assert bucket("0.001") == 2  # 0.0005 and 0.001: "le" includes the bound
    assert bucket("0.0025") == 3  # + the 401's 0.002 (the histogram has no status)
    assert bucket("0.005") == 5
    assert bucket("0.25") == 6
    assert bucket("10.0") == 6
    assert bucket("+Inf") == 7
    total = (
        "gophermart_http_request_duration_seconds_sum",
        (("method", "GET"), ("route", "/api/user/balance")),
    )
    assert got[total] == pytest.approx(0.0005 + 0.001 + 0.003 * 2 + 0.2 + 42.0 + 0.002)
    other = (("method", "OTHER"), ("route", "unmatched"), ("status", "404"))
    assert got[("gophermart_http_requests_total", other)] == 1

    # publishing again adds only what came since
    metrics.observe_request("/api/user/balance", "GET", 200, 0.003)
    assert samples(metrics)[("gophermart_http_requests_total", ok)] == 7


class CountingLoyalty:
    """What the scrape asks of the facade: the queue depth (counted, slow), the pools."""

    def __init__(self) -> None:
        self.reads = 0
        self.container = self.store = self  # loyalty.container.store.lifecycle()

    def lifecycle(self) -> CountingLoyalty:
        return self

    def pool_stats(self) -> list[object]:
        return []

    async def queue_depth(self, _overdue_after: float) -> QueueDepth:
        self.reads += 1
        await asyncio.sleep(0.05)  # a database round trip
        return QueueDepth(due=self.reads, overdue=0, scheduled=0, leased=0)

    async def ledger_gauges(self) -> LedgerGauges:
        return LedgerGauges(holds_open=2, held=Points(150), accounts_owing=1, owed=Points(5))

    async def webhook_lag(self) -> list[WebhookLag]:
        oldest = datetime.now(UTC) - timedelta(seconds=90)
        return [WebhookLag(1, 3, oldest), WebhookLag(2, 0, None)]


async def test_concurrent_scrapes_share_one_render_and_one_queue_read() -> None:
    """Before: every scrape read the queue depth from the database and rendered anew
    (16 clients scraping moved a bystander's p50 from 2.4 to 71 ms)."""
    now = [0.0]
    loyalty = CountingLoyalty()
    scraper = Scraper(Metrics(), loyalty, clock=lambda: now[0])  # type: ignore[arg-type]
    bodies = await asyncio.gather(*(scraper() for _ in range(16)))
    assert loyalty.reads == 1
    assert len(set(bodies)) == 1
    assert b'gophermart_accrual_queue_orders{state="due"} 1.0' in bodies[0]
    assert b"gophermart_holds_open 2.0" in bodies[0]
    assert b"gophermart_held_points 1.5" in bodies[0]
    assert b"gophermart_owed_points 0.05" in bodies[0]
    lag = _sample(bodies[0], 'gophermart_webhook_lag_seconds{endpoint="1"}')
    assert 89 < lag < 120  # the oldest pending event's age
    assert b'gophermart_webhook_lag_seconds{endpoint="2"} 0.0' in bodies[0]  # caught up
    assert b'gophermart_webhook_pending{endpoint="1"} 3.0' in bodies[0]
    now[0] += Scraper.FRESH / 2
    assert await scraper() is bodies[0]  # rendered a moment ago: the same bytes
    now[0] += Scraper.FRESH
    await scraper()  # rendered again, the queue depth still cached
    assert loyalty.reads == 1
    now[0] += Scraper.QUEUE_FRESH
    assert b'state="due"} 2.0' in await scraper()
    assert loyalty.reads == 2


async def test_a_client_scraping_in_a_loop_is_paced() -> None:
    """At most one answer per ``SPACING``: a loop of scrapes waits, it does not take the
    process's CPU from the API."""
    scraper = Scraper(Metrics(), CountingLoyalty())  # type: ignore[arg-type]
    await scraper()
    started = time.monotonic()
    for _ in range(20):
        await scraper()
    assert time.monotonic() - started >= 20 * Scraper.SPACING * 0.9


def _sample(body: bytes, series: str) -> float:
    line = next(x for x in body.decode().splitlines() if x.startswith(series + " "))
    return float(line.rsplit(" ", 1)[1])
