"""What metrics and the access log cost the hot reads, measured on a busy machine.

    .venv/bin/python benchmarks/observe_pairs.py [--rounds 15] [--seconds 3] [--workers 1]

Three services run at once on one throwaway PostgreSQL database, identical but for the
observability switches: ``off`` (GOPHERMART_METRICS=0, GOPHERMART_ACCESS_LOG=0),
``metrics`` (metrics on, access log off) and ``full`` (both on: the default). wrk then
alternates short runs of ``GET /api/user/balance`` (or ``--script orders.lua``) between
them, round after round, rotating the order. Other work on the machine slows whichever
service is measured at that moment; alternating every few seconds spreads that noise
over all three, and each round's ratio to that round's ``off`` run is a paired
comparison. Prints the median requests/s and p99 of each, the median paired ratio, and the
service's own CPU time per request (from /proc: user + system of the service's processes
during the run, divided by the requests served), which other load disturbs far less
than throughput does.

Needs PostgreSQL at 127.0.0.1:5432 (or --pg-url) and wrk, like benchmarks/run.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx

BENCH_DIR = Path(__file__).resolve().parent
LUA_DIR = BENCH_DIR / "lua"
HOST = "127.0.0.1"
VARIANTS = {
    "off": {"GOPHERMART_METRICS": "0", "GOPHERMART_ACCESS_LOG": "0"},
    "metrics": {"GOPHERMART_METRICS": "1", "GOPHERMART_ACCESS_LOG": "0"},
    "full": {"GOPHERMART_METRICS": "1", "GOPHERMART_ACCESS_LOG": "1"},
}


def luhn(prefix: str) -> str:
    """``prefix`` and its Luhn check digit."""
    total = 0
    for i, char in enumerate(reversed(prefix)):
        digit = int(char)
        if i % 2 == 0:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return prefix + str((10 - total % 10) % 10)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def start(
    name: str, dsn: str, workers: int, secret: str, logs: Path, devnull: bool = False
) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOPHERMART_")}
    env |= {"GOPHERMART_SECRET": secret, **VARIANTS[name]}
    with (logs / f"{name}.log").open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gophermart",
                "-a",
                f"{HOST}:{port}",
                "-d",
                dsn,
                "-w",
                str(workers),
                "--no-worker",
            ],
            env=env,
            stdout=subprocess.DEVNULL if devnull else out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://{HOST}:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/healthz", timeout=1)
            return url, proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{name} did not start: {(logs / f'{name}.log').read_text()[-2000:]}")


_TICK = os.sysconf("SC_CLK_TCK")


class NonSuccess(RuntimeError):
    pass


def wrk_retrying(
    url: str, script: str, tokens: Path, seconds: int, pid: int
) -> tuple[float, float, float]:
    """requests/s, p99 ms, and the service's CPU us per request, of one clean run."""
    for attempt in range(6):
        before = cpu_seconds(pid)
        try:
            rps, p99, n = wrk(url, script, tokens, seconds)
        except NonSuccess as exc:
            if attempt == 5:
                raise
            print(f"  retrying: {exc}", flush=True)
            time.sleep(2 + attempt * 2)
            continue
        return rps, p99, (cpu_seconds(pid) - before) / n * 1e6
    raise AssertionError("unreachable")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its descendants, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime
    return own + sum(cpu_seconds(int(child)) for child in children)


def wrk(url: str, script: str, tokens: Path, seconds: int) -> tuple[float, float, int]:
    env = os.environ | {
        "BENCH_LUA_DIR": str(LUA_DIR),
        "BENCH_TOKENS": str(tokens),
        "BENCH_SALT": "11",
    }
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            "-c64",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA_DIR / script),
            url,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("BENCH_JSON "))
    data = json.loads(line.removeprefix("BENCH_JSON "))
    if data["errors"]["status"]:
        # e.g. PostgreSQL out of connections because of other clients: the run says
        # nothing about us. The caller retries it.
        raise NonSuccess(f"{url}: {data['errors']['status']} non-2xx answers")
    rps = data["requests"] / (data["duration_us"] / 1e6)
    return rps, data["latency_us"]["p99"] / 1000, int(data["requests"])


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--seconds", type=int, default=3)
    # 1: three services x N processes x a 20-connection pool must fit PostgreSQL's
    # max_connections (100 by default) with room for whatever else uses the server.
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--users", type=int, default=40)
    p.add_argument("--script", default="balance.lua")
    p.add_argument(
        "--aa",
        action="store_true",
        help="A/A check of the harness: the third service ('full') runs with the access "
        "log off too, so any difference to 'metrics' is the harness's own bias",
    )
    p.add_argument(
        "--logs-to-devnull",
        action="store_true",
        help="send the services' output to /dev/null instead of a file (to tell the cost "
        "of rendering log lines from the cost of writing them)",
    )
    p.add_argument(
        "--pg-url", default=os.environ.get("BENCH_PG_URL", f"postgresql://postgres@{HOST}:5432")
    )
    a = p.parse_args()
    if a.aa:
        VARIANTS["full"] = dict(VARIANTS["metrics"])
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed (Debian: apt-get install wrk)")
    name = f"gophermart_pairs_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(a.pg_url + "/postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    work = Path(tempfile.mkdtemp(prefix="observe-pairs-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        dsn = f"{a.pg_url}/{name}?sslmode=disable"
        secret = secrets.token_urlsafe(40)
        urls = {}
        for variant in VARIANTS:  # one at a time: the first one migrates
            url, proc = start(variant, dsn, a.workers, secret, work, a.logs_to_devnull)
            urls[variant] = url
            procs.append(proc)
        tokens = []
        async with httpx.AsyncClient(base_url=urls["off"], timeout=60) as client:
            for i in range(a.users):
                r = await client.post(
                    "/api/user/register", json={"login": f"pair-{i}", "password": "pairs pw"}
                )
                tokens.append(r.headers["authorization"].removeprefix("Bearer "))
                for j in range(3):  # a few orders each, for orders.lua
                    number = luhn(f"6{i:05d}{j:02d}{secrets.randbelow(10**6):06d}")
                    auth = {"Authorization": f"Bearer {tokens[-1]}"}
                    await client.post("/api/user/orders", content=number, headers=auth)
        pids = dict(zip(VARIANTS, (proc.pid for proc in procs), strict=True))
        token_file = work / "tokens.txt"
        token_file.write_text("\n".join(tokens) + "\n")
        for url, pid in zip(urls.values(), pids.values(), strict=True):  # warm-up
            wrk_retrying(url, a.script, token_file, 2, pid)
        results: dict[str, list[tuple[float, float]]] = {v: [] for v in VARIANTS}
        cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}  # service CPU us per request
        order = list(VARIANTS)
        for round_ in range(a.rounds):
            for variant in order[round_ % 3 :] + order[: round_ % 3]:
                rps, p99, cpu_us = wrk_retrying(
                    urls[variant], a.script, token_file, a.seconds, pids[variant]
                )
                cpu[variant].append(cpu_us)
                results[variant].append((rps, p99))
            print(
                f"round {round_ + 1}: "
                + ", ".join(f"{v} {results[v][-1][0]:,.0f}/s" for v in VARIANTS),
                flush=True,
            )
        print(f"\n{a.script}, -w {a.workers}, wrk -t2 -c64, {a.rounds} rounds of {a.seconds} s:")
        for variant in VARIANTS:
            rps = [r for r, _ in results[variant]]
            paired = [r / off for r, (off, _) in zip(rps, results["off"], strict=True)]
            quartiles = statistics.quantiles(paired, n=4)
            p99 = [q for _, q in results[variant]]
            print(
                f"  {variant:8s} median {statistics.median(rps):8,.0f} req/s, p99 "
                f"{statistics.median(p99):5.1f} ms, paired ratio to off: median "
                f"{statistics.median(paired):.3f} "
                f"(quartiles {quartiles[0]:.3f}-{quartiles[2]:.3f}); "
                f"service CPU {statistics.median(cpu[variant]):.1f} us/request"
            )
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        shutil.rmtree(work, ignore_errors=True)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)  # clean up like Ctrl-C


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)
    asyncio.run(main())
