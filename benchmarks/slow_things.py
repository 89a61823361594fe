"""One slow thing stays one slow thing (SPEC "Failure behaviour", issue 15): what a
bystander sees while somebody else's trouble goes on, on PostgreSQL with one server
process, for this tree or another (``--service-src DIR``, or ``--baseline COMMIT``).

    .venv/bin/python benchmarks/slow_things.py                      # the working tree
    .venv/bin/python benchmarks/slow_things.py --baseline a62d8ab   # an older one

1. **A row lock**: a connection holds the owner's account row ``FOR UPDATE`` for
   ``--lock-seconds`` while the owner retries a withdrawal once a second; a bystander,
   who never touches that row, reads their balance in a loop.
2. **Huge listings**: ``--listers`` clients fetch the whole list of a user with
   ``--heavy-orders`` orders, over and over; the bystander reads their balance.

Each prints the bystander's reads (how many, how many not 200, p50 and p99 in ms) in
that phase and in a quiet one just before, and what the log said. Creates and drops its
own database; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pairs
import run
from large import luhn_sql
from run import ROOT, Databases, Processes, log

OWNER, BYSTANDER, HEAVY = "slow-owner", "slow-bystander", "slow-heavy"


@dataclass
class Reads:
    """A bystander's balance reads over one phase."""

    latencies: list[float] = field(default_factory=list)
    failures: dict[int, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        ms = sorted(1000 * x for x in self.latencies)
        p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))] if ms else None
        return {
            "reads": len(ms) + sum(self.failures.values()),
            "not_200": dict(self.failures),
            "p50_ms": round(statistics.median(ms), 1) if ms else None,
            "p99_ms": round(p99, 1) if p99 is not None else None,
        }


async def bystander(url: str, token: str, seconds: float) -> Reads:
    reads = Reads()
    deadline = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as client:
        while time.monotonic() < deadline:
            started = time.monotonic()
            answer = await client.get("/api/user/balance", headers=headers)
            if answer.status_code == 200:
                reads.latencies.append(time.monotonic() - started)
            else:
                reads.failures[answer.status_code] = reads.failures.get(answer.status_code, 0) + 1
    return reads


async def sign_up(url: str, login: str) -> str:
    async with httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as client:
        answer = await client.post("/api/user/register", json={"login": login, "password": "pw"})
        answer.raise_for_status()
        return answer.headers["authorization"].removeprefix("Bearer ")


async def fund(dsn: str, login: str, cents: int) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        user_id: int = await conn.fetchval(
            "SELECT id FROM gophermart_users WHERE login = $1", login
        )
        await conn.execute(
            "UPDATE gophermart_accounts SET balance = balance + $2 WHERE user_id = $1",
            user_id,
            cents,
        )
        return user_id
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def row_locked(dsn: str, user_id: int) -> AsyncIterator[None]:
    """What an operator's psql does: ``BEGIN; SELECT ... FOR UPDATE`` and wait."""
    conn = await asyncpg.connect(dsn)
    tx = conn.transaction()
    await tx.start()
    try:
        await conn.execute(
            "SELECT 1 FROM gophermart_accounts WHERE user_id = $1 FOR UPDATE", user_id
        )
        yield
    finally:
        await tx.rollback()
        await conn.close()


async def owner_retries(url: str, token: str, seconds: float) -> dict[int, int]:
    """The owner withdraws a point once a second (a fresh order each time)."""
    codes: dict[int, int] = {}
    deadline = time.monotonic() + seconds
    n = 0
    async with httpx.AsyncClient(base_url=url, timeout=60, trust_env=False) as client:
        while time.monotonic() < deadline:
            n += 1
            number = run.luhn_complete(f"61{n:08d}")
            answer = await client.post(
                "/api/user/balance/withdraw",
                json={"order": number, "sum": 1},
                headers={"Authorization": f"Bearer {token}"},
            )
            codes[answer.status_code] = codes.get(answer.status_code, 0) + 1
            await asyncio.sleep(1.0)
    return codes


async def row_lock_phase(
    url: str, dsn: str, tokens: dict[str, str], seconds: float
) -> dict[str, Any]:
    owner_id = await fund(dsn, OWNER, 10_000_00)
    quiet = await bystander(url, tokens[BYSTANDER], 5)
    async with row_locked(dsn, owner_id):
        during, owner = await asyncio.gather(
            bystander(url, tokens[BYSTANDER], seconds),
            owner_retries(url, tokens[OWNER], seconds),
        )
    return {"quiet": quiet.summary(), "during_lock": during.summary(), "owner": owner}


async def seed_heavy(dsn: str, orders: int) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET synchronous_commit = off")
        heavy: int = await conn.fetchval("SELECT id FROM gophermart_users WHERE login = $1", HEAVY)
        base = "(7::bigint * 10000000000000 + n)"
        await conn.execute(
            "INSERT INTO gophermart_orders (number, user_id, status,"
            " uploaded_at, next_attempt_at, attempts)"
            f" SELECT {luhn_sql(base, 14)}, $1, 'INVALID',"
            " $2::timestamptz - make_interval(secs => n), NULL, 1"
            " FROM generate_series(0, $3 - 1) AS n",
            heavy,
            datetime.now(UTC),
            orders,
        )
        await conn.execute("VACUUM ANALYZE gophermart_orders")
        return heavy
    finally:
        await conn.close()


async def lister(url: str, token: str, deadline: float, sizes: list[int]) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=120, trust_env=False) as client:
        while time.monotonic() < deadline:
            answer = await client.get(
                "/api/user/orders", headers={"Authorization": f"Bearer {token}"}
            )
            sizes.append(len(answer.content) if answer.status_code == 200 else -answer.status_code)


async def listings_phase(
    url: str, dsn: str, tokens: dict[str, str], listers: int, orders: int, seconds: float
) -> dict[str, Any]:
    await seed_heavy(dsn, orders)
    quiet = await bystander(url, tokens[BYSTANDER], 5)
    sizes: list[int] = []
    deadline = time.monotonic() + seconds
    during, *_ = await asyncio.gather(
        bystander(url, tokens[BYSTANDER], seconds),
        *(lister(url, tokens[HEAVY], deadline, sizes) for _ in range(listers)),
    )
    return {
        "quiet": quiet.summary(),
        "during_listings": during.summary(),
        "listings_answered": sum(1 for s in sizes if s > 0),
        "listings_failed": {-s: sizes.count(s) for s in set(sizes) if s <= 0},
    }


async def main_async(args: argparse.Namespace, procs: Processes) -> dict[str, Any]:
    cfg = run.parse_args(["--workers", "1", "--pg-url", args.pg_url])
    tree = pairs.Tree("tree", args.src, Databases(cfg.pg_url))
    pairs.use_tree(tree)
    run.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    await tree.dbs.create(tree.dbs.bench)
    dsn = tree.dbs.dsn(tree.dbs.bench)
    try:
        service = await run.start_service(
            procs, cfg, tree.dbs.service_dsn(tree.dbs.bench), "slow-things.log"
        )
        try:
            tokens = {
                login: await sign_up(service.url, login) for login in (OWNER, BYSTANDER, HEAVY)
            }
            log(f"row lock: held {args.lock_seconds:g}s while its owner retries")
            lock = await row_lock_phase(service.url, dsn, tokens, args.lock_seconds)
            log(f"huge listings: {args.listers} clients, {args.heavy_orders:,} orders each time")
            listings = await listings_phase(
                service.url, dsn, tokens, args.listers, args.heavy_orders, args.duration
            )
        finally:
            procs.stop(service.proc)
        problems = run.log_problems(service.log_path)
        unavailable = service.log_path.read_text(errors="replace").count("database unavailable")
    finally:
        await tree.dbs.drop_all()
    return {
        "src": args.src,
        "row_lock": lock,
        "huge_listings": listings,
        "log": {**problems, "database_unavailable_lines": unavailable},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--service-src", dest="src", default=str(ROOT / "src"))
    parser.add_argument("--baseline", help="a commit: measure its tree instead")
    parser.add_argument("--lock-seconds", type=float, default=20.0)
    parser.add_argument("--listers", type=int, default=6)
    parser.add_argument("--heavy-orders", type=int, default=300_000)
    parser.add_argument("--duration", type=float, default=20.0)
    args = parser.parse_args(argv)
    if args.baseline:
        args.src = pairs.extract(args.baseline, Path(tempfile.mkdtemp(prefix="slow-things-")))
    procs = Processes()
    results = run.run_stopping_processes(main_async(args, procs), procs)
    if results is None:
        return 1
    for phase in ("row_lock", "huge_listings"):
        log(f"{phase}: {results[phase]}")
    log(f"log: {results['log']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
