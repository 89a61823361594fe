"""What one webhook delivery costs the machine, by process (issue 18's throughput line).

    .venv/bin/python benchmarks/webhook_drain.py [--events 30000] [--users 200]

1. a seeded PostgreSQL database with one endpoint subscribed to ``*``, pointing at the
   same lean receiver process as ``webhook_throughput.py`` (it stands in for the shop's
   endpoint);
2. ``--events`` adjustments written through the library while no worker runs, so the
   events wait in the outbox;
3. one ``gophermart worker`` started: it numbers the events and streams them to the
   endpoint. Once a fifth of them have arrived (the worker's start and the sequencing
   of the backlog are behind it), the CPU time of the worker, of every PostgreSQL
   process and of the receiver is read from ``/proc`` until the last one arrives;
4. prints deliveries/s and the CPU per delivery of each: with the API's own cost per
   withdrawal (``webhook_throughput.py``'s off-runs: two cores over their req/s), the
   ratio the withdraw bench can reach with one endpoint is about
   ``withdrawal / (withdrawal + delivery)`` while both share the machine.

No API load runs: this measures the deliverer alone, on a machine it has to itself.
The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import run
import webhook_throughput
from run import HOST, Databases, log

TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pids: list[int]) -> float:
    """User and system CPU of ``pids`` so far (those gone since count nothing)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


def _postgres_pids() -> list[int]:
    found = subprocess.run(["pgrep", "-x", "postgres"], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


async def _received(url: str) -> int:
    return int((await webhook_throughput._receiver_stats(url))["received"])


async def _write_events(dsn: str, receiver: str, events: int, users: int) -> None:
    from gophermart import Gophermart, Points

    async with Gophermart.open(dsn) as loyalty:
        await loyalty.add_webhook(receiver + "/hooks", ["*"])
        ids = [
            (await loyalty.register(f"drain-{k}-{secrets.token_hex(3)}", "pw")).user_id
            for k in range(users)
        ]
        gate = asyncio.Semaphore(32)

        async def one(k: int) -> None:
            async with gate:
                await loyalty.adjust(ids[k % users], Points(100), "bench", operator="bench")

        await asyncio.gather(*(one(k) for k in range(events)))


async def measure(args: argparse.Namespace, procs: run.Processes) -> dict[str, float]:
    dbs = Databases(args.pg_url)
    port = run.free_port()
    receiver = f"http://{HOST}:{port}"
    rec = procs.start(
        "receiver",
        [sys.executable, str(Path(webhook_throughput.__file__).resolve()), "--receiver", str(port)],
        run.RESULTS_DIR / "webhook-drain-receiver.log",
    )
    try:
        await dbs.create(dbs.bench)
        dsn = dbs.service_dsn(dbs.bench)
        started = time.monotonic()
        await _write_events(dsn, receiver, args.events, args.users)
        log(f"{args.events:,} events written in {time.monotonic() - started:.1f} s")
        worker = procs.start(
            "worker",
            [*run.gophermart_cmd(), "worker", "-d", dsn],
            run.RESULTS_DIR / "webhook-drain-worker.log",
        )
        while (got := await _received(receiver)) < args.events // 5:
            await asyncio.sleep(0.01)
        pids = {"worker": [worker.pid], "postgres": _postgres_pids(), "receiver": [rec.pid]}
        before = {name: _cpu_seconds(p) for name, p in pids.items()}
        first, started = got, time.monotonic()
        while (got := await _received(receiver)) < args.events:
            await asyncio.sleep(0.01)
        took = time.monotonic() - started
        used = {name: _cpu_seconds(p) - before[name] for name, p in pids.items()}
        procs.stop(worker)
        counted = got - first
        out = {"deliveries": counted, "seconds": took, "per_second": counted / took}
        out |= {f"{name}_us": 1e6 * cpu / counted for name, cpu in used.items()}
        return out
    finally:
        await dbs.drop_all()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=30_000)
    p.add_argument("--users", type=int, default=200)
    p.add_argument(
        "--pg-url", default=os.environ.get("BENCH_PG_URL", f"postgresql://postgres@{HOST}:5432")
    )
    args = p.parse_args(argv)
    procs = run.Processes()
    try:
        out = asyncio.run(measure(args, procs))
    finally:
        procs.stop_all()
    print(
        f"\n{out['deliveries']:,.0f} deliveries in {out['seconds']:.2f} s "
        f"({out['per_second']:,.0f}/s); CPU per delivery: worker {out['worker_us']:.0f} µs, "
        f"PostgreSQL {out['postgres_us']:.0f} µs, receiver {out['receiver_us']:.0f} µs, "
        f"in all {out['worker_us'] + out['postgres_us'] + out['receiver_us']:.0f} µs"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
