"""A login storm: N concurrent loops of POST /api/user/login with correct passwords.

Run by ``benchmarks/run.py`` as a separate process (so its own CPU use is visible as what
it is: another client), while wrk measures GET /api/user/balance. Every login costs the
service one argon2id verification, the most expensive thing it does; the point of the
scenario is to show whether those hashes stall the event loop that serves the reads.

    python benchmarks/login_storm.py --url http://127.0.0.1:PORT --logins FILE \
        --password PW [--concurrency 8] [--duration 20]

Prints one JSON object on stdout when done: logins, per-second rate, status counts,
login latency percentiles, and every login's (CLOCK_MONOTONIC end time, seconds, status)
so that the caller can single out the logins of its own measurement window. The run is
bounded by ``--duration``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from pathlib import Path

import httpx
from stats import percentile_ms


async def storm(
    url: str, logins: list[str], password: str, concurrency: int, duration: float
) -> dict[str, object]:
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    completions: list[tuple[float, float, int]] = []  # (monotonic end, seconds, status)
    started = time.monotonic()
    deadline = started + duration

    async def loop(worker: int, client: httpx.AsyncClient) -> None:
        i = worker
        while time.monotonic() < deadline:
            login = logins[i % len(logins)]
            i += concurrency
            t0 = time.monotonic()
            try:
                r = await client.post(
                    "/api/user/login", json={"login": login, "password": password}
                )
                statuses[str(r.status_code)] += 1
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1
                await asyncio.sleep(0.05)
                continue
            t1 = time.monotonic()
            latencies.append(t1 - t0)
            completions.append((round(t1, 4), round(t1 - t0, 4), r.status_code))

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, timeout=30.0, limits=limits, trust_env=False
    ) as client:
        await asyncio.gather(*(loop(w, client) for w in range(concurrency)))
    elapsed = time.monotonic() - started
    total = sum(statuses.values())
    return {
        "logins": total,
        "duration_s": round(elapsed, 3),
        "per_second": round(total / elapsed, 1) if elapsed > 0 else 0.0,
        "statuses": dict(statuses),
        "p50_ms": percentile_ms(latencies, 50),
        "p99_ms": percentile_ms(latencies, 99),
        "completions": completions,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="service base URL (127.0.0.1 only)")
    parser.add_argument("--logins", required=True, type=Path, help="file: one login per line")
    parser.add_argument("--password", required=True, help="the password every login shares")
    parser.add_argument("--concurrency", type=int, default=8, help="parallel login loops")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds to run")
    args = parser.parse_args()
    logins = [line for line in args.logins.read_text().splitlines() if line]
    if not logins:
        parser.error(f"no logins in {args.logins}")
    result = asyncio.run(storm(args.url, logins, args.password, args.concurrency, args.duration))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
