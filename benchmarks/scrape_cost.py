"""What a scrape of ``/metrics`` costs the server, and what 16 scraping clients cost a
bystander's hot read (issue 15, finding 2).

    .venv/bin/python benchmarks/scrape_cost.py [--pg-url URL] [--scrapes 200] [--metrics-address]
    PYTHONPATH=/tmp/before/src .venv/bin/python benchmarks/scrape_cost.py   # an older tree

Starts ``gophermart`` on a fresh PostgreSQL database, sends some traffic so that the
metrics have series, then: (1) the server's own CPU time (``/proc``) per scrape over
``--scrapes`` sequential scrapes, less what it spends idle over the same time (and, to
compare, per ``GET /livez`` the same way); (2) one bystander reading its balance in a
loop for 5 s, alone and then while 16 threads scrape as fast as they can: its median
latency both ways. With ``--metrics-address`` the scrapes go to ``GOPHERMART_METRICS_ADDRESS``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import start_service
from tests.ports import free_port


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bystander(url: str, headers: dict[str, str], seconds: float) -> list[float]:
    latencies = []
    with httpx.Client(base_url=url, headers=headers) as client:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            started = time.perf_counter()
            assert client.get("/api/user/balance").status_code == 200
            latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def scraping(url: str, stop: threading.Event) -> int:
    n = 0
    with httpx.Client() as client:
        while not stop.is_set():
            assert client.get(url + "/metrics", timeout=30).status_code == 200
            n += 1
    return n


def run(database: str, scrapes: int, separate: bool) -> None:
    env = {}
    if separate:
        env["GOPHERMART_METRICS_ADDRESS"] = f"127.0.0.1:{free_port()}"
    svc = start_service(database, env=env)
    metrics_url = "http://" + env["GOPHERMART_METRICS_ADDRESS"] if separate else svc.url
    try:
        with httpx.Client(base_url=svc.url) as client:
            token = client.post(
                "/api/user/register", json={"login": uuid.uuid4().hex[:8], "password": "pw"}
            ).headers["authorization"]
            headers = {"Authorization": token}
            for path in ("/api/user/balance", "/api/user/orders", "/api/user/withdrawals", "/x"):
                for _ in range(50):
                    client.get(path, headers=headers)
        time.sleep(1.5)  # published
        # What the process spends idle (its publisher, its sweeps), to subtract.
        idle_started, idle_cpu = time.monotonic(), cpu_seconds(svc.proc.pid)
        time.sleep(3)
        idle_rate = (cpu_seconds(svc.proc.pid) - idle_cpu) / (time.monotonic() - idle_started)
        with httpx.Client() as client:
            client.get(metrics_url + "/metrics")
            started, before = time.monotonic(), cpu_seconds(svc.proc.pid)
            for _ in range(scrapes):
                client.get(metrics_url + "/metrics")
            spent = cpu_seconds(svc.proc.pid) - before
            spent -= idle_rate * (time.monotonic() - started)
            started, before = time.monotonic(), cpu_seconds(svc.proc.pid)
            for _ in range(scrapes):
                time.sleep(0.01)  # as far apart as paced scrapes
                client.get(svc.url + "/livez")
            livez = cpu_seconds(svc.proc.pid) - before
            livez -= idle_rate * (time.monotonic() - started)
        print(
            f"server CPU per scrape: {spent / scrapes * 1000:.2f} ms (over {scrapes} "
            f"sequential scrapes, idle CPU subtracted; a GET /livez: "
            f"{livez / scrapes * 1000:.2f} ms)"
        )
        alone = statistics.median(bystander(svc.url, headers, 5))
        stop = threading.Event()
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            scrapers = [pool.submit(scraping, metrics_url, stop) for _ in range(16)]
            loaded = statistics.median(bystander(svc.url, headers, 5))
            stop.set()
            total = sum(f.result() for f in scrapers)
        print(
            f"bystander GET /api/user/balance p50: {alone:.2f} ms alone, {loaded:.2f} ms "
            f"while 16 clients scraped ({total / 5:.0f} scrapes/s)"
        )
    finally:
        svc.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--metrics-address", action="store_true")
    args = parser.parse_args()
    import asyncio

    name = f"gm_scrape_{uuid.uuid4().hex[:8]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(args.pg_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        run(args.pg_url.rsplit("/", 1)[0] + f"/{name}", args.scrapes, args.metrics_address)
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
