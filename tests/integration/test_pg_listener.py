"""The worker's LISTEN connection notices a dead server path and comes back by itself.

Before: it connected with asyncpg's 60 s default and then waited for the connection to be
closed; a frozen server (or a dropped route) never closes it, so it looked alive for as
long as TCP did (hours), deaf to every NOTIFY. Now it probes, bounds every wait by the
database timeout, and a reconnect wakes the worker for what it missed.
"""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg
import pytest

from gophermart.adapters.stores.postgres.listener import PgOrderListener
from gophermart.adapters.stores.postgres.statements import ORDERS_CHANNEL
from tests.pg_proxy import PgProxy

pytestmark = pytest.mark.usefixtures("postgres_available")


async def _notify(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"NOTIFY {ORDERS_CHANNEL}")
    finally:
        await conn.close()


async def _until(event: asyncio.Event, within: float) -> float:
    started = time.monotonic()
    await asyncio.wait_for(event.wait(), within)
    return time.monotonic() - started


async def test_a_frozen_server_is_noticed_and_listening_resumes_after_it(
    postgres_uri: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="gophermart.listener")
    wakeup = asyncio.Event()
    with PgProxy() as proxy:
        listener = PgOrderListener(
            proxy.uri_for(postgres_uri), retry=0.2, timeout=0.5, probe_every=0.3
        )
        listener.start(wakeup)
        try:
            await _until(wakeup, 10)  # connected: the first wake-up covers earlier uploads
            wakeup.clear()
            await _notify(postgres_uri)
            await _until(wakeup, 5)
            wakeup.clear()

            proxy.freeze()
            # probe (0.3 s) + its timeout (0.5 s), then a bounded connect: one warning
            deadline = time.monotonic() + 5
            while "LISTEN" not in caplog.text and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            failures = [r for r in caplog.records if "failed" in r.getMessage()]
            assert failures, "a frozen server went unnoticed"
            assert failures[0].levelno == logging.WARNING
            assert "TimeoutError" in failures[0].getMessage()
            # It keeps trying, quietly: connecting is bounded, not asyncpg's 60 s.
            await asyncio.sleep(2)
            retries = [r for r in caplog.records if "failed" in r.getMessage()]
            assert len(retries) >= 2, "the reconnect attempts are not bounded"
            assert all(r.levelno == logging.DEBUG for r in retries[1:])

            wakeup.clear()
            proxy.resume()
            # Back: a reconnect wakes the worker (uploads made meanwhile), said once.
            await _until(wakeup, 5)
            assert "works again" in caplog.text
            wakeup.clear()
            await _notify(postgres_uri)
            await _until(wakeup, 5)
        finally:
            await listener.stop()
