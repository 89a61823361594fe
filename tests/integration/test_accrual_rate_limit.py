"""End to end over real sockets: the accrual simulator's rate limit, obeyed by the service.

The simulator counts a rolling minute, so these scenarios take as long as the limits they
prove (one of them more than a minute): a module of their own, so that pytest-xdist runs
it beside the rest of the suite.
"""

from __future__ import annotations

import itertools
import time
from decimal import Decimal
from pathlib import Path

import pytest

from tests.integration.simulator import running_simulator
from tests.integration.test_accrual_e2e import (
    ZERO,
    expected_points,
    new_number,
    running_service,
    shopper,
    wait_for,
)

# --- 5 and 6: the accrual system's rate limit ---------------------------------------


def _after_pause(times: list[float], limit: int, retry_after: float) -> tuple[float, list[float]]:
    """The arrival time of the first 429 (the (limit+1)-th GET: the limiter passes the
    first ``limit``) and the GETs that arrived after the pause it asked for."""
    first_429 = times[limit]
    return first_429, [t for t in times if t >= first_429 + retry_after - 0.05]


def _in_pause(times: list[float], first_429: float, retry_after: float) -> list[float]:
    """GETs that arrived during the pause, sparing 0.1 s for those already in flight."""
    return [t for t in times if first_429 + 0.1 < t < first_429 + retry_after - 0.05]


def _busiest_minute(times: list[float]) -> int:
    return max(
        (sum(1 for u in times if t <= u < t + 60.0) for t in times),
        default=0,
    )


@pytest.mark.slow
def test_rate_limit_pause_is_obeyed_then_requests_keep_within_n_per_minute(
    postgres_uri: str, tmp_path: Path
) -> None:
    limit, retry_after = 5, 3
    with (
        running_simulator(tmp_path, rate_limit=limit, retry_after=retry_after) as sim,
        running_service(postgres_uri, accrual=sim.url) as svc,
        shopper(svc.url) as grace,
    ):
        # One order more than the limit: the simulator's window is a rolling 60 s, so the
        # last one can only pass once the first five leave it (> 60 s after them).
        accruals = {new_number(): f"{i}.5" for i in range(1, limit + 2)}
        for number, accrual in accruals.items():
            sim.register_fixed(number, "PROCESSED", accrual)
        for number in accruals:
            assert grace.upload(number) == 202

        started = time.monotonic()
        violation = ""
        while time.monotonic() - started < 100:
            times = sim.stats()["request_times"]
            if len(times) > limit:
                first_429, after = _after_pause(times, limit, retry_after)
                if _in_pause(times, first_429, retry_after):
                    violation = "requests during the pause"
                    break
                if _busiest_minute(after) > limit:
                    violation = f"more than {limit} requests in a minute after the pause"
                    break
            listing = grace.orders()
            if all(listing[n]["status"] == "PROCESSED" for n in accruals):
                break
            time.sleep(0.5)

        stats = sim.stats()
        times = stats["request_times"]
        first_429, after = _after_pause(times, limit, retry_after)
        in_flight = sum(1 for t in times if first_429 <= t <= first_429 + 0.1)
        gaps = [b - a for a, b in itertools.pairwise(after)]
        print(
            f"\n5/min, Retry-After {retry_after}: {stats['requests']} requests, "
            f"{stats['throttled']} throttled ({in_flight} in flight with the first, "
            f"{stats['throttled'] - in_flight} after it); after the pause: {len(after)} requests, "
            f"busiest minute {_busiest_minute(after)}, gaps {[round(g, 2) for g in gaps]}; "
            f"took {time.monotonic() - started:.1f}s"
        )
        assert stats["throttled"] >= 1
        assert not _in_pause(times, first_429, retry_after), "requests arrived during the pause"
        assert _busiest_minute(after) <= limit, (violation, [round(t - times[0], 2) for t in times])
        listing = grace.orders()
        assert {n: listing[n]["status"] for n in accruals} == dict.fromkeys(accruals, "PROCESSED")
        total = sum((expected_points(a) for a in accruals.values()), Decimal(0))
        assert grace.balance() == (total, ZERO)


@pytest.mark.slow
def test_while_the_accrual_system_keeps_refusing_every_429_pauses_the_fleet_again(
    database_uri: str, tmp_path: Path
) -> None:
    """The simulator's window stays full for a minute after 120 requests: each paced
    request after the pause is refused, and each refusal pauses the whole client for
    Retry-After again (SPEC), so nothing is sent during any pause. (Pacing to the
    announced rate once requests pass: test_accrual_faults.py.)"""
    limit, retry_after = 120, 3
    with (
        running_simulator(tmp_path, rate_limit=limit, retry_after=retry_after) as sim,
        running_service(database_uri, accrual=sim.url) as svc,
        shopper(svc.url) as heidi,
    ):
        numbers = [new_number() for _ in range(limit + 10)]
        for number in numbers:
            sim.register_fixed(number, "PROCESSED", "1")
        for number in numbers:
            assert heidi.upload(number) == 202

        first_429 = wait_for(
            lambda: (lambda t: t[limit] if len(t) > limit else None)(sim.stats()["request_times"]),
            "the first 429",
        )
        wait_for(
            lambda: sim.stats()["request_times"][-1] > first_429 + 2 * retry_after,
            "requests after the pause",
            timeout=30,
            every=0.25,
        )
        time.sleep(2 * retry_after)
        stats = sim.stats()
        times = stats["request_times"]
        in_flight = sum(1 for t in times if first_429 <= t <= first_429 + 0.1)
        _, after = _after_pause(times, limit, retry_after)
        gaps = [b - a for a, b in itertools.pairwise(after)]
        print(
            f"\n{limit}/min, Retry-After {retry_after}: {stats['requests']} requests, "
            f"{stats['throttled']} throttled ({in_flight} in flight with the first, "
            f"{stats['throttled'] - in_flight} after it); after the pause {len(after)} "
            f"requests, gaps {[round(g, 3) for g in gaps]}"
        )
        assert not _in_pause(times, first_429, retry_after), "requests arrived during the pause"
        assert len(after) >= 2  # the fleet keeps asking...
        assert min(gaps) >= retry_after - 0.1, gaps  # ...but never during a pause
        listing = heidi.orders()
        processed = [n for n in numbers if listing[n]["status"] == "PROCESSED"]
        assert len(processed) == limit  # exactly the ones the simulator let through
        assert heidi.balance() == (Decimal(limit), ZERO)
