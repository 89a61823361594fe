"""A tiny in-process micro-benchmark of PostgreSQL's hot paths, without HTTP: the read
model's balance and orders, and a withdrawal through the unit of work, each called in a
loop by a few concurrent tasks on one asyncpg pool. Not a timed test, and no substitute
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
from datetime import UTC, datetime


async def main(pg_url: str, seconds: float, tasks: int) -> None:
    import asyncpg

    from gophermart.adapters.clock import SystemClock
    from gophermart.adapters.sql.engine import Database
    from gophermart.adapters.sql.migrate import migrate
    from gophermart.adapters.sql.pg_pool import PgPool
    from gophermart.adapters.sql.pg_read_model import PgReadModel
    from gophermart.adapters.sql.pg_unit_of_work import PgUnitOfWork
    from gophermart.adapters.sql.url import parse_database_uri
    from gophermart.application.accounts import Withdraw
    from gophermart.domain.accounts import Account
    from gophermart.domain.orders import Order, OrderNumber, OrderStatus
    from gophermart.domain.points import Points
    from gophermart.domain.users import Login

    name = f"gm_micro_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = pg_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        database = Database(parse_database_uri(dsn))
        await migrate(database)
        await database.dispose()
        pool = PgPool(dsn, max_size=tasks)
        read = PgReadModel(pool)
        withdraw = Withdraw(lambda: PgUnitOfWork(pool), SystemClock())
        async with PgUnitOfWork(pool) as uow:
            user = await uow.users.add(Login("micro"), "h")
            await uow.accounts.open(user.id)
            order = Order.upload(OrderNumber("79927398713"), user.id, datetime.now(UTC))
            await uow.orders.add(order)
            done = order.move_to(OrderStatus.PROCESSED, Points(10**15))
            await uow.orders.save(order, done, None)
            account = Account(user.id, Points(0), Points(0))
            account.credit(done, datetime.now(UTC))
            await uow.accounts.save(account)
            await uow.commit()
        numbers = iter(range(10**9))

        def luhn(prefix: int) -> str:
            digits = [int(d) for d in str(prefix)]
            total = sum(
                d if i % 2 else (d * 2 - 9 if d * 2 > 9 else d * 2)
                for i, d in enumerate(reversed(digits))
            )
            return f"{prefix}{(10 - total % 10) % 10}"

        cases: dict[str, Callable[[], Awaitable[object]]] = {
            "balance": lambda: read.balance(user.id),
            "orders": lambda: read.orders(user.id),
            "withdraw": lambda: withdraw(user.id, luhn(10**6 + next(numbers)), Points(1)),
        }
        for label, call in cases.items():
            await _measure(label, call, seconds, tasks)
        await pool.close()
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
