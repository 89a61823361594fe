"""Upload -> PROCESSED latency through the accrual worker, with an instant simulator.

    .venv/bin/python benchmarks/accrual_latency.py [--db sqlite|postgres|both]
        [--single 20] [--burst 300] [--rounds 3] [--service-src DIR]

Starts ``gophermart accrual-sim`` (answers at once, no rate limit) and one
``gophermart`` process with its in-process worker on a throwaway database, registers
one shopper, then measures, as a client sees it (polling ``GET /api/user/orders``):

* **single**: ``--single`` orders one after another, each from its ``202`` to the first
  listing that shows it PROCESSED (polled every 5 ms); the median and the maximum;
* **burst**: ``--burst`` orders uploaded at once (16 uploads in flight), each order's time
  from its ``202`` to the first listing showing it PROCESSED (polled every 20 ms); the
  median and p95 per order, and the time until the last one is final; ``--rounds`` bursts.

``--service-src DIR`` runs the ``gophermart`` package in DIR instead of the installed one
(``git archive <commit> src | tar -x -C /tmp/before``), so one harness measures before and
after. All traffic goes to 127.0.0.1. Not part of the test run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from stats import percentile_ms

HOST = "127.0.0.1"
PG_ADMIN = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def luhn_number(prefix: str) -> str:
    digits = [int(c) for c in prefix]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return prefix + str((10 - total % 10) % 10)


def env_for(src: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOPHERMART_")}
    for name in ("DATABASE_URI", "ACCRUAL_SYSTEM_ADDRESS", "RUN_ADDRESS"):
        env.pop(name, None)
    if src:
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    env["GOPHERMART_SECRET"] = "bench-secret-" + "x" * 40
    return env


@contextlib.contextmanager
def process(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def wait_up(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: exited {proc.returncode}\n{log.read_text()[-3000:]}")
        try:
            httpx.get(url, timeout=0.5)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not come up within {timeout}s")


@contextlib.contextmanager
def database(kind: str, tmp: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'bench.db'}"
        return
    name = f"gophermart_lat_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        base = PG_ADMIN.rsplit("/", 1)[0]
        yield f"{base}/{name}?sslmode=disable"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


class Bench:
    def __init__(self, svc: str, sim: str) -> None:
        self.sim = httpx.AsyncClient(base_url=sim, timeout=30, trust_env=False)
        self.svc = httpx.AsyncClient(
            base_url=svc,
            timeout=30,
            trust_env=False,
            limits=httpx.Limits(max_connections=32),
        )
        self.salt = f"{random.SystemRandom().randrange(10**6):06d}"
        self.serial = 0
        self.transport_retries = 0

    async def login(self) -> None:
        r = await self.svc.post(
            "/api/user/register",
            json={"login": f"bench-{uuid.uuid4().hex[:10]}", "password": "pw-123456"},
        )
        r.raise_for_status()
        self.svc.headers["Authorization"] = r.headers["authorization"]
        self.svc.cookies.clear()

    async def new_order(self) -> str:
        self.serial += 1
        number = luhn_number(f"5{self.salt}{self.serial:07d}")
        body = f'{{"order": "{number}", "status": "PROCESSED", "accrual": 1}}'
        r = await self.sim.post(
            "/__sim/orders", content=body, headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 202, r.text
        return number

    async def upload(self, number: str) -> float:
        for attempt in (1, 2):
            try:
                r = await self.svc.post(
                    "/api/user/orders", content=number, headers={"Content-Type": "text/plain"}
                )
                break
            except httpx.TransportError:
                # A keep-alive connection the server closed just as we reused it; an
                # upload is idempotent (a repeat answers 200), so send it once more.
                if attempt == 2:
                    raise
                self.transport_retries += 1
        assert r.status_code in (200, 202), (r.status_code, r.text)
        return time.monotonic()

    async def processed(self) -> set[str]:
        r = await self.svc.get("/api/user/orders")
        if r.status_code == 204:
            return set()
        return {o["number"] for o in r.json() if o["status"] == "PROCESSED"}

    async def single(self, count: int) -> list[float]:
        delays = []
        for _ in range(count):
            number = await self.new_order()
            accepted = await self.upload(number)
            while number not in await self.processed():
                if time.monotonic() - accepted > 30:
                    raise SystemExit(f"order {number} not PROCESSED within 30 s")
                await asyncio.sleep(0.005)
            delays.append(time.monotonic() - accepted)
        return delays

    async def burst(self, count: int) -> tuple[list[float], float]:
        numbers = [await self.new_order() for _ in range(count)]
        gate = asyncio.Semaphore(16)
        accepted: dict[str, float] = {}

        async def one(number: str) -> None:
            async with gate:
                accepted[number] = await self.upload(number)

        started = time.monotonic()
        uploads = asyncio.gather(*(one(n) for n in numbers))
        done: dict[str, float] = {}
        while len(done) < count:
            seen = await self.processed()
            now = time.monotonic()
            for n in seen:
                if n in accepted and n not in done:
                    done[n] = now
            if now - started > 120:
                raise SystemExit(f"burst: only {len(done)} of {count} PROCESSED after 120 s")
            await asyncio.sleep(0.02)
        await uploads
        return [done[n] - accepted[n] for n in numbers], max(done.values()) - started

    async def aclose(self) -> None:
        await self.sim.aclose()
        await self.svc.aclose()


async def measure(svc: str, sim: str, single: int, burst: int, rounds: int) -> dict[str, Any]:
    bench = Bench(svc, sim)
    try:
        await bench.login()
        await bench.single(3)  # warm-up: connections, caches
        singles = await bench.single(single)
        bursts = []
        for _ in range(rounds):
            per_order, last = await bench.burst(burst)
            bursts.append(
                {
                    "median_ms": round(statistics.median(per_order) * 1000, 1),
                    "p95_ms": percentile_ms(per_order, 95),
                    "all_final_s": round(last, 2),
                }
            )
            await asyncio.sleep(1.0)
    finally:
        await bench.aclose()
    return {
        "single_median_ms": round(statistics.median(singles) * 1000, 1),
        "single_max_ms": round(max(singles) * 1000, 1),
        "burst": bursts,
        "burst_median_of_medians_ms": statistics.median(b["median_ms"] for b in bursts),
        "burst_median_all_final_s": statistics.median(b["all_final_s"] for b in bursts),
        "upload_transport_retries": bench.transport_retries,
    }


def run_one(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    env = env_for(args.service_src)
    cmd = [sys.executable, "-m", "gophermart"]
    with tempfile.TemporaryDirectory(prefix="accrual-lat-") as tmp_name:
        tmp = Path(tmp_name)
        sim_port, svc_port = free_port(), free_port()
        sim_url, svc_url = f"http://{HOST}:{sim_port}", f"http://{HOST}:{svc_port}"
        sim_cmd = [*cmd, "accrual-sim", "-a", f"{HOST}:{sim_port}"]
        with (
            database(kind, tmp) as uri,
            process(sim_cmd, env, tmp / "sim.log") as sim,
        ):
            wait_up(sim_url + "/__sim/stats", sim, tmp / "sim.log")
            svc_cmd = [*cmd, "-a", f"{HOST}:{svc_port}", "-d", uri, "-r", sim_url]
            with process(svc_cmd, env, tmp / "svc.log") as svc:
                wait_up(svc_url + "/healthz", svc, tmp / "svc.log")
                return asyncio.run(measure(svc_url, sim_url, args.single, args.burst, args.rounds))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument("--single", type=int, default=20)
    p.add_argument("--burst", type=int, default=300)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--service-src", help="run the gophermart package in this directory")
    p.add_argument("--output", type=Path, help="write the results as JSON here too")
    args = p.parse_args()
    if args.service_src:
        args.service_src = str(Path(args.service_src).resolve())
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    results = {kind: run_one(kind, args) for kind in kinds}
    text = json.dumps(results, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
