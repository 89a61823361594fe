"""Back-to-back pairs: a baseline tree against the working tree, same harness, same machine.

    .venv/bin/python benchmarks/pairs.py --baseline 67d8f8e [--pairs 3] [--duration 15]
    nox -s bench -- --pairs-against 67d8f8e            (the same, through nox)

On a noisy machine an absolute figure moves with the machine's mood (``pgbench -S`` swung
from 40.7k to 58.9k tps between runs here); a *ratio* between two trees measured one
right after the other does not, much. So:

1. the baseline (a commit, extracted with ``git archive``, or a directory holding a
   ``gophermart`` package) and the working tree's ``src/`` each get their own database,
   migrated by their own code and seeded identically (users, funded accounts, processed
   orders, real tokens from ``POST /api/user/login``);
2. ``pgbench`` runs once for context: ``-S -c 64``, ``-S -c 8 -j 2 -T 10`` (the issue's
   ceiling) and ``simple-update``, on a scale-10 database;
3. each pair starts the baseline service, runs wrk (warm-up, then balance, orders,
   withdraw), stops it, then does the same for the working tree; the order alternates
   between pairs, so a machine that slows down over the run does not favour either tree;
4. it prints each endpoint's figures per pair, the per-pair ratio (working / baseline) and
   the median ratio, and checks every balance against its ledger in both databases.

All traffic goes to 127.0.0.1; every wait is bounded; databases are dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import run
from run import (
    HOST,
    RESULTS_DIR,
    ROOT,
    SERVICE_SRC_ENV,
    Config,
    Databases,
    Processes,
    Seeded,
    WrkResult,
    log,
)

ALL_ENDPOINTS = {
    "balance": ("balance.lua", "GET /api/user/balance"),
    "orders": ("orders.lua", "GET /api/user/orders"),
    "withdraw": ("withdraw.lua", "POST /api/user/balance/withdraw"),
    "holds": ("hold_capture.lua", "POST holds + capture"),  # profile.py only: not in 0.2
}
ENDPOINTS = tuple(ALL_ENDPOINTS[name] for name in ("balance", "orders", "withdraw"))


@dataclass
class Tree:
    label: str
    src: str
    dbs: Databases
    seeded: Seeded | None = None
    tokens_path: Path | None = None


def extract(baseline: str, into: Path) -> str:
    """A ``src`` directory for ``baseline``: a path as given, or a commit via git archive
    (into a fresh directory under ``into``)."""
    given = Path(baseline)
    if (given / "gophermart" / "__main__.py").exists():
        return str(given.resolve())
    if (given / "src" / "gophermart" / "__main__.py").exists():
        return str((given / "src").resolve())
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", baseline, "src"], capture_output=True, check=False
    )
    if archive.returncode:
        raise SystemExit(f"--baseline {baseline}: {archive.stderr.decode().strip()}")
    into = Path(tempfile.mkdtemp(prefix="tree-", dir=into))
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return str(into / "src")


def use_tree(tree: Tree) -> None:
    """Children started from now on import ``gophermart`` from this tree (run.py's
    ``gophermart_cmd`` runs ``python -m gophermart`` when SERVICE_SRC_ENV is set)."""
    os.environ["PYTHONPATH"] = tree.src
    os.environ[SERVICE_SRC_ENV] = tree.src


async def pgbench_context(cfg: Config) -> list[dict[str, Any]]:
    dbs = Databases(cfg.pg_url)
    try:
        results = [asdict(r) for r in await run.run_pgbench(cfg, dbs)]
        # The ceiling: -S with 8 clients, 2 threads, 10 s, on scale 10.
        await dbs.create(dbs.pgbench)
        env = run.pg_env(cfg.pg_url)
        await run.run_command(
            ["pgbench", "-i", "-q", "-s", str(cfg.pgbench_scale), dbs.pgbench], env=env, timeout=600
        )
        await run.wait_until_idle(cfg.wait_idle)
        code, out, err = await run.run_command(
            ["pgbench", "-S", "-c", "8", "-j", "2", "-T", str(cfg.pgbench_duration), dbs.pgbench],
            env=env,
            timeout=cfg.pgbench_duration + 120,
        )
        tps = next((x for x in out.splitlines() if x.startswith("tps = ")), "")
        if code or not tps:
            raise RuntimeError(f"pgbench -S -c 8 failed: {(err or out).strip()[-300:]}")
        value = float(tps.split()[2])
        log(f"pgbench -S -c 8 -j 2: {value:,.0f} tps")
        results.append({"label": "pgbench -S", "clients": 8, "tps": value})
        return results
    finally:
        await dbs.drop_all()


async def prepare(cfg: Config, procs: Processes, tree: Tree, work: Path) -> None:
    use_tree(tree)
    await tree.dbs.create(tree.dbs.bench)
    service = await run.start_service(
        procs, cfg, tree.dbs.service_dsn(tree.dbs.bench), f"pairs-{tree.label}-seed.log"
    )
    try:
        tree.seeded = await run.seed(cfg, tree.dbs, service)
    finally:
        procs.stop(service.proc)
    tree.tokens_path = work / f"tokens-{tree.label}.txt"
    tree.tokens_path.write_text("\n".join(tree.seeded.tokens) + "\n")


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_of(pid: int) -> float:
    """User + system CPU seconds of one process (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def cpu_snapshot(root: int, database: str) -> dict[str, float]:
    """CPU seconds so far of the service (``root`` and its descendants) and of the
    PostgreSQL backends serving ``database`` (their process title names it). Unlike
    requests/s, CPU per request hardly moves with what else the machine is doing."""
    parents: dict[int, int] = {}
    backends = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parents[int(entry.name)] = ppid
        if f" {database} " in _cmdline(entry):
            backends += _cpu_of(int(entry.name))
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [p for p, pp in parents.items() if pp == parent and p not in tree]
        tree.update(children)
        frontier.extend(children)
    return {"service": sum(_cpu_of(p) for p in tree), "postgres": backends}


def _cmdline(entry: Path) -> str:
    try:
        return (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


async def measure(cfg: Config, procs: Processes, tree: Tree, pair: int) -> list[WrkResult]:
    assert tree.tokens_path is not None
    use_tree(tree)
    service = await run.start_service(
        procs, cfg, tree.dbs.service_dsn(tree.dbs.bench), f"pairs-{tree.label}-{pair}.log"
    )
    try:
        for script in ("balance.lua", "orders.lua"):
            await run.run_wrk(cfg, service.url, script, tree.tokens_path, cfg.warmup, "warm-up")
        results = []
        for script, label in ENDPOINTS:
            before = cpu_snapshot(service.proc.pid, tree.dbs.bench)
            result = await run.run_wrk(
                cfg, service.url, script, tree.tokens_path, cfg.duration, f"{tree.label} {label}"
            )
            after = cpu_snapshot(service.proc.pid, tree.dbs.bench)
            per = 1e6 / max(result.requests, 1)
            result.service_cpu_us = round((after["service"] - before["service"]) * per, 1)
            result.postgres_cpu_us = round((after["postgres"] - before["postgres"]) * per, 1)
            log(
                f"  CPU per request: service {result.service_cpu_us:.0f} µs, "
                f"PostgreSQL {result.postgres_cpu_us:.0f} µs"
            )
            results.append(result)
        return results
    finally:
        code = procs.stop(service.proc)
        if code:
            log(f"{tree.label} service exited with {code} after SIGTERM (expected 0)")


def summarise(runs: dict[str, list[list[WrkResult]]]) -> list[dict[str, Any]]:
    rows = []
    for i, (_, label) in enumerate(ENDPOINTS):
        base = [pair[i] for pair in runs["baseline"]]
        new = [pair[i] for pair in runs["working"]]
        ratios = [n.rps / b.rps if b.rps else 0.0 for b, n in zip(base, new, strict=True)]
        rows.append(
            {
                "endpoint": label,
                "baseline_rps": [b.rps for b in base],
                "working_rps": [n.rps for n in new],
                "ratios": [round(r, 3) for r in ratios],
                "median_ratio": round(statistics.median(ratios), 3),
                "baseline_p99_ms": [b.p99_ms for b in base],
                "working_p99_ms": [n.p99_ms for n in new],
                "median_working_p99_ms": statistics.median(n.p99_ms for n in new),
                "baseline_cpu_us": [b.service_cpu_us + b.postgres_cpu_us for b in base],
                "working_cpu_us": [n.service_cpu_us + n.postgres_cpu_us for n in new],
                "median_cpu_ratio": round(
                    statistics.median(
                        (b.service_cpu_us + b.postgres_cpu_us)
                        / max(n.service_cpu_us + n.postgres_cpu_us, 0.1)
                        for b, n in zip(base, new, strict=True)
                    ),
                    3,
                ),
                "errors": sum(n.errors + b.errors for b, n in zip(base, new, strict=True)),
            }
        )
    return rows


def render(rows: list[dict[str, Any]], pgbench: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        f"pairs: baseline {meta['baseline']} vs working tree {meta['working']}, "
        f"{meta['pairs']} pairs, wrk -t{meta['threads']} -c{meta['connections']} "
        f"-d{meta['duration']}s, -w {meta['workers']}, {meta['users']} users "
        f"({meta['tokens']} with tokens)",
        "",
        "| endpoint | baseline req/s | working req/s | ratio per pair | median ratio "
        "| working p99 (median) | CPU µs/request, service + PostgreSQL: baseline → working "
        "(median gain) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['endpoint']}` | {' / '.join(f'{x:,.0f}' for x in r['baseline_rps'])} "
            f"| {' / '.join(f'{x:,.0f}' for x in r['working_rps'])} "
            f"| {' / '.join(f'{x:.2f}' for x in r['ratios'])} | **{r['median_ratio']:.2f}** "
            f"| {r['median_working_p99_ms']:.1f} ms "
            f"| {' / '.join(f'{x:.0f}' for x in r['baseline_cpu_us'])} → "
            f"{' / '.join(f'{x:.0f}' for x in r['working_cpu_us'])} "
            f"(**{r['median_cpu_ratio']:.2f}x**) |"
        )
    if pgbench:
        lines.append("")
        lines.append(
            "context: "
            + ", ".join(f"{p['label']} -c {p['clients']}: {p['tps']:,.0f} tps" for p in pgbench)
        )
    for label, result in meta.get("integrity", {}).items():
        lines.append(
            f"integrity ({label}): {'ok' if result.get('ok') else 'FAILED'} — "
            f"{result.get('reconcile_summary', '')}"
        )
    return "\n".join(lines)


async def pairs(args: argparse.Namespace, cfg: Config, procs: Processes) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="gophermart-pairs-"))
    try:
        baseline_src = extract(args.baseline, work)
        trees = {
            "baseline": Tree("baseline", baseline_src, Databases(cfg.pg_url)),
            "working": Tree(
                "working",
                extract(args.against, work) if args.against else str(ROOT / "src"),
                Databases(cfg.pg_url),
            ),
        }
        out: dict[str, Any] = {"pgbench": []}
        if not args.no_pgbench:
            try:
                out["pgbench"] = await pgbench_context(cfg)
            except (RuntimeError, OSError) as exc:
                log(f"pgbench failed, continuing without context: {exc}")
        try:
            for tree in trees.values():
                await prepare(cfg, procs, tree, work)
            runs: dict[str, list[list[WrkResult]]] = {"baseline": [], "working": []}
            for pair in range(1, args.pairs + 1):
                order = ["baseline", "working"] if pair % 2 else ["working", "baseline"]
                log(f"pair {pair}/{args.pairs}: {order[0]} first")
                for name in order:
                    runs[name].append(await measure(cfg, procs, trees[name], pair))
            out["rows"] = summarise(runs)
            out["runs"] = {k: [[asdict(r) for r in p] for p in v] for k, v in runs.items()}
            out["integrity"] = {}
            for name, tree in trees.items():
                use_tree(tree)
                out["integrity"][name] = await run.integrity(tree.dbs)
        finally:
            for tree in trees.values():
                await tree.dbs.drop_all()
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", required=True, help="a commit, or a directory with src/")
    p.add_argument(
        "--against", help="compare with this commit or directory instead of the working tree"
    )
    p.add_argument("--pairs", type=int, default=3, help="back-to-back pairs (default 3)")
    p.add_argument("--no-pgbench", action="store_true", help="skip the pgbench context")
    p.add_argument(
        "--only",
        default="balance,orders,withdraw",  # holds: the working tree's own (issue 17)
        help="endpoints to measure, comma-separated (default balance,orders,withdraw)",
    )
    p.add_argument(
        "--output", type=Path, default=RESULTS_DIR / "pairs.json", help="results as JSON"
    )
    args, rest = p.parse_known_args(argv)
    global ENDPOINTS
    try:
        ENDPOINTS = tuple(ALL_ENDPOINTS[name.strip()] for name in args.only.split(","))
    except KeyError as exc:
        p.error(f"--only: unknown endpoint {exc}")
    # Everything else is run.py's: --workers, --duration, --connections, --users, --tokens...
    cfg = run.parse_args([*rest, "--skip-accrual"])
    cfg = replace(cfg, users=cfg.users if "--users" in rest else 1000)
    cfg = replace(cfg, tokens=min(cfg.tokens, cfg.users) if "--tokens" in rest else 64)
    run.ensure_wrk()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    procs = Processes()
    started = time.monotonic()
    out = run.run_stopping_processes(pairs(args, cfg, procs), procs)
    if out is None:
        return 130
    head = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    meta = {
        "baseline": args.baseline,
        "working": args.against or head,
        "pairs": args.pairs,
        "threads": cfg.threads,
        "connections": cfg.connections,
        "duration": cfg.duration,
        "workers": cfg.workers,
        "users": cfg.users,
        "tokens": cfg.tokens,
        "seconds": round(time.monotonic() - started, 1),
        "host": HOST,
        "integrity": out.get("integrity", {}),
    }
    out["meta"] = meta
    args.output.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print()
    print(render(out.get("rows", []), out.get("pgbench", []), meta))
    print(f"\nthe run took {meta['seconds']} s; results in {args.output}")
    ok = all(r.get("ok") for r in meta["integrity"].values())
    return 0 if ok and out.get("rows") else 1


if __name__ == "__main__":
    raise SystemExit(main())
