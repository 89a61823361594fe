"""One client, one at a time: a withdrawal against a hold and its capture (issue 17).

    .venv/bin/python benchmarks/checkout_latency.py [--pg POSTGRES_URL] [-n 500]

Through the library on a throwaway PostgreSQL database (created and dropped here): what
one checkout costs when nothing else runs, the latency a shop's checkout sees. The
throughput under load is benchmarks/run.py's.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time

import asyncpg

from gophermart.testing import loyalty_for_tests


def luhn_complete(payload: str) -> str:
    total = 0
    for i, digit in enumerate(int(c) for c in reversed(payload)):
        if i % 2 == 0:
            digit *= 2
            digit -= 9 if digit > 9 else 0
        total += digit
    return payload + str((10 - total % 10) % 10)


async def main(pg: str, n: int) -> None:
    name = f"gophermart_checkout_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(pg)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        uri = pg.rsplit("/", 1)[0] + "/" + name
        async with loyalty_for_tests(database_uri=uri) as loyalty:
            user = (await loyalty.register("shopper", "pw")).user_id
            await loyalty.upload_order(user, luhn_complete("1000"))
            await loyalty.record_accrual(luhn_complete("1000"), 10 * n + 100)
            for run in ("warm-up", "measured"):
                tag = "1" if run == "measured" else "0"
                started = time.perf_counter()
                for i in range(n):
                    await loyalty.withdraw(user, luhn_complete(f"2{tag}{i:06d}"), 1)
                withdraw = (time.perf_counter() - started) / n
                started = time.perf_counter()
                for i in range(n):
                    held = await loyalty.hold(user, luhn_complete(f"3{tag}{i:06d}"), 1)
                    await loyalty.capture(user, held.hold.id)
                checkout = (time.perf_counter() - started) / n
                print(
                    f"{run}: withdraw {withdraw * 1e3:.2f} ms, hold + capture "
                    f"{checkout * 1e3:.2f} ms (ratio {withdraw / checkout:.2f})"
                )
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("-n", type=int, default=500)
    args = parser.parse_args()
    asyncio.run(main(args.pg, args.n))
