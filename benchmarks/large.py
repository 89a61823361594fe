"""Flat cost as the data grows: the working tree on a small database and on a large one.

    .venv/bin/python benchmarks/large.py                      # 1,000,000 users, 10,000,000 orders
    .venv/bin/python benchmarks/large.py --users 100000       # a smaller large one
    .venv/bin/python benchmarks/large.py --seed-only --keep   # seed, time it, keep the database

1. **Seeding, timed**: a large database is created and migrated by the service (which
   also registers one user through the API, whose argon2 hash every seeded user then
   shares), then filled *inside PostgreSQL* with ``INSERT ... SELECT FROM
   generate_series`` in chunks: ``--users`` users with their accounts, ``--orders-per-user``
   PROCESSED orders each (valid Luhn numbers, computed in SQL) and a ledger credit per
   order, so every balance equals its ledger. One more user, ``bench-heavy``, gets
   ``--heavy-orders`` orders. Then ``VACUUM ANALYZE``. Each step's time is printed.
2. **Plans**: ``EXPLAIN (ANALYZE, BUFFERS)`` of every hot statement on the large database
   (the balance, the whole list and a page of orders, the coalesced reads, a
   withdrawal's read and its write): each must use an index, never a scan of a table.
3. **Pairs**: the small database (``--small-users``, seeded as pairs.py does, with as
   many orders per user as the large one, so both answer the same sizes)
   and the large one, served by the same tree one right after the other, ``--pairs``
   times, alternating: the per-pair ratio large/small per endpoint and its median.
4. **The heavy user**: ``GET /api/user/orders`` for the user with 5,000 orders alone
   (whole list, then ``?limit=50``): requests/s, p50, p99, and the answer checked to
   hold every order.
5. Drops both databases (unless ``--keep``) and writes ``benchmarks/results/large.json``.

Everything runs against 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pairs
import run
from pairs import Tree
from run import PASSWORD, PROBE_LOGIN, RESULTS_DIR, ROOT, Config, Databases, Processes, log

HEAVY_LOGIN = "bench-heavy"
SHARE_CENTS = 10_000_000  # 100,000.00 points per seeded order


def luhn_sql(base: str, digits: int) -> str:
    """SQL for the Luhn-complete text of the bigint expression ``base`` (``digits``
    long): the check digit computed digit by digit, doubled from the right."""
    terms = []
    for j in range(digits):
        d = f"(({base}) / {10**j} % 10)"
        terms.append(f"(2 * {d} - 9 * ({d} >= 5)::int)" if j % 2 == 0 else d)
    total = " + ".join(terms)
    return f"(({base})::text || ((10 - ({total}) % 10) % 10)::text)"


def _orders_sql(users_from: str, orders_per_user: int, prefix: int) -> str:
    """The orders of the users of ``users_from`` (a set of ``u``): the number is
    ``prefix``, the user id in 9 digits and the order's index in 4, plus its check digit."""
    base = f"({prefix}::bigint * 10000000000000 + u::bigint * 10000 + n)"
    return (
        "INSERT INTO gophermart_orders (number, user_id, status, accrual, uploaded_at,"
        " next_attempt_at, attempts)"
        f" SELECT {luhn_sql(base, 14)}, u, 'PROCESSED', {SHARE_CENTS},"
        " $1::timestamptz - make_interval(days => n, secs => u % 3600), NULL, 1"
        f" FROM {users_from}, generate_series(0, {orders_per_user - 1}) AS n"
    )


async def seed_large(cfg: Config, args: argparse.Namespace, dsn: str) -> dict[str, Any]:
    """Fill a migrated database holding the probe user; returns the steps' timings."""
    timings: dict[str, float] = {}
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET synchronous_commit = off")  # the seed only; not the service
        password_hash = await conn.fetchval(
            "SELECT password_hash FROM gophermart_users WHERE login = $1", PROBE_LOGIN
        )
        first = int(await conn.fetchval("SELECT max(id) FROM gophermart_users")) + 1
        last = first + args.users - 1
        now = datetime.now(UTC)
        started = time.monotonic()
        chunk = args.chunk
        for low in range(first, last + 1, chunk):
            high = min(low + chunk - 1, last)
            t0 = time.monotonic()
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO gophermart_users (id, login, password_hash, created_at)"
                    " SELECT g, 'bench-' || lpad(g::text, 7, '0'), $1, $2"
                    " FROM generate_series($3::bigint, $4::bigint) AS g",
                    password_hash,
                    now - timedelta(days=30),
                    low,
                    high,
                )
                await conn.execute(
                    "INSERT INTO gophermart_accounts (user_id, balance, withdrawn)"
                    " SELECT g, $1::bigint, 0 FROM generate_series($2::bigint, $3::bigint) AS g",
                    SHARE_CENTS * args.orders_per_user,
                    low,
                    high,
                )
                await conn.execute(
                    _orders_sql(
                        f"generate_series({low}::bigint, {high}::bigint) AS u",
                        args.orders_per_user,
                        4,
                    ),
                    now,
                )
                await conn.execute(
                    "INSERT INTO gophermart_ledger (user_id, kind,"
                    " order_number, amount, created_at)"
                    " SELECT user_id, 'accrual', number, accrual,"
                    " uploaded_at FROM gophermart_orders"
                    " WHERE user_id BETWEEN $1 AND $2",
                    low,
                    high,
                )
            done = high - first + 1
            log(
                f"seeded users {low:,}-{high:,} ({done:,}/{args.users:,}) "
                f"in {time.monotonic() - t0:.1f}s, {time.monotonic() - started:.0f}s so far"
            )
        timings["users_orders_ledger_s"] = round(time.monotonic() - started, 1)

        t0 = time.monotonic()
        heavy = last + 1
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO gophermart_users (id, login,"
                " password_hash, created_at) VALUES ($1, $2, $3, $4)",
                heavy,
                HEAVY_LOGIN,
                password_hash,
                now,
            )
            await conn.execute(
                "INSERT INTO gophermart_accounts (user_id, balance, withdrawn) VALUES ($1, $2, 0)",
                heavy,
                SHARE_CENTS * args.heavy_orders,
            )
            await conn.execute(
                _orders_sql(f"(SELECT {heavy}::bigint AS u) AS h", args.heavy_orders, 5), now
            )
            await conn.execute(
                "INSERT INTO gophermart_ledger (user_id, kind, order_number, amount, created_at)"
                " SELECT user_id, 'accrual', number, accrual, uploaded_at FROM gophermart_orders"
                " WHERE user_id = $1",
                heavy,
            )
            await conn.execute(
                "SELECT setval(pg_get_serial_sequence('gophermart_users', 'id'), $1)", heavy
            )
        timings["heavy_user_s"] = round(time.monotonic() - t0, 1)

        t0 = time.monotonic()
        await conn.execute("VACUUM ANALYZE")
        timings["vacuum_analyze_s"] = round(time.monotonic() - t0, 1)
        # The seed's dirty pages written now, not by a checkpoint during the measurements.
        t0 = time.monotonic()
        await conn.execute("CHECKPOINT")
        timings["checkpoint_s"] = round(time.monotonic() - t0, 1)
        sizes = await conn.fetch(
            "SELECT relname, pg_total_relation_size(oid) AS bytes, reltuples::bigint AS rows"
            " FROM pg_class WHERE relname IN ('gophermart_users',"
            " 'gophermart_accounts', 'gophermart_orders', 'gophermart_ledger')"
        )
        timings["database_bytes"] = int(
            await conn.fetchval("SELECT pg_database_size(current_database())")
        )
        timings["tables"] = {r["relname"]: {"bytes": r["bytes"], "rows": r["rows"]} for r in sizes}
    finally:
        await conn.close()
    return timings


async def explain(dsn: str, user_id: int, heavy_id: int) -> dict[str, str]:
    from gophermart.adapters.stores.postgres import statements as pg
    from gophermart.adapters.stores.postgres.runner import compiled as compile_for_asyncpg
    from gophermart.adapters.stores.sql import statements as st

    conn = await asyncpg.connect(dsn)
    try:
        last_heavy = await conn.fetchval(
            "SELECT number FROM gophermart_orders WHERE user_id ="
            " $1 ORDER BY uploaded_at DESC, id DESC"
            " OFFSET 49 LIMIT 1",
            heavy_id,
        )
        other = user_id + 7919
        fresh = "40000000000000"
        cases: list[tuple[str, st.Statement, dict[str, Any]]] = [
            ("balance", st.ACCOUNT, {"user_id": user_id}),
            ("balance, coalesced (2 users)", pg.ACCOUNTS_OF, {"user_ids": [user_id, other]}),
            ("orders", st.ORDERS_PAGE, {"user_id": user_id, "limit": 1000}),
            ("orders, coalesced (2 users)", pg.ORDERS_OF_USERS, {"user_ids": [user_id, other]}),
            (
                "orders of the heavy user: a chunk of 1,000",
                st.ORDERS_PAGE,
                {"user_id": heavy_id, "limit": 1000},
            ),
            ("a page of 50 of them", st.ORDERS_PAGE, {"user_id": heavy_id, "limit": 50}),
            (
                "the next page",
                st.ORDERS_PAGE_BEFORE,
                {"user_id": heavy_id, "limit": 50, "before": last_heavy},
            ),
            (
                "withdrawal: the read",
                st.FOR_WITHDRAWAL,
                {"user_id": user_id, "order_number": fresh},
            ),
            (
                "withdrawal: the read, coalesced (2)",
                pg.FOR_WITHDRAWALS,
                {"asked_users": [user_id, other], "asked_numbers": [fresh, fresh[:-1] + "1"]},
            ),
            (
                "withdrawal: the group commit (2), rolled back",
                pg.WITHDRAW_BATCH,
                {
                    "users": [user_id, other],
                    "numbers": [fresh, fresh[:-1] + "1"],
                    "amounts": [1, 1],
                    "ats": [datetime.now(UTC)] * 2,
                },
            ),
        ]
        plans: dict[str, str] = {}
        for label, statement, params in cases:
            compiled = compile_for_asyncpg(statement)
            tx = conn.transaction()
            await tx.start()
            try:
                rows = await conn.fetch(
                    "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + compiled.sql,
                    *compiled.args(params),
                )
            finally:
                await tx.rollback()
            plans[label] = "\n".join(r[0] for r in rows)
    finally:
        await conn.close()
    return plans


async def heavy_user_reads(
    cfg: Config, procs: Processes, tree: Tree, work: Path, token: str, orders: int
) -> list[dict[str, Any]]:
    """wrk on the heavy user's orders alone: the whole list, then a page."""
    pairs.use_tree(tree)
    tokens = work / "tokens-heavy.txt"
    tokens.write_text(token + "\n")
    service = await run.start_service(
        procs, cfg, tree.dbs.service_dsn(tree.dbs.bench), "large-heavy.log"
    )
    out = []
    try:
        async with httpx.AsyncClient(base_url=service.url, timeout=30, trust_env=False) as c:
            whole = await c.get("/api/user/orders", headers={"Authorization": f"Bearer {token}"})
            page = await c.get(
                "/api/user/orders",
                params={"limit": 50},
                headers={"Authorization": f"Bearer {token}"},
            )
        listed = len(whole.json())
        log(f"the heavy user's list: {listed:,} orders, {len(whole.content):,} bytes")
        if whole.status_code != 200 or listed != orders:
            raise RuntimeError(f"the heavy user's list: {whole.status_code}, {listed} orders")
        if page.status_code != 200 or len(page.json()) != 50:
            raise RuntimeError(f"the heavy user's first page: {page.status_code}")
        for script, label, extra in (
            ("orders.lua", "heavy user: whole list", {}),
            ("orders.lua", "heavy user: ?limit=50", {"BENCH_QUERY": "?limit=50"}),
        ):
            result = await run.run_wrk(
                cfg,
                service.url,
                script,
                tokens,
                cfg.duration,
                label,
                connections=8,
                extra_env=extra,
            )
            out.append({**asdict(result), "orders_listed": listed if not extra else 50})
    finally:
        procs.stop(service.proc)
    return out


async def main_async(args: argparse.Namespace, cfg: Config, procs: Processes) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="gophermart-large-"))
    small = Tree("small", str(ROOT / "src"), Databases(cfg.pg_url))
    large = Tree("large", str(ROOT / "src"), Databases(cfg.pg_url))
    out: dict[str, Any] = {}
    try:
        # The large one: migrated and probed by the service, then filled in SQL.
        pairs.use_tree(large)
        await large.dbs.create(large.dbs.bench)
        service = await run.start_service(
            procs, cfg, large.dbs.service_dsn(large.dbs.bench), "large-seed.log"
        )
        try:
            async with httpx.AsyncClient(base_url=service.url, timeout=30, trust_env=False) as c:
                r = await c.post(
                    "/api/user/register", json={"login": PROBE_LOGIN, "password": PASSWORD}
                )
                assert r.status_code == 200, r.text
            started = time.monotonic()
            out["seed"] = await seed_large(cfg, args, large.dbs.dsn(large.dbs.bench))
            out["seed"]["total_s"] = round(time.monotonic() - started, 1)
            log(f"seeding took {out['seed']['total_s']}s: {json.dumps(out['seed'])}")
            first = 2
            step = max(1, args.users // cfg.tokens)
            sample = [f"bench-{first + i * step:07d}" for i in range(cfg.tokens)]
            tokens = await run.log_in_all(service.url, sample)
            heavy_token = (await run.log_in_all(service.url, [HEAVY_LOGIN]))[0]
        finally:
            procs.stop(service.proc)
        large.tokens_path = work / "tokens-large.txt"
        large.tokens_path.write_text("\n".join(tokens) + "\n")
        conn = await asyncpg.connect(large.dbs.dsn(large.dbs.bench))
        try:
            heavy_id = int(
                await conn.fetchval("SELECT id FROM gophermart_users WHERE login = $1", HEAVY_LOGIN)
            )
        finally:
            await conn.close()
        out["plans"] = await explain(
            large.dbs.dsn(large.dbs.bench), first + args.users // 2, heavy_id
        )
        for label, plan in out["plans"].items():
            log(f"plan, {label}:\n{plan}")
            if "Seq Scan on orders" in plan or "Seq Scan on ledger" in plan:
                log(f"warning: {label} scans a whole table")
        if args.seed_only:
            return out

        # The same orders per user as the large one: equal answers, only the tables differ.
        small_cfg = replace(cfg, users=args.small_users, orders_per_user=args.orders_per_user)
        await pairs.prepare(small_cfg, procs, small, work)
        runs: dict[str, list[list[run.WrkResult]]] = {"baseline": [], "working": []}
        for pair in range(1, args.pairs + 1):
            order = [("baseline", small), ("working", large)]
            if pair % 2 == 0:
                order.reverse()
            log(f"pair {pair}/{args.pairs}: {order[0][1].label} first")
            for key, tree in order:
                runs[key].append(await pairs.measure(cfg, procs, tree, pair))
        out["rows"] = pairs.summarise(runs)
        out["runs"] = {k: [[asdict(r) for r in p] for p in v] for k, v in runs.items()}
        out["heavy"] = await heavy_user_reads(
            cfg, procs, large, work, heavy_token, args.heavy_orders
        )
        out["integrity"] = {}
        for tree in (small, large):
            pairs.use_tree(tree)
            out["integrity"][tree.label] = await run.integrity(tree.dbs)
        return out
    finally:
        if not args.keep:
            for tree in (small, large):
                await tree.dbs.drop_all()
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=1_000_000, help="users in the large database")
    p.add_argument("--orders-per-user", type=int, default=10)
    p.add_argument("--heavy-orders", type=int, default=5_000, help="orders of bench-heavy")
    p.add_argument("--chunk", type=int, default=100_000, help="users per seeding transaction")
    p.add_argument("--small-users", type=int, default=10_000, help="users in the small one")
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--seed-only", action="store_true", help="seed, explain, stop")
    p.add_argument("--keep", action="store_true", help="do not drop the databases")
    p.add_argument("--output", type=Path, default=RESULTS_DIR / "large.json")
    args, rest = p.parse_known_args(argv)
    cfg = run.parse_args([*rest, "--skip-accrual"])
    cfg = replace(cfg, tokens=64 if "--tokens" not in rest else cfg.tokens)
    run.ensure_wrk()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    procs = Processes()
    started = time.monotonic()
    out = run.run_stopping_processes(main_async(args, cfg, procs), procs)
    if out is None:
        return 130
    out["meta"] = {
        "users": args.users,
        "orders_per_user": args.orders_per_user,
        "heavy_orders": args.heavy_orders,
        "small_users": args.small_users,
        "pairs": args.pairs,
        "duration": cfg.duration,
        "workers": cfg.workers,
        "seconds": round(time.monotonic() - started, 1),
    }
    args.output.write_text(json.dumps(out, indent=2, default=str) + "\n")
    if "rows" in out:
        meta = {
            "baseline": f"small ({args.small_users:,} users)",
            "working": f"large ({args.users:,} users)",
            "pairs": args.pairs,
            "threads": cfg.threads,
            "connections": cfg.connections,
            "duration": cfg.duration,
            "workers": cfg.workers,
            "users": args.users,
            "tokens": cfg.tokens,
            "integrity": out.get("integrity", {}),
        }
        print()
        print(pairs.render(out["rows"], [], meta))
        for h in out.get("heavy", []):
            print(
                f"{h['label']}: {h['rps']:,.0f} req/s, p50 {h['p50_ms']:.1f} ms, "
                f"p99 {h['p99_ms']:.1f} ms ({h['orders_listed']:,} orders per answer)"
            )
    print(f"\nseeding: {json.dumps(out.get('seed', {}))}")
    print(f"the run took {out['meta']['seconds']} s; results in {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
