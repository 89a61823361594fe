"""The request tally: what is recorded per request in plain Python is what Prometheus
shows after publishing (counts, cumulative buckets, sums), with bounded labels."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gophermart.entrypoints.metrics import Metrics


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
