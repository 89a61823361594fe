"""A tiny in-process micro-benchmark of PostgreSQL's hot paths, without HTTP: the
library's balance, orders and withdraw verbs, each called in a loop by a few concurrent
tasks. Not a timed test, and no substitute
for ``nox -s bench``; it shows the Python cost per statement, before/after a change:

    git archive <commit> src | tar -x -C /tmp/before
    .venv/bin/python benchmarks/hot_path_micro.py --src /tmp/before/src
    .venv/bin/python benchmarks/hot_path_micro.py

Creates and drops its own database on the server at ``--pg-url``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable


async def main(pg_url: str, seconds: float, tasks: int) -> None:
    """Through the library's public face (the same verbs in every release since issue
    8), so ``--src`` can measure an older tree with this very script."""
    import asyncpg

    from gophermart import Gophermart

    name = f"gm_micro_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = pg_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        async with Gophermart.open(dsn) as loyalty:
            user = (await loyalty.register("micro", "pw")).user_id
            await loyalty.upload_order(user, "79927398713")
            await loyalty.record_accrual("79927398713", 10**13)
            numbers = iter(range(10**9))

            def luhn(prefix: int) -> str:
                digits = [int(d) for d in str(prefix)]
                total = sum(
                    d if i % 2 else (d * 2 - 9 if d * 2 > 9 else d * 2)
                    for i, d in enumerate(reversed(digits))
                )
                return f"{prefix}{(10 - total % 10) % 10}"

            cases: dict[str, Callable[[], Awaitable[object]]] = {
                "balance": lambda: loyalty.balance(user),
                "orders": lambda: loyalty.orders(user),
                "withdraw": lambda: loyalty.withdraw(user, luhn(10**6 + next(numbers)), 1),
            }
            for label, call in cases.items():
                await _measure(label, call, seconds, tasks)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def _measure(
    label: str, call: Callable[[], Awaitable[object]], seconds: float, tasks: int
) -> None:
    count = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    deadline = wall0 + seconds

    async def loop() -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            await call()
            count += 1

    await asyncio.gather(*(loop() for _ in range(tasks)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    print(f"{label:9} {count / wall:8.0f}/s  {cpu / count * 1e6:6.1f} µs client CPU per call")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--src", help="import gophermart from this src directory")
    options = parser.parse_args()
    if options.src:
        sys.path.insert(0, options.src)
    asyncio.run(main(options.pg_url, options.seconds, options.tasks))
