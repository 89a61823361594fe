"""What the request id, the metrics and the access line cost per request, in-process.

    .venv/bin/python benchmarks/observe_micro.py [--requests 20000] [--rounds 5]

Drives ``GET /api/user/balance`` through the standalone ASGI app (in-memory backend, a
real token) with no server and no socket, so what differs between the variants is only
the wrapper of entrypoints/observe.py: bare app; wrapper without metrics or access log;
with metrics (prometheus_client in multi-process mode, as `gophermart` runs it); with
metrics and the access line (text, written to /dev/null). Prints the median µs per request
over the rounds, in CPU time of this process. benchmarks/observe_pairs.py measures the
same through real servers; this one is steadier on a busy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import tempfile
import time
from typing import Any

os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="observe-micro-"))

from gophermart import Gophermart
from gophermart.entrypoints.http.app import http_app
from gophermart.entrypoints.logs import configure_logging
from gophermart.entrypoints.metrics import Metrics
from gophermart.entrypoints.observe import Observed


async def _drive(app: Any, token: str, n: int) -> float:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/api/user/balance",
        "raw_path": b"/api/user/balance",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"bench"), (b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_message: Any) -> None:
        return None

    started = time.process_time()  # this process's CPU: other work on the machine is not ours
    for _ in range(n):
        await app(dict(scope), receive, send)
    return (time.process_time() - started) / n * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    configure_logging("INFO", "text")
    logging.getLogger().handlers[0].setStream(open(os.devnull, "w"))  # type: ignore[attr-defined]  # noqa: SIM115
    loyalty = Gophermart.in_memory(secret="s" * 40)
    app = http_app(loyalty)
    async with loyalty:
        token = (await loyalty.register("bench", "bench password")).token
        metrics = Metrics()
        variants = {
            "bare app": app,
            "request id": Observed(app, access_log_enabled=False),
            "+ metrics": Observed(app, metrics=metrics, access_log_enabled=False),
            "+ metrics + access line": Observed(app, metrics=metrics, access_log_enabled=True),
        }
        results: dict[str, list[float]] = {name: [] for name in variants}
        await _drive(app, token, 2000)  # warm-up
        for _ in range(args.rounds):
            for name, variant in variants.items():  # interleaved: drift hits all alike
                results[name].append(await _drive(variant, token, args.requests))
    base = statistics.median(results["bare app"])
    for name, samples in results.items():
        median = statistics.median(samples)
        print(f"{name:26s} {median:7.1f} µs/request  (+{median - base:5.1f} µs)")


if __name__ == "__main__":
    asyncio.run(main())
