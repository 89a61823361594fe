"""Latency summaries shared by the runner and the login storm (a separate process)."""

from __future__ import annotations

from collections.abc import Sequence


def percentile_ms(seconds: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of durations in seconds, in milliseconds
    rounded to 0.1; 0.0 for no values."""
    if not seconds:
        return 0.0
    ordered = sorted(seconds)
    rank = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return round(ordered[rank] * 1000, 1)
