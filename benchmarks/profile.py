"""Where a server process's CPU goes under load: py-spy on the service while wrk runs.

    .venv/bin/python benchmarks/profile.py [--only balance,orders,withdraw] [--seconds 12]

Seeds a database like pairs.py (1,000 users, 64 tokens), starts ``gophermart -w 2
--no-worker``, runs wrk on each endpoint for ``--seconds`` + 8 s and, in the middle of
it, ``py-spy record --subprocesses --nonblocking -f raw`` on the service. The samples are
then put in the buckets of docs/performance.md's profile table by the frames they hold
(first match, innermost first): asyncpg, uvicorn, Litestar, the event loop, our code.
Needs py-spy (``pip install py-spy``) and root (or ptrace rights).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

import pairs
import run
from run import RESULTS_DIR, ROOT, Databases, Processes, log

BUCKETS = [  # (bucket, substrings of a frame), innermost frame first
    ("asyncpg", ("asyncpg",)),
    ("uvicorn", ("uvicorn", "httptools")),
    ("Litestar", ("litestar",)),
    ("msgspec / JSON", ("msgspec",)),
    ("gophermart", ("gophermart",)),
    ("event loop (uvloop / asyncio)", ("uvloop", "asyncio", "run_forever")),
]


def bucket_of(stack: str) -> str:
    frames = stack.split(";")
    for frame in reversed(frames):  # innermost first
        for name, needles in BUCKETS:
            if any(n in frame for n in needles):
                return name
    return "other"


def summarise(raw: Path) -> dict[str, float]:
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit() or ("gophermart" not in raw.name and not stack):
            continue
        counts[bucket_of(stack)] += int(n)
    total = sum(counts.values()) or 1
    return {k: round(100 * v / total, 1) for k, v in counts.most_common()}


async def main_async(args: argparse.Namespace) -> None:
    cfg = run.parse_args(["--skip-accrual", "--users", "1000", "--tokens", "64"])
    procs = Processes()
    work = Path(tempfile.mkdtemp(prefix="gophermart-profile-"))
    tree = pairs.Tree("profile", str(ROOT / "src"), Databases(cfg.pg_url))
    try:
        await pairs.prepare(cfg, procs, tree, work)
        pairs.use_tree(tree)
        service = await run.start_service(
            procs, cfg, tree.dbs.service_dsn(tree.dbs.bench), "profile.log"
        )
        assert tree.tokens_path is not None
        for name in args.only.split(","):
            script, label = pairs.ALL_ENDPOINTS[name]
            out = RESULTS_DIR / f"profile-{name}.txt"
            wrk = asyncio.create_task(
                run.run_wrk(
                    replace(cfg, wait_idle=0),
                    service.url,
                    script,
                    tree.tokens_path,
                    args.seconds + 8,
                    label,
                )
            )
            await asyncio.sleep(4)
            spy = await asyncio.create_subprocess_exec(
                args.py_spy,
                "record",
                "--subprocesses",
                "--nonblocking",
                "-r",
                "200",
                "-d",
                str(args.seconds),
                "-f",
                "raw",
                "-o",
                str(out),
                "-p",
                str(service.proc.pid),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            await spy.wait()
            result = await wrk
            shares = summarise(out)
            log(f"{label}: {result.rps:,.0f} req/s; CPU samples: {shares}")
        procs.stop(service.proc)
    finally:
        procs.stop_all()
        await tree.dbs.drop_all()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default="balance,orders,withdraw")
    p.add_argument("--seconds", type=int, default=12)
    p.add_argument("--py-spy", default=str(Path(ROOT / ".venv/bin/py-spy")))
    args = p.parse_args()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
