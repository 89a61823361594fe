"""The gophermart benchmark suite (issue 5): one command, one table.

    .venv/bin/python benchmarks/run.py [--workers 2] [--duration 15] [--connections 64]
                                       [--users 10000] [--quick] [--skip-accrual]

What it does, in order (see benchmarks/README.md for what each number means):

1. creates throwaway PostgreSQL databases (``gophermart_bench_<random>`` and one for
   pgbench) and drops them at the end, whatever happens (errors, Ctrl-C, SIGTERM);
2. measures PostgreSQL itself with ``pgbench -S`` and ``pgbench -b simple-update``;
3. starts ``gophermart`` with N server processes, registers one user through the API,
   seeds the other users, accounts, orders and ledger directly with asyncpg, and logs a
   sample of users in through the API to get real tokens;
4. drives wrk (Lua scripts in benchmarks/lua/) at GET /api/user/balance,
   GET /api/user/orders and POST /api/user/balance/withdraw, then GET balance again,
   alone and during a login storm (benchmarks/login_storm.py);
5. runs the accrual pipeline against the simulator, without and with a rate limit;
6. checks that no account is overdrawn and every balance matches its ledger;
7. prints one table and writes benchmarks/results/latest.json.

All traffic goes to 127.0.0.1. Every wait is bounded in time. Before each measurement
the runner waits (``--wait-idle``, bounded) for the machine to be idle, since anything else
running would be measured as the service's cost. ``--service-src DIR`` benchmarks another
source tree (an older commit) with the same harness, for before/after comparisons.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Coroutine, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import urlsplit

import argon2
import asyncpg
import httpx
from stats import percentile_ms

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
LUA_DIR = BENCH_DIR / "lua"
RESULTS_DIR = BENCH_DIR / "results"
HOST = "127.0.0.1"

PASSWORD = "bench-password-1"  # every seeded user shares it (the hash is copied)
PROBE_LOGIN = "bench-probe"
BALANCE_CENTS = 100_000_000  # 1,000,000.00 points per seeded account
ACCRUAL_PRICE = 1000  # "Bork" goods earn 10 % in the simulator: 100 points per order

# The bars (issue 5, "Done when" and "Deliver").
FLOOR_READ_RPS = 4500
GOAL_READ_RPS = 9000
MAX_READ_P99_MS = 50.0
FLOOR_WITHDRAW_RPS = 2000
GOAL_WITHDRAW_RPS = 3500
MAX_STORM_RATIO = 2.0

SERVICE_SRC_ENV = "BENCH_SERVICE_SRC"
CONTENTION_CLIENTS = 32  # issue 4: withdrawals on one hot account vs on 32 accounts
AUTH_CLIENTS = 4  # issue 2: register and login latency "under a small concurrent load"
ARGON2_SAMPLES = 20
BUSY_WARNING_PCT = 20.0  # CPU busy before a measurement above which we warn

T = TypeVar("T")


def log(message: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class Config:
    workers: int
    duration: int
    connections: int
    threads: int
    users: int
    tokens: int
    orders_per_user: int
    warmup: int
    pgbench_duration: int
    pgbench_scale: int
    storm_concurrency: int
    accrual_orders: int
    limited_orders: int
    rate_limit: int
    skip_accrual: bool
    accrual_only: bool
    reads_only: bool
    quick: bool
    pg_url: str
    service_src: str | None
    output: str
    wait_idle: int


def parse_args(argv: Sequence[str] | None = None) -> Config:
    p = argparse.ArgumentParser(
        prog="benchmarks/run.py",
        description="Benchmark gophermart against PostgreSQL with wrk and pgbench.",
    )
    p.add_argument("--workers", type=int, default=2, help="server processes (default 2)")
    p.add_argument("--duration", type=int, help="seconds per wrk run (default 15; quick 5)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    p.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    p.add_argument("--users", type=int, help="seeded users (default 10000; quick 1000)")
    p.add_argument("--tokens", type=int, help="users logged in for tokens (default 200; quick 50)")
    p.add_argument("--orders-per-user", type=int, default=3, help="seeded orders per user")
    p.add_argument("--warmup", type=int, help="seconds of warm-up per GET endpoint (default 2)")
    p.add_argument("--pgbench-duration", type=int, help="seconds per pgbench run (10; quick 5)")
    p.add_argument("--pgbench-scale", type=int, help="pgbench -i scale (default 10; quick 2)")
    p.add_argument("--storm-concurrency", type=int, default=8, help="parallel login loops")
    p.add_argument("--accrual-orders", type=int, help="orders, no rate limit (300; quick 100)")
    p.add_argument(
        "--limited-orders",
        type=int,
        help="orders with the simulator rate-limited (default 800, more than one minute's "
        "allowance so the limit is hit; quick 0 = skip, as it takes over a minute)",
    )
    p.add_argument("--rate-limit", type=int, default=600, help="simulator limit per minute")
    p.add_argument("--skip-accrual", action="store_true", help="skip the accrual pipeline")
    p.add_argument(
        "--accrual-only",
        action="store_true",
        help="seed, then only the accrual pipeline (no pgbench, no wrk)",
    )
    p.add_argument(
        "--reads-only",
        action="store_true",
        help="only the GET balance and GET orders runs (after pgbench and seeding): for "
        "before/after pairs of a change that touches every request (metrics, logging)",
    )
    p.add_argument("--quick", action="store_true", help="short runs, fewer users (iteration)")
    p.add_argument(
        "--pg-url",
        default=os.environ.get("BENCH_PG_URL", f"postgresql://postgres@{HOST}:5432"),
        help="PostgreSQL server, without a database name [env BENCH_PG_URL; "
        f"default postgresql://postgres@{HOST}:5432]",
    )
    p.add_argument(
        "--service-src",
        type=Path,
        metavar="DIR",
        help="benchmark the gophermart package in DIR (a src/ folder, e.g. from "
        "`git archive <commit> src | tar -x -C /tmp/old`) instead of the installed one, to "
        "compare before and after a change",
    )
    p.add_argument(
        "--wait-idle",
        type=int,
        default=120,
        metavar="S",
        help="before the run and before each measurement, wait up to S seconds for the "
        "machine to be idle (< 20 %% busy); 0 never waits (default 120)",
    )
    p.add_argument(
        "--output",
        type=Path,
        default=RESULTS_DIR / "latest.json",
        metavar="FILE",
        help="where to write the results as JSON (default benchmarks/results/latest.json)",
    )
    a = p.parse_args(argv)
    if a.service_src is not None and not (a.service_src / "gophermart" / "__main__.py").exists():
        p.error(f"--service-src: no gophermart package in {a.service_src}")

    def pick(value: int | None, full: int, quick: int) -> int:
        return value if value is not None else (quick if a.quick else full)

    cfg = Config(
        workers=a.workers,
        duration=pick(a.duration, 15, 5),
        connections=a.connections,
        threads=a.threads,
        users=pick(a.users, 10_000, 1000),
        tokens=pick(a.tokens, 200, 50),
        orders_per_user=a.orders_per_user,
        warmup=pick(a.warmup, 2, 1),
        pgbench_duration=pick(a.pgbench_duration, 10, 5),
        pgbench_scale=pick(a.pgbench_scale, 10, 2),
        storm_concurrency=a.storm_concurrency,
        accrual_orders=pick(a.accrual_orders, 300, 100),
        limited_orders=pick(a.limited_orders, 800, 0),
        rate_limit=a.rate_limit,
        skip_accrual=a.skip_accrual or a.reads_only,
        accrual_only=a.accrual_only,
        reads_only=a.reads_only,
        quick=a.quick,
        pg_url=a.pg_url.rstrip("/"),
        service_src=str(a.service_src.resolve()) if a.service_src else None,
        output=str(a.output),
        wait_idle=a.wait_idle,
    )
    if cfg.skip_accrual and cfg.accrual_only:
        p.error("--skip-accrual (or --reads-only) and --accrual-only exclude each other")
    if cfg.tokens > cfg.users:
        p.error("--tokens cannot exceed --users")
    if min(cfg.workers, cfg.duration, cfg.connections, cfg.threads, cfg.users, cfg.tokens) < 1:
        p.error("workers, duration, connections, threads, users and tokens must be >= 1")
    if cfg.orders_per_user < 1:
        p.error("--orders-per-user must be >= 1")
    host = urlsplit(cfg.pg_url).hostname
    if host not in (HOST, "localhost"):
        p.error("the benchmark only talks to a local PostgreSQL (127.0.0.1)")
    return cfg


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def luhn_complete(payload: str) -> str:
    """``payload`` followed by its Luhn check digit."""
    total = 0
    for i, char in enumerate(reversed(payload)):
        digit = int(char)
        if i % 2 == 0:  # doubled once the check digit is appended
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return payload + str((10 - total % 10) % 10)


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs since boot, from /proc/stat. Niced work
    (``nice`` 19: a test run kept out of the way) yields the CPU to a measurement, so it
    counts as idle here."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[1] + fields[3] + (fields[4] if len(fields) > 4 else 0)  # nice+idle+iowait
    return sum(fields) - idle, sum(fields)


async def cpu_busy_pct(seconds: float) -> float:
    """How busy the whole machine is over the next ``seconds`` (0-100); 0 if unknown."""
    try:
        busy0, total0 = _cpu_ticks()
        await asyncio.sleep(seconds)
        busy1, total1 = _cpu_ticks()
    except (OSError, ValueError, IndexError):
        return 0.0
    return 100.0 * (busy1 - busy0) / (total1 - total0) if total1 > total0 else 0.0


async def wait_until_idle(timeout: float) -> float:
    """Wait (at most ``timeout`` s) for the machine to be idle; returns the last busy %."""
    deadline = time.monotonic() + timeout
    busy = await cpu_busy_pct(1.0)
    if busy > BUSY_WARNING_PCT and timeout > 0:
        log(f"the machine is {busy:.0f} % busy: waiting up to {timeout:.0f} s for it to calm down")
        while busy > BUSY_WARNING_PCT and time.monotonic() < deadline:
            busy = await cpu_busy_pct(2.0)
    return busy


def gophermart_cmd() -> list[str]:
    """The ``gophermart`` command: the installed one, or the package under ``--service-src``
    (put first on PYTHONPATH by main(), so every child process imports that tree)."""
    if os.environ.get(SERVICE_SRC_ENV):
        return [sys.executable, "-m", "gophermart"]
    beside = Path(sys.executable).parent / "gophermart"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("gophermart")
    if found is None:
        raise SystemExit("gophermart is not installed in this environment (pip install -e .)")
    return [found]


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found is not None:
        return found
    if os.geteuid() != 0:
        raise SystemExit("wrk is missing: install it with `sudo apt-get install -y wrk`")
    log("wrk is missing: installing it with apt-get")
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    first = subprocess.run(["apt-get", "install", "-y", "wrk"], env=env, check=False, timeout=600)
    if first.returncode:  # most often a stale package index: update it and retry once
        subprocess.run(["apt-get", "update"], env=env, check=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "wrk"], env=env, check=True, timeout=600)
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit("apt-get did not install wrk")
    return found


async def run_command(
    cmd: Sequence[str], *, env: dict[str, str] | None = None, timeout: float
) -> tuple[int, str, str]:
    """Run a command to completion (killed after ``timeout`` or on cancellation)."""
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


class Processes:
    """Long-lived children (service, simulator, login storm), each in its own session so
    a Ctrl-C in the terminal reaches only us; we stop them with SIGTERM, by pid."""

    def __init__(self) -> None:
        self._running: list[tuple[str, subprocess.Popen[bytes], IO[bytes] | None]] = []

    def start(
        self,
        name: str,
        cmd: Sequence[str],
        log_path: Path | None,
        *,
        stdout_pipe: bool = False,
    ) -> subprocess.Popen[bytes]:
        sink = log_path.open("wb") if log_path is not None else None
        proc = subprocess.Popen(
            list(cmd),
            stdout=subprocess.PIPE if stdout_pipe else sink or subprocess.DEVNULL,
            stderr=sink or subprocess.DEVNULL,
            env=os.environ | {"PYTHONUNBUFFERED": "1"},
            start_new_session=True,
            cwd=ROOT,
        )
        self._running.append((name, proc, sink))
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int | None:
        """SIGTERM, wait, SIGKILL the process group as a last resort. Returns the exit code."""
        entry = next((e for e in self._running if e[1] is proc), None)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"pid {proc.pid} ignored SIGTERM for {timeout:.0f}s: killing its group")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        if entry is not None:
            self._running.remove(entry)
            if entry[2] is not None:
                entry[2].close()
        return proc.returncode

    def stop_all(self) -> None:
        for _, proc, _ in list(reversed(self._running)):
            self.stop(proc)


async def wait_http(
    url: str, proc: subprocess.Popen[bytes], log_path: Path | None, timeout: float
) -> None:
    """Wait until ``url`` answers 200 (the process must stay alive meanwhile)."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:] if log_path else ""
                raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}:\n{tail}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f}s")


def log_problems(log_path: Path) -> dict[str, int]:
    """Counts of worrying lines in a service log."""
    if not log_path.exists():
        return {}
    text = log_path.read_text(errors="replace")
    return {
        "tracebacks": text.count("Traceback (most recent call last)"),
        "error_lines": len(re.findall(r"^(?:\S+ \S+ )?(?:ERROR|CRITICAL)\b", text, re.MULTILINE)),
        "warning_lines": len(re.findall(r"^(?:\S+ \S+ )?WARNING\b", text, re.MULTILINE)),
    }


# --------------------------------------------------------------------------- database


@dataclass
class Databases:
    pg_url: str
    suffix: str = field(default_factory=lambda: secrets.token_hex(4))
    created: list[str] = field(default_factory=list)

    @property
    def bench(self) -> str:
        return f"gophermart_bench_{self.suffix}"

    @property
    def pgbench(self) -> str:
        return f"gophermart_bench_{self.suffix}_pgbench"

    def dsn(self, name: str) -> str:
        return f"{self.pg_url}/{name}"

    def service_dsn(self, name: str) -> str:
        return f"{self.pg_url}/{name}?sslmode=disable"

    async def create(self, name: str) -> None:
        conn = await asyncpg.connect(self.dsn("postgres"))
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
            self.created.append(name)
        finally:
            await conn.close()

    async def drop(self, name: str) -> None:
        conn = await asyncpg.connect(self.dsn("postgres"), timeout=10)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
        if name in self.created:
            self.created.remove(name)

    async def drop_all(self) -> None:
        for name in list(self.created):
            try:
                await self.drop(name)
                log(f"dropped database {name}")
            except (OSError, asyncpg.PostgresError) as exc:
                log(f"could not drop database {name}: {exc}")


def pg_env(pg_url: str) -> dict[str, str]:
    parts = urlsplit(pg_url)
    env = dict(os.environ)
    env["PGHOST"] = parts.hostname or HOST
    env["PGPORT"] = str(parts.port or 5432)
    env["PGUSER"] = parts.username or "postgres"
    if parts.password:
        env["PGPASSWORD"] = parts.password
    return env


class ConnectionWatch:
    """Samples PostgreSQL's client connections twice a second while the benchmark runs:
    the peak of all of them and of the service's own (its database), and the limit."""

    def __init__(self, dbs: Databases) -> None:
        self._dbs = dbs
        self.peak_total = 0
        self.peak_service = 0
        self.limit = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ConnectionWatch:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        try:
            conn = await asyncpg.connect(self._dbs.dsn("postgres"))
        except (OSError, asyncpg.PostgresError) as exc:
            log(f"cannot watch PostgreSQL's connections: {exc}")
            return
        try:
            self.limit = int(await conn.fetchval("SELECT current_setting('max_connections')"))
            while True:
                row = await conn.fetchrow(
                    "SELECT count(*), count(*) FILTER (WHERE datname = $1)"
                    " FROM pg_stat_activity WHERE backend_type = 'client backend'",
                    self._dbs.bench,
                )
                if row is not None:
                    self.peak_total = max(self.peak_total, int(row[0]))
                    self.peak_service = max(self.peak_service, int(row[1]))
                await asyncio.sleep(0.5)
        except (OSError, asyncpg.PostgresError) as exc:
            log(f"stopped watching PostgreSQL's connections: {exc}")
        finally:
            await conn.close()

    def summary(self) -> dict[str, int]:
        return {
            "max_connections": self.limit,
            "peak_client_connections": self.peak_total,
            "peak_service_connections": self.peak_service,
        }


# --------------------------------------------------------------------------- pgbench


@dataclass
class PgbenchResult:
    label: str
    clients: int
    tps: float
    latency_avg_ms: float
    failed: int


async def free_connections(dbs: Databases) -> int:
    """Connections PostgreSQL can still accept from a non-superuser-reserved client."""
    conn = await asyncpg.connect(dbs.dsn("postgres"))
    try:
        row = await conn.fetchrow(
            "SELECT current_setting('max_connections')::int"
            " - current_setting('superuser_reserved_connections')::int"
            " - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"
        )
    finally:
        await conn.close()
    return int(row[0]) if row else 0


async def run_pgbench(cfg: Config, dbs: Databases) -> list[PgbenchResult]:
    env = pg_env(cfg.pg_url)
    await dbs.create(dbs.pgbench)
    log(f"pgbench: initialising scale {cfg.pgbench_scale}")
    code, _, err = await run_command(
        ["pgbench", "-i", "-q", "-s", str(cfg.pgbench_scale), dbs.pgbench], env=env, timeout=600
    )
    if code:
        raise RuntimeError(f"pgbench -i failed: {err.strip()[-500:]}")
    results = []
    for label, mode in (("pgbench -S", ["-S"]), ("pgbench simple-update", ["-b", "simple-update"])):
        # Other clients of a shared server may hold connections: never ask for more than
        # PostgreSQL has left, and say so when that is fewer than requested.
        await wait_until_idle(cfg.wait_idle)
        clients = min(cfg.connections, await free_connections(dbs) - 2)
        if clients < 1:
            raise RuntimeError("PostgreSQL has no free connections for pgbench")
        if clients < cfg.connections:
            log(f"{label}: only {clients} connections free, running with -c {clients}")
        c, j, t = str(clients), str(min(cfg.threads, clients)), str(cfg.pgbench_duration)
        log(f"{label}: -c {c} -j {j} -T {t}")
        cmd = ["pgbench", *mode, "-c", c, "-j", j, "-T", t, dbs.pgbench]
        code, out, err = await run_command(cmd, env=env, timeout=cfg.pgbench_duration + 120)
        tps = re.search(r"^tps = ([\d.]+)", out, re.MULTILINE)
        lat = re.search(r"^latency average = ([\d.]+) ms", out, re.MULTILINE)
        failed = re.search(r"^number of failed transactions: (\d+)", out, re.MULTILINE)
        if code or tps is None:
            raise RuntimeError(f"{label} failed ({code}): {(err or out).strip()[-500:]}")
        results.append(
            PgbenchResult(
                label,
                clients,
                float(tps.group(1)),
                float(lat.group(1)) if lat else 0.0,
                int(failed.group(1)) if failed else 0,
            )
        )
        log(f"{label}: {float(tps.group(1)):,.0f} tps")
    await dbs.drop(dbs.pgbench)
    return results


# --------------------------------------------------------------------------- service


@dataclass
class Service:
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path


async def start_service(
    procs: Processes,
    cfg: Config,
    dsn: str,
    log_name: str,
    accrual_url: str | None = None,
) -> Service:
    port = free_port()
    cmd = [*gophermart_cmd(), "-a", f"{HOST}:{port}", "-d", dsn, "-w", str(cfg.workers)]
    cmd += ["-r", accrual_url] if accrual_url else ["--no-worker"]
    log_path = RESULTS_DIR / log_name
    proc = procs.start("gophermart", cmd, log_path)
    url = f"http://{HOST}:{port}"
    await wait_http(f"{url}/healthz", proc, log_path, timeout=90)
    # With several processes the first answer may come from the first one up; give the
    # others a moment and touch the service a few times.
    await asyncio.sleep(1.0)
    async with httpx.AsyncClient(base_url=url, timeout=5.0, trust_env=False) as client:
        for _ in range(4 * cfg.workers):
            await client.get("/healthz")
    log(f"service up at {url} ({cfg.workers} process(es), log {log_path.name})")
    return Service(proc, url, log_path)


# --------------------------------------------------------------------------- seeding


@dataclass
class Seeded:
    logins: list[str]  # the seeded users' logins, in id order
    sample: list[str]  # the logins that have tokens
    tokens: list[str]  # tokens[i] belongs to sample[i]
    orders: int
    seconds: float


async def seed(cfg: Config, dbs: Databases, service: Service) -> Seeded:
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=service.url, timeout=30.0, trust_env=False) as client:
        r = await client.post(
            "/api/user/register", json={"login": PROBE_LOGIN, "password": PASSWORD}
        )
        if r.status_code != 200 or not r.headers.get("authorization"):
            raise RuntimeError(f"registering through the API failed: {r.status_code} {r.text}")
        token = r.headers["authorization"].removeprefix("Bearer ").strip()
        probe = await client.get("/api/user/balance", headers={"Authorization": f"Bearer {token}"})
        if probe.status_code != 200:
            raise RuntimeError(f"the probe user's balance: {probe.status_code} {probe.text}")

    now = datetime.now(UTC)
    conn = await asyncpg.connect(dbs.dsn(dbs.bench))
    try:
        t = await table_names(conn)
        password_hash = await conn.fetchval(
            f"SELECT password_hash FROM {t['users']} WHERE login = $1", PROBE_LOGIN
        )
        async with conn.transaction():
            rows = await conn.fetch(
                f"INSERT INTO {t['users']} (login, password_hash, created_at)"
                " SELECT 'bench-' || lpad(g::text, 6, '0'), $1, $2"
                " FROM generate_series(1, $3) AS g RETURNING id, login",
                password_hash,
                now - timedelta(days=30),
                cfg.users,
            )
            users = sorted((int(r["id"]), str(r["login"])) for r in rows)
            await conn.copy_records_to_table(
                t["accounts"],
                records=[(uid, BALANCE_CENTS, 0) for uid, _ in users],
                columns=["user_id", "balance", "withdrawn"],
            )
            k = cfg.orders_per_user
            share = BALANCE_CENTS // k
            orders, ledger = [], []
            for uid, _ in users:
                for n in range(k):
                    number = luhn_complete(f"4{uid:09d}{n:03d}")
                    amount = share if n else BALANCE_CENTS - share * (k - 1)
                    at = now - timedelta(days=k - n, seconds=uid % 3600)
                    orders.append((number, uid, "PROCESSED", amount, at, None, 1))
                    ledger.append((uid, "accrual", number, amount, at))
            await conn.copy_records_to_table(
                t["orders"],
                records=orders,
                columns=[
                    "number",
                    "user_id",
                    "status",
                    "accrual",
                    "uploaded_at",
                    "next_attempt_at",
                    "attempts",
                ],
            )
            await conn.copy_records_to_table(
                t["ledger"],
                records=ledger,
                columns=["user_id", "kind", "order_number", "amount", "created_at"],
            )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    logins = [login for _, login in users]
    log(f"seeded {len(logins)} users, {len(orders)} orders in {time.monotonic() - started:.1f}s")

    step = max(1, len(logins) // cfg.tokens)
    sample = logins[::step][: cfg.tokens]
    tokens = await log_in_all(service.url, sample)
    log(f"logged in {len(tokens)} users through the API")
    return Seeded(logins, sample, tokens, len(orders), time.monotonic() - started)


async def log_in_all(url: str, logins: Sequence[str], concurrency: int = 8) -> list[str]:
    """Real tokens from POST /api/user/login (argon2: ~0.1 s each, so bounded parallelism)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(client: httpx.AsyncClient, login: str) -> str:
        async with gate:
            r = await client.post("/api/user/login", json={"login": login, "password": PASSWORD})
        header = str(r.headers.get("authorization", ""))
        if r.status_code != 200 or not header.startswith("Bearer "):
            raise RuntimeError(f"login {login}: {r.status_code} {r.text[:200]}")
        return header.removeprefix("Bearer ").strip()

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, timeout=60.0, limits=limits, trust_env=False
    ) as client:
        return list(await asyncio.gather(*(one(client, login) for login in logins)))


# --------------------------------------------------------------------------- wrk


@dataclass
class WrkResult:
    label: str
    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int
    busy_before_pct: float  # CPU busy on the machine in the second before the run
    service_cpu_us: float = 0.0  # CPU per request: the service's processes (pairs.py)
    postgres_cpu_us: float = 0.0  # and the PostgreSQL backends serving its database

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors


_salt = iter(range(10, 100))


async def run_wrk(
    cfg: Config,
    url: str,
    script: str,
    tokens_path: Path,
    duration: int,
    label: str,
    *,
    expect_busy: bool = False,
    connections: int | None = None,
    extra_env: dict[str, str] | None = None,
) -> WrkResult:
    # Between runs our own processes are idle: anything keeping the CPU busy now is someone
    # else's and would be measured as ours. Wait for it (bounded), and record what it was.
    busy = await cpu_busy_pct(1.0) if expect_busy else await wait_until_idle(cfg.wait_idle)
    if busy > BUSY_WARNING_PCT and not expect_busy:
        log(f"warning: the machine was {busy:.0f} % busy just before '{label}'")
    env = os.environ | {
        "BENCH_LUA_DIR": str(LUA_DIR),
        "BENCH_TOKENS": str(tokens_path),
        "BENCH_SALT": str(next(_salt)),
        **(extra_env or {}),
    }
    clients = connections or cfg.connections
    cmd = [
        "wrk",
        f"-t{min(cfg.threads, clients)}",
        f"-c{clients}",
        f"-d{duration}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA_DIR / script),
        url,
    ]
    code, out, err = await run_command(cmd, env=env, timeout=duration + 60)
    line = next((x for x in out.splitlines() if x.startswith("BENCH_JSON ")), None)
    if code or line is None:
        raise RuntimeError(f"wrk {script} failed ({code}): {(err or out).strip()[-800:]}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    e, lat = data["errors"], data["latency_us"]
    duration_s = data["duration_us"] / 1e6
    result = WrkResult(
        label=label,
        requests=int(data["requests"]),
        duration_s=round(duration_s, 3),
        rps=round(data["requests"] / duration_s, 1) if duration_s else 0.0,
        p50_ms=lat["p50"] / 1000,
        p90_ms=lat["p90"] / 1000,
        p99_ms=lat["p99"] / 1000,
        max_ms=lat["max"] / 1000,
        non_2xx=int(e["status"]),
        socket_errors=int(e["connect"] + e["read"] + e["write"] + e["timeout"]),
        busy_before_pct=round(busy, 1),
    )
    log(
        f"{label}: {result.rps:,.0f} req/s, p50 {result.p50_ms:.1f} ms, "
        f"p99 {result.p99_ms:.1f} ms, errors {result.errors}"
    )
    return result


#: Issue 17: a user with this many ledger entries reads the first page of their history.
HISTORY_ENTRIES = 10_000
HISTORY_PAGE = 50
HISTORY_LOGIN = "bench-history"


async def ledger_scenarios(
    cfg: Config, dbs: Databases, url: str, tokens_path: Path, work: Path
) -> dict[str, Any]:
    """Issue 17's figures: a hold and its capture (a checkout in two phases), as pairs per
    second, and the first page of the history of a user with 10,000 entries."""
    pairs = await run_wrk(
        cfg, url, "hold_capture.lua", tokens_path, cfg.duration, "POST holds + capture"
    )
    token = await seed_history(dbs, url)
    path = work / "history-token.txt"
    path.write_text(token + "\n")
    label = f"GET /api/user/history?limit={HISTORY_PAGE} ({HISTORY_ENTRIES:,} entries)"
    env = {"BENCH_HISTORY_LIMIT": str(HISTORY_PAGE)}
    history = await run_wrk(cfg, url, "history.lua", path, cfg.duration, label, extra_env=env)
    light = await run_wrk(  # a shop's support page, not a flood: a few clients at a time
        cfg,
        url,
        "history.lua",
        path,
        cfg.duration,
        f"{label}, -c 8",
        connections=8,
        extra_env=env,
    )
    return {"hold_capture": asdict(pairs), "history": asdict(history), "history_c8": asdict(light)}


async def seed_history(dbs: Databases, url: str) -> str:
    """A user with HISTORY_ENTRIES adjustments of one point each (balance to match), and
    a real token for them."""
    conn = await asyncpg.connect(dbs.dsn(dbs.bench))
    try:
        password_hash = await conn.fetchval(
            "SELECT password_hash FROM gophermart_users WHERE login = $1", PROBE_LOGIN
        )
        now = datetime.now(UTC)
        async with conn.transaction():
            uid = await conn.fetchval(
                "INSERT INTO gophermart_users (login, password_hash, created_at)"
                " VALUES ($1, $2, $3) RETURNING id",
                HISTORY_LOGIN,
                password_hash,
                now - timedelta(days=30),
            )
            await conn.execute(
                "INSERT INTO gophermart_accounts (user_id, balance, withdrawn) VALUES ($1, $2, 0)",
                uid,
                HISTORY_ENTRIES * 100,
            )
            await conn.copy_records_to_table(
                "gophermart_ledger",
                records=[
                    (uid, "adjustment", 100, now - timedelta(seconds=HISTORY_ENTRIES - n), "seed")
                    for n in range(HISTORY_ENTRIES)
                ],
                columns=["user_id", "kind", "amount", "created_at", "reason"],
            )
        await conn.execute("ANALYZE gophermart_ledger")
    finally:
        await conn.close()
    (token,) = await log_in_all(url, [HISTORY_LOGIN])
    return token


async def withdraw_contention(
    cfg: Config, url: str, tokens: Sequence[str], work: Path
) -> list[WrkResult]:
    """32 clients withdrawing from one account (every debit contends for the same row
    lock), then from 32 accounts (one each, no contention): what the row lock costs."""
    n = min(CONTENTION_CLIENTS, len(tokens))
    runs = []
    for label, chosen in (
        (f"withdraw, one hot account (-c {CONTENTION_CLIENTS})", tokens[:1]),
        (f"withdraw, {n} accounts (-c {CONTENTION_CLIENTS})", tokens[:n]),
    ):
        path = work / f"tokens-{len(chosen)}.txt"
        path.write_text("\n".join(chosen) + "\n")
        runs.append(
            await run_wrk(
                cfg, url, "withdraw.lua", path, cfg.duration, label, connections=CONTENTION_CLIENTS
            )
        )
    return runs


async def auth_latency(cfg: Config, url: str, logins_path: Path) -> list[WrkResult]:
    """Sign-ups and logins from a few concurrent clients: each costs one argon2id hash."""
    env = {"BENCH_PASSWORD": PASSWORD, "BENCH_LOGINS": str(logins_path)}
    return [
        await run_wrk(
            cfg,
            url,
            script,
            logins_path,
            cfg.duration,
            f"{endpoint} (-c {AUTH_CLIENTS})",
            connections=AUTH_CLIENTS,
            extra_env=env,
        )
        for script, endpoint in (
            ("register.lua", "POST /api/user/register"),
            ("login.lua", "POST /api/user/login"),
        )
    ]


def argon2_cost() -> dict[str, Any]:
    """What one argon2id hash and one verification cost here, in this (idle) process, with
    argon2-cffi's defaults, which the service uses. CPU time counts all the threads a hash
    runs on (parallelism lanes), so it is what the hash takes from the machine."""
    hasher = argon2.PasswordHasher()
    stored = hasher.hash(PASSWORD)
    timed: dict[str, tuple[list[float], list[float]]] = {"hash": ([], []), "verify": ([], [])}
    for _ in range(ARGON2_SAMPLES):
        for name, call in (
            ("hash", lambda: hasher.hash(PASSWORD)),
            ("verify", lambda: hasher.verify(stored, PASSWORD)),
        ):
            cpu0, wall0 = time.process_time(), time.perf_counter()
            call()
            walls, cpus = timed[name]
            walls.append(time.perf_counter() - wall0)
            cpus.append(time.process_time() - cpu0)
    cost: dict[str, Any] = {
        "time_cost": hasher.time_cost,
        "memory_cost_kib": hasher.memory_cost,
        "parallelism": hasher.parallelism,
        "samples": ARGON2_SAMPLES,
    }
    for name, (walls, cpus) in timed.items():
        cost[name] = {
            "wall_ms_p50": percentile_ms(walls, 50),
            "wall_ms_p99": percentile_ms(walls, 99),
            "cpu_ms_p50": percentile_ms(cpus, 50),
        }
    log(f"argon2id: {cost}")
    return cost


@dataclass
class StormResult:
    quiet: WrkResult
    storm: WrkResult
    ratio: float
    logins: dict[str, Any]


async def login_storm(
    cfg: Config, procs: Processes, url: str, tokens_path: Path, logins_path: Path
) -> StormResult:
    quiet = await run_wrk(
        cfg, url, "balance.lua", tokens_path, cfg.duration, "balance, quiet (storm baseline)"
    )
    lead = 2.0
    cmd = [
        sys.executable,
        str(BENCH_DIR / "login_storm.py"),
        "--url",
        url,
        "--logins",
        str(logins_path),
        "--password",
        PASSWORD,
        "--concurrency",
        str(cfg.storm_concurrency),
        "--duration",
        str(cfg.duration + lead + 1.0),
    ]
    proc = procs.start("login-storm", cmd, RESULTS_DIR / "login-storm.log", stdout_pipe=True)
    try:
        await asyncio.sleep(lead)
        stormy = await run_wrk(
            cfg,
            url,
            "balance.lua",
            tokens_path,
            cfg.duration,
            "balance, during login storm",
            expect_busy=True,
        )
        window_end = time.monotonic()
        window_start = window_end - stormy.duration_s
        out, _ = await asyncio.to_thread(proc.communicate, None, cfg.duration + 60)
    finally:
        procs.stop(proc)
    logins: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1]) if out else {}
    # The storm runs a little longer than wrk; what matters is the logins wrk overlapped.
    during = [
        (seconds, status)
        for end, seconds, status in logins.pop("completions", [])
        if window_start <= end <= window_end
    ]
    times = [seconds for seconds, _ in during]
    logins["during_wrk"] = {
        "logins": len(during),
        "per_second": round(len(during) / stormy.duration_s, 1) if stormy.duration_s else 0.0,
        "ok": sum(1 for _, status in during if status == 200),
        "p50_ms": percentile_ms(times, 50),
        "p99_ms": percentile_ms(times, 99),
    }
    ratio = stormy.p99_ms / quiet.p99_ms if quiet.p99_ms else float("inf")
    log(f"login storm: p99 ratio {ratio:.2f}, logins {logins}")
    return StormResult(quiet, stormy, round(ratio, 2), logins)


# --------------------------------------------------------------------------- accrual


@dataclass
class AccrualResult:
    label: str
    orders: int
    rate_limit: int | None
    processed: int
    not_processed: int
    seconds: float
    orders_per_s: float
    latency_p50_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    sim_requests: int
    sim_throttled: int
    throttled_after_first: int
    throttled_in_flight: int  # 429s answered within 1 s of the first: sent before it arrived
    throttled_later: int  # 429s after that: the client did not keep to the limit
    first_429_s: float | None  # seconds from the first upload to the first 429
    longest_gap_s: float  # the longest stretch without a poll after the first upload
    polls_per_10s: list[int]  # the simulator's polls in each 10 s since the first upload
    processed_per_10s: list[int]  # orders first seen PROCESSED in each 10 s
    wrong_accruals: int
    service_exit_code: int | None
    log_problems: dict[str, int]


async def accrual_phase(
    cfg: Config,
    procs: Processes,
    dbs: Databases,
    seeded: Seeded,
    *,
    label: str,
    phase: int,
    n_orders: int,
    rate_limit: int | None,
) -> AccrualResult:
    sim_port = free_port()
    sim_url = f"http://{HOST}:{sim_port}"
    sim_cmd = [*gophermart_cmd(), "accrual-sim", "-a", f"{HOST}:{sim_port}"]
    if rate_limit:
        sim_cmd += ["--rate-limit", str(rate_limit)]
    sim_log = RESULTS_DIR / f"accrual-sim-{phase}.log"
    sim = procs.start("accrual-sim", sim_cmd, sim_log)
    service: Service | None = None
    try:
        await wait_http(f"{sim_url}/__sim/stats", sim, sim_log, timeout=30)
        service = await start_service(
            procs, cfg, dbs.service_dsn(dbs.bench), f"service-accrual-{phase}.log", sim_url
        )
        return await _accrual_measure(
            cfg, service, sim_url, seeded, label, phase, n_orders, rate_limit
        )
    finally:
        if service is not None:
            code = procs.stop(service.proc)
            if code:
                log(f"service exited with {code} after SIGTERM (expected 0)")
        procs.stop(sim)


async def _accrual_measure(
    cfg: Config,
    service: Service,
    sim_url: str,
    seeded: Seeded,
    label: str,
    phase: int,
    n_orders: int,
    rate_limit: int | None,
) -> AccrualResult:
    n_users = min(10, len(seeded.tokens))
    tokens = seeded.tokens[:n_users]
    numbers = [luhn_complete(f"6{phase}{i:08d}") for i in range(n_orders)]
    owner = {number: i % n_users for i, number in enumerate(numbers)}
    uploaded: dict[str, float] = {}
    done: dict[str, float] = {}
    wrong = 0
    expected = ACCRUAL_PRICE // 10  # "Bork" earns 10 %
    gate = asyncio.Semaphore(16)
    limits = httpx.Limits(max_connections=32)

    async with (
        httpx.AsyncClient(base_url=sim_url, timeout=10.0, trust_env=False) as sim,
        httpx.AsyncClient(
            base_url=service.url, timeout=30.0, limits=limits, trust_env=False
        ) as api,
    ):

        async def register(number: str) -> None:
            async with gate:
                r = await sim.post(
                    "/api/orders",
                    json={
                        "order": number,
                        "goods": [{"description": "Bork x", "price": ACCRUAL_PRICE}],
                    },
                )
            if r.status_code != 202:
                raise RuntimeError(f"simulator refused {number}: {r.status_code} {r.text}")

        async def upload(number: str) -> None:
            headers = {
                "Authorization": f"Bearer {tokens[owner[number]]}",
                "Content-Type": "text/plain",
            }
            async with gate:
                r = await api.post("/api/user/orders", content=number, headers=headers)
            if r.status_code != 202:
                raise RuntimeError(f"upload {number}: {r.status_code} {r.text}")
            uploaded[number] = time.monotonic()

        await asyncio.gather(*(register(n) for n in numbers))
        await sim.post("/__sim/reset-stats")
        log(f"{label}: {n_orders} orders registered in the simulator; uploading")
        started = time.monotonic()
        await asyncio.gather(*(upload(n) for n in numbers))

        # Poll each owner's order list until every order is final; bounded in time.
        budget = 60.0 + (60.0 * 2 + 60.0 * n_orders / rate_limit if rate_limit else 0.0)
        deadline = started + budget
        interval = 0.025 if rate_limit is None else 0.1
        pending = set(numbers)
        final_other: dict[str, str] = {}

        async def poll_user(u: int) -> None:
            nonlocal wrong
            r = await api.get("/api/user/orders", headers={"Authorization": f"Bearer {tokens[u]}"})
            seen = time.monotonic()
            if r.status_code != 200:
                return
            for item in r.json():
                number = item["number"]
                if number not in pending:
                    continue
                if item["status"] == "PROCESSED":
                    pending.discard(number)
                    done[number] = seen
                    if item.get("accrual") != expected:
                        wrong += 1
                elif item["status"] == "INVALID":
                    pending.discard(number)
                    final_other[number] = item["status"]

        while pending and time.monotonic() < deadline:
            users = {owner[n] for n in pending}
            await asyncio.gather(*(poll_user(u) for u in users))
            await asyncio.sleep(interval)
        stats = (await sim.get("/__sim/stats")).json()

    latencies = [done[n] - uploaded[n] for n in done]
    finished = max(done.values(), default=started)
    seconds = finished - started
    throttled = int(stats.get("throttled", 0))
    # The simulator and we share CLOCK_MONOTONIC, so its poll times line up with ours.
    polls = sorted(float(t) for t in stats.get("request_times", []))
    refused = replay_limiter(polls, rate_limit)
    first_429 = refused[0] if refused else None
    in_flight = sum(1 for t in refused if first_429 is not None and t - first_429 <= 1.0)
    marks = [started, *(t for t in polls if t >= started), finished]
    longest_gap = max((b - a for a, b in pairwise(marks)), default=0.0)
    result = AccrualResult(
        label=label,
        orders=n_orders,
        rate_limit=rate_limit,
        processed=len(done),
        not_processed=len(pending) + len(final_other),
        seconds=round(seconds, 2),
        orders_per_s=round(len(done) / seconds, 1) if seconds > 0 else 0.0,
        latency_p50_ms=percentile_ms(latencies, 50),
        latency_p99_ms=percentile_ms(latencies, 99),
        latency_max_ms=round(max(latencies, default=0.0) * 1000, 1),
        sim_requests=int(stats.get("requests", 0)),
        sim_throttled=throttled,
        throttled_after_first=max(0, throttled - 1),
        throttled_in_flight=max(0, in_flight - 1),
        throttled_later=len(refused) - in_flight,
        first_429_s=round(first_429 - started, 2) if first_429 is not None else None,
        longest_gap_s=round(longest_gap, 2),
        polls_per_10s=buckets(polls, started, 10.0),
        processed_per_10s=buckets(list(done.values()), started, 10.0),
        wrong_accruals=wrong,
        service_exit_code=None,
        log_problems={},
    )
    log(
        f"{label}: {result.processed}/{n_orders} PROCESSED in {result.seconds}s "
        f"({result.orders_per_s}/s), latency p50 {result.latency_p50_ms} ms "
        f"p99 {result.latency_p99_ms} ms, simulator saw {result.sim_requests} polls, "
        f"{throttled} answered 429 ({result.throttled_in_flight} more in flight with the "
        f"first, {result.throttled_later} later); polls per 10 s {result.polls_per_10s}"
    )
    return result


def replay_limiter(times: Sequence[float], limit: int | None) -> list[float]:
    """The times of the polls the simulator refused, found by replaying its limiter (a
    rolling 60 s window over the polls it let through) over every poll it received."""
    if not limit:
        return []
    window: deque[float] = deque()
    refused = []
    for t in times:
        while window and t - window[0] >= 60.0:
            window.popleft()
        if len(window) >= limit:
            refused.append(t)
        else:
            window.append(t)
    return refused


def buckets(times: Sequence[float], start: float, width: float) -> list[int]:
    """How many of ``times`` fall in each ``width``-second slot from ``start``."""
    counts: list[int] = []
    for t in times:
        slot = max(0, int((t - start) // width))
        counts.extend([0] * (slot + 1 - len(counts)))
        counts[slot] += 1
    return counts


async def simulator_available() -> bool:
    code, _, _ = await run_command([*gophermart_cmd(), "accrual-sim", "--help"], timeout=60)
    return code == 0


# --------------------------------------------------------------------------- integrity


async def table_names(conn: asyncpg.Connection) -> dict[str, str]:
    """Our tables' names in this database: ``gophermart_*`` since 0.3, unprefixed in
    the releases before (a pairs baseline may be one of those)."""
    prefixed = await conn.fetchval("SELECT to_regclass('gophermart_users') IS NOT NULL")
    prefix = "gophermart_" if prefixed else ""
    return {name: prefix + name for name in ("users", "accounts", "orders", "ledger")}


# The kinds of issue 17 (holds, refunds, adjustments ...) sum by the signs of
# domain/accounts.py's EFFECTS; a release before them has only accruals and withdrawals.
_INTEGRITY = """
WITH l AS (
    SELECT user_id,
           COALESCE(SUM(amount) FILTER (
               WHERE kind IN ('accrual', 'withdrawal_refund', 'adjustment', 'hold_release')
           ), 0) AS credits,
           COALESCE(SUM(amount) FILTER (
               WHERE kind IN ('withdrawal', 'accrual_reversal', 'hold')
           ), 0) AS debits,
           COALESCE(SUM(amount) FILTER (WHERE kind = 'withdrawal'), 0)
             - COALESCE(SUM(amount) FILTER (WHERE kind = 'withdrawal_refund'), 0) AS spent,
           COUNT(*) FILTER (WHERE kind = 'withdrawal') AS withdrawals
    FROM {ledger} GROUP BY user_id
)
SELECT COUNT(*) AS accounts,
       COUNT(*) FILTER (WHERE a.balance < 0) AS negative,
       COUNT(*) FILTER (
           WHERE a.balance <> COALESCE(l.credits, 0) - COALESCE(l.debits, 0)
       ) AS balance_mismatch,
       COUNT(*) FILTER (WHERE a.withdrawn <> COALESCE(l.spent, 0)) AS withdrawn_mismatch,
       COALESCE(SUM(l.withdrawals), 0) AS withdrawals
FROM {accounts} a LEFT JOIN l ON l.user_id = a.user_id
"""


async def integrity(dbs: Databases) -> dict[str, Any]:
    conn = await asyncpg.connect(dbs.dsn(dbs.bench))
    try:
        row = await conn.fetchrow(_INTEGRITY.format(**await table_names(conn)))
    finally:
        await conn.close()
    result: dict[str, Any] = {k: int(v) for k, v in dict(row or {}).items()}
    try:
        code, out, err = await run_command(
            [*gophermart_cmd(), "reconcile", "-d", dbs.service_dsn(dbs.bench)], timeout=120
        )
    except TimeoutError:  # an old tree's reconcile can be that slow: a result, not a crash
        code, out, err = -1, "", "reconcile did not finish within 120 s"
    text = (out.strip() or err.strip()).splitlines()
    result["reconcile_exit_code"] = code
    result["reconcile_summary"] = text[-1] if text else ""
    result["ok"] = (
        result["negative"] == 0
        and result["balance_mismatch"] == 0
        and result["withdrawn_mismatch"] == 0
        and code == 0
    )
    return result


# --------------------------------------------------------------------------- report


def _fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def render(results: dict[str, Any]) -> str:
    pg = {r["label"]: r for r in results.get("pgbench", [])}
    ceiling = pg.get("pgbench -S", {}).get("tps") or 0.0
    head = ("endpoint", "requests/s", "p50 ms", "p99 ms", "errors", "ratio to pgbench -S")
    rows: list[tuple[str, ...]] = []
    scenarios = (
        *results.get("endpoints", []),
        *results.get("withdraw_contention", []),
        *results.get("auth", []),
    )
    for r in scenarios:
        ratio = f"{r['rps'] / ceiling:.3f}" if ceiling else "n/a"
        rows.append(
            (
                r["label"],
                _fmt(r["rps"], 0),
                _fmt(r["p50_ms"], 2),
                _fmt(r["p99_ms"], 2),
                str(r["non_2xx"] + r["socket_errors"]),
                ratio,
            )
        )
    for r in pg.values():
        ratio = f"{r['tps'] / ceiling:.3f}" if ceiling else "n/a"
        avg = f"(avg {r['latency_avg_ms']:.2f})"
        name = f"{r['label']} (-c {r['clients']})"
        rows.append((name, _fmt(r["tps"], 0), avg, "-", str(r["failed"]), ratio))
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(head)]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return "| " + " | ".join([first, *rest]) + " |"

    out = []
    if rows:
        out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        out += [line(row) for row in rows]
    if "pgbench_error" in results:
        out.append(f"pgbench unavailable: {results['pgbench_error']}")
    update = pg.get("pgbench simple-update", {}).get("tps")
    withdraw = next((r for r in results.get("endpoints", []) if "withdraw" in r["label"]), None)
    if update and withdraw:
        out.append(f"\nwithdraw / pgbench simple-update: {withdraw['rps'] / update:.3f}")
    ledger = results.get("ledger")
    if ledger and withdraw:
        hc, hist = ledger["hold_capture"], ledger["history"]
        pairs = hc["rps"] / 2
        out.append(
            f"\nholds + captures: {pairs:,.0f} pairs/s ({hc['rps']:,.0f} req/s, p99 "
            f"{hc['p99_ms']:.2f} ms, errors {hc['non_2xx'] + hc['socket_errors']}) = "
            f"{pairs / withdraw['rps']:.2f}x one withdrawal's throughput (target >= 0.8)"
        )
        for h, clients in ((hist, "64"), (ledger.get("history_c8"), "8")):
            if h:
                out.append(
                    f"history, first page of {HISTORY_PAGE} of {HISTORY_ENTRIES:,} entries, "
                    f"-c {clients}: {h['rps']:,.0f} req/s, p50 {h['p50_ms']:.2f} ms, p99 "
                    f"{h['p99_ms']:.2f} ms (target p99 < 20 ms), errors "
                    f"{h['non_2xx'] + h['socket_errors']}"
                )

    a2 = results.get("argon2")
    if a2:
        h, v = a2["hash"], a2["verify"]
        out.append(
            f"\nargon2id (t={a2['time_cost']}, m={a2['memory_cost_kib']} KiB, "
            f"p={a2['parallelism']}), one at a time on the idle machine: "
            f"hash {h['wall_ms_p50']} ms (p99 {h['wall_ms_p99']}), {h['cpu_ms_p50']} ms CPU; "
            f"verify {v['wall_ms_p50']} ms (p99 {v['wall_ms_p99']}), {v['cpu_ms_p50']} ms CPU"
        )

    storm = results.get("login_storm")
    if storm:
        q, s, lg = storm["quiet"], storm["storm"], storm["logins"]
        out.append(
            f"\nlogin storm: GET balance p99 {q['p99_ms']:.2f} ms quiet ({q['rps']:,.0f} req/s)"
            f" -> {s['p99_ms']:.2f} ms during the storm ({s['rps']:,.0f} req/s); "
            f"ratio storm/quiet = {storm['ratio']:.2f} (target < {MAX_STORM_RATIO})"
        )
        dw = lg.get("during_wrk", {})
        out.append(
            f"  storm: {results['config']['storm_concurrency']} login loops; while wrk ran: "
            f"{dw.get('logins', 0)} logins ({dw.get('per_second', 0)}/s, {dw.get('ok', 0)} "
            f"answered 200), login p50 {dw.get('p50_ms', 0):,.0f} ms, "
            f"p99 {dw.get('p99_ms', 0):,.0f} ms; over the whole storm "
            f"{lg.get('logins', 0)} logins, statuses {lg.get('statuses', {})}"
        )
    elif "login_storm_error" in results:
        out.append(f"\nlogin storm: failed: {results['login_storm_error']}")

    accrual = results.get("accrual")
    if isinstance(accrual, str):
        out.append(f"\naccrual pipeline: {accrual}")
    elif accrual:
        out.append(
            "\naccrual pipeline (upload -> PROCESSED, as seen polling GET /api/user/orders):"
        )
        for a in accrual:
            limit = f"{a['rate_limit']}/min" if a["rate_limit"] else "no limit"
            out.append(
                f"  {limit:>9}: {a['processed']}/{a['orders']} PROCESSED in {a['seconds']} s "
                f"= {a['orders_per_s']} orders/s; latency p50 {a['latency_p50_ms']:,.0f} ms, "
                f"p99 {a['latency_p99_ms']:,.0f} ms, max {a['latency_max_ms']:,.0f} ms; "
                f"{a['sim_requests']} polls, {a['sim_throttled']} answered 429 "
                f"({a['throttled_after_first']} after the first: {a['throttled_in_flight']} "
                f"already in flight with it, {a['throttled_later']} later)"
                + (f"; {a['wrong_accruals']} WRONG accruals" if a["wrong_accruals"] else "")
            )

    integ = results.get("integrity")
    if integ:
        verdict = "OK" if integ["ok"] else "FAILED"
        answered = (
            f" ({integ['withdraw_2xx']} answered 200 to wrk, the rest were in flight at its end)"
            if "withdraw_2xx" in integ
            else ""
        )
        out.append(
            f"\nintegrity {verdict}: {integ['accounts']} accounts, {integ['negative']} negative, "
            f"{integ['balance_mismatch']} balance != accruals - withdrawals, "
            f"{integ['withdrawn_mismatch']} withdrawn != withdrawals; "
            f"{integ['withdrawals']} withdrawals in the ledger{answered}; "
            f"reconcile exit {integ['reconcile_exit_code']}: {integ['reconcile_summary']}"
        )
    conns = results.get("postgres_connections")
    if conns:
        out.append(
            f"PostgreSQL connections: peak {conns['peak_client_connections']} of "
            f"max_connections {conns['max_connections']}, "
            f"the service's own peak {conns['peak_service_connections']}"
        )
    targets = results.get("targets")
    if targets:
        out.append("\ntargets (issue 5):")
        out += [f"  [{'x' if ok else ' '}] {name}" for name, ok in targets.items()]
    problems = results.get("service_log_problems")
    if problems:
        out.append(f"\nservice logs: {problems}")
    return "\n".join(out)


def judge(results: dict[str, Any]) -> dict[str, bool]:
    by_label = {r["label"]: r for r in results.get("endpoints", [])}
    targets: dict[str, bool] = {}
    reads = [by_label.get(k) for k in ("GET /api/user/balance", "GET /api/user/orders")]
    if all(reads):
        ok = [r for r in reads if r is not None]

        def reads_ok(rps: int) -> bool:
            return all(
                r["rps"] >= rps and r["p99_ms"] <= MAX_READ_P99_MS and not r["non_2xx"] for r in ok
            )

        targets[f"floor: reads >= {FLOOR_READ_RPS} req/s, p99 <= 50 ms"] = reads_ok(FLOOR_READ_RPS)
        targets[f"goal: reads >= {GOAL_READ_RPS} req/s, p99 <= 50 ms"] = reads_ok(GOAL_READ_RPS)
    w = by_label.get("POST /api/user/balance/withdraw")
    if w is not None:
        clean = not w["non_2xx"]
        targets[f"floor: withdraw >= {FLOOR_WITHDRAW_RPS} req/s"] = (
            clean and w["rps"] >= FLOOR_WITHDRAW_RPS
        )
        targets[f"goal: withdraw >= {GOAL_WITHDRAW_RPS} req/s"] = (
            clean and w["rps"] >= GOAL_WITHDRAW_RPS
        )
    if results.get("integrity"):
        targets["zero overdrafts, balances match the ledger"] = bool(results["integrity"]["ok"])
    if results.get("login_storm"):
        targets[f"login storm: balance p99 < {MAX_STORM_RATIO}x quiet"] = (
            results["login_storm"]["ratio"] < MAX_STORM_RATIO
        )
    return targets


# --------------------------------------------------------------------------- main


def _meta() -> dict[str, Any]:
    def first_line(cmd: list[str]) -> str:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        lines = (done.stdout or done.stderr).strip().splitlines()
        return lines[0] if lines else ""

    return {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "wrk": first_line(["wrk", "--version"]),
        "pgbench": first_line(["pgbench", "--version"]),
        "git_commit": first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        # Read-only: --no-optional-locks keeps `git status` from rewriting the index.
        "src_uncommitted_changes": first_line(
            ["git", "--no-optional-locks", "-C", str(ROOT), "status", "--porcelain", "--", "src"]
        )
        != "",
        "note": "service, PostgreSQL and the load generators share the same machine",
    }


async def bench(cfg: Config, dbs: Databases, procs: Processes, results: dict[str, Any]) -> None:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    for old_log in RESULTS_DIR.glob("*.log"):
        old_log.unlink()
    if not cfg.accrual_only:
        try:
            results["pgbench"] = [asdict(r) for r in await run_pgbench(cfg, dbs)]
        except (RuntimeError, OSError, asyncpg.PostgresError) as exc:
            results["pgbench_error"] = str(exc)
            log(f"pgbench failed, continuing without the ceiling: {exc}")

    if not cfg.accrual_only:
        await wait_until_idle(cfg.wait_idle)
        results["argon2"] = await asyncio.to_thread(argon2_cost)
    await dbs.create(dbs.bench)
    log(f"created database {dbs.bench}")
    async with ConnectionWatch(dbs) as watch:
        try:
            seeded = await http_section(cfg, dbs, procs, results)
            await accrual_section(cfg, dbs, procs, seeded, results)
        finally:
            results["postgres_connections"] = watch.summary()
    results["integrity"] = await integrity(dbs)
    withdraws = [
        e
        for e in (*results.get("endpoints", []), *results.get("withdraw_contention", []))
        if "withdraw" in e["label"]
    ]
    if withdraws:
        results["integrity"]["withdraw_2xx"] = sum(e["requests"] - e["non_2xx"] for e in withdraws)


async def http_section(
    cfg: Config, dbs: Databases, procs: Processes, results: dict[str, Any]
) -> Seeded:
    """Seed, then the wrk scenarios and the login storm, on one service without a worker."""
    service = await start_service(procs, cfg, dbs.service_dsn(dbs.bench), "service-http.log")
    work = Path(tempfile.mkdtemp(prefix="gophermart-bench-"))
    try:
        seeded = await seed(cfg, dbs, service)
        results["seed"] = {
            "users": len(seeded.logins),
            "orders": seeded.orders,
            "tokens": len(seeded.tokens),
            "seconds": round(seeded.seconds, 1),
        }
        if cfg.accrual_only:
            return seeded
        tokens_path = work / "tokens.txt"
        tokens_path.write_text("\n".join(seeded.tokens) + "\n")
        logins_path = work / "logins.txt"
        logins_path.write_text("\n".join(seeded.sample) + "\n")

        log("warming up")
        for script in ("balance.lua", "orders.lua"):
            await run_wrk(cfg, service.url, script, tokens_path, cfg.warmup, f"warm-up {script}")
        endpoints = []
        for script, label in (
            ("balance.lua", "GET /api/user/balance"),
            ("orders.lua", "GET /api/user/orders"),
            ("withdraw.lua", "POST /api/user/balance/withdraw"),
        ):
            if cfg.reads_only and script == "withdraw.lua":
                continue
            endpoints.append(
                await run_wrk(cfg, service.url, script, tokens_path, cfg.duration, label)
            )
            results["endpoints"] = [asdict(r) for r in endpoints]
        if cfg.reads_only:
            return seeded
        results["ledger"] = await ledger_scenarios(cfg, dbs, service.url, tokens_path, work)
        contention = await withdraw_contention(cfg, service.url, seeded.tokens, work)
        results["withdraw_contention"] = [asdict(r) for r in contention]
        results["auth"] = [asdict(r) for r in await auth_latency(cfg, service.url, logins_path)]
        try:
            storm = await login_storm(cfg, procs, service.url, tokens_path, logins_path)
            results["login_storm"] = {
                "quiet": asdict(storm.quiet),
                "storm": asdict(storm.storm),
                "ratio": storm.ratio,
                "logins": storm.logins,
            }
        except (RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as exc:
            results["login_storm_error"] = str(exc)
            log(f"login storm failed: {exc}")
        return seeded
    finally:
        code = procs.stop(service.proc)
        results["service_exit_code"] = code
        if code:
            log(f"service exited with {code} after SIGTERM (expected 0)")
        shutil.rmtree(work, ignore_errors=True)


async def accrual_section(
    cfg: Config, dbs: Databases, procs: Processes, seeded: Seeded, results: dict[str, Any]
) -> None:
    if cfg.skip_accrual:
        results["accrual"] = "skipped (--skip-accrual)"
        return
    if not await simulator_available():
        results["accrual"] = "simulator unavailable"
        log("simulator unavailable: skipping the accrual pipeline")
        return
    phases: list[tuple[str, int, int | None]] = [
        ("accrual, no rate limit", cfg.accrual_orders, None)
    ]
    if cfg.limited_orders:
        phases.append((f"accrual, {cfg.rate_limit}/min", cfg.limited_orders, cfg.rate_limit))
    accrual = []
    for phase, (label, n, limit) in enumerate(phases, start=1):
        try:
            r = await accrual_phase(
                cfg, procs, dbs, seeded, label=label, phase=phase, n_orders=n, rate_limit=limit
            )
        except (RuntimeError, OSError, httpx.HTTPError) as exc:
            log(f"{label}: simulator unavailable or failed: {exc}")
            results["accrual"] = f"simulator unavailable ({exc})"
            return
        r.log_problems = log_problems(RESULTS_DIR / f"service-accrual-{phase}.log")
        accrual.append(asdict(r))
        results["accrual"] = accrual


def _interrupt(signum: int, _frame: object) -> None:
    """SIGTERM (e.g. from nox or a CI timeout) cleans up like Ctrl-C does."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def run_stopping_processes(main: Coroutine[Any, Any, T], procs: Processes) -> T | None:
    """``asyncio.run(main)``, then stop every process it started, however it ended.

    SIGTERM counts as Ctrl-C; either returns None (the caller exits 130), and a second
    one during the clean-up is ignored, so no service is left running.
    """
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return asyncio.run(main)
    except KeyboardInterrupt:
        log("interrupted")
        return None
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        procs.stop_all()


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv)
    if cfg.service_src:
        # Children (service, simulator, reconcile) import the package from that tree.
        path = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [cfg.service_src, path]))
        os.environ[SERVICE_SRC_ENV] = cfg.service_src
    ensure_wrk()
    if shutil.which("pgbench") is None:
        raise SystemExit("pgbench is missing (Debian: apt-get install -y postgresql-client)")
    gophermart_cmd()
    results: dict[str, Any] = {"config": asdict(cfg), "meta": _meta()}
    busy = asyncio.run(wait_until_idle(cfg.wait_idle))
    results["meta"]["busy_at_start_pct"] = round(busy, 1)
    if busy > BUSY_WARNING_PCT:
        log(f"warning: the machine is already {busy:.0f} % busy: figures will be lower")
    dbs = Databases(cfg.pg_url)
    procs = Processes()
    started = time.monotonic()
    failed: BaseException | None = None
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        asyncio.run(bench(cfg, dbs, procs, results))
    except KeyboardInterrupt as exc:
        failed = exc
        log("interrupted: cleaning up")
    except Exception as exc:
        failed = exc
        log(f"benchmark failed: {type(exc).__name__}: {exc}")
    finally:
        # Clean-up is bounded in time; a second Ctrl-C must not leave databases behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        procs.stop_all()
        asyncio.run(dbs.drop_all())
    results["meta"]["seconds"] = round(time.monotonic() - started, 1)
    results["meta"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["service_log_problems"] = {
        p.name: found
        for p in sorted(RESULTS_DIR.glob("service-*.log"))
        if any((found := log_problems(p)).values())
    }
    if failed is not None:
        results["error"] = f"{type(failed).__name__}: {failed}"
    results["targets"] = judge(results)
    out = Path(cfg.output).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(render(results))
    print(f"\nthe run took {results['meta']['seconds']} s; results in {out}")
    if isinstance(failed, KeyboardInterrupt):
        return 130
    return 1 if failed is not None else 0


if __name__ == "__main__":
    raise SystemExit(main())
