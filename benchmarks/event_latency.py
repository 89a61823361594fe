"""From a credit's commit to a host seeing its event (issue 18), on PostgreSQL.

    .venv/bin/python benchmarks/event_latency.py [--pg POSTGRES_URL] [-n 300] [--no-worker]

Two Gophermart instances on a throwaway database (created and dropped here), as a shop
runs them: the service (which credits; with its worker, whose sequencer numbers the
events, unless ``--no-worker``) and a host iterating ``loyalty.events(after=...)``
(LISTEN, and the sequencer's runs of its own while it waits). One credit at a time, at
random intervals (0-50 ms, so that commits fall anywhere in the sequencer's cadence);
the latency is from the credit's return (committed) to the host's iterator yielding
its event. Prints the median, p90, p99 and max. Not a load generator: one client.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import statistics
import time

import asyncpg

from gophermart.testing import loyalty_for_tests


async def main(pg: str, n: int, worker: bool) -> None:
    name = f"gophermart_events_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(pg)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        uri = pg.rsplit("/", 1)[0] + "/" + name
        async with (
            loyalty_for_tests(database_uri=uri) as service,
            loyalty_for_tests(database_uri=uri) as host,
        ):
            if worker:
                await service.start_worker()
            user = (await service.register("shopper", "pw")).user_id
            committed: dict[int, float] = {}  # entry id -> when the credit returned
            seen: dict[int, float] = {}
            done = asyncio.Event()

            async def follow() -> None:
                async for event in host.events(after=await host.last_event_id()):
                    if event.type == "ledger.adjustment":
                        seen[int(str(event.data["entry_id"]))] = time.perf_counter()
                        if len(seen) == n:
                            done.set()
                            return

            follower = asyncio.create_task(follow())
            await asyncio.sleep(0.5)  # the host is listening
            rng = random.Random(7)
            for i in range(n):
                await service.adjust(user, "1", f"credit {i}")
                committed[i] = time.perf_counter()
                await asyncio.sleep(rng.uniform(0, 0.05))
            await asyncio.wait_for(done.wait(), 30)
            await follower
            # Entry ids are the adjustments' in order (one user, one writer).
            firsts = sorted(seen)
            latencies = sorted((seen[entry] - committed[i]) * 1e3 for i, entry in enumerate(firsts))
            q = statistics.quantiles(latencies, n=100)
            print(
                f"{n} credits, worker {'on' if worker else 'off'}: median "
                f"{statistics.median(latencies):.1f} ms, p90 {q[89]:.1f} ms, p99 {q[98]:.1f} "
                f"ms, max {latencies[-1]:.1f} ms"
            )
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("-n", type=int, default=300)
    parser.add_argument("--no-worker", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.pg, args.n, not args.no_worker))
