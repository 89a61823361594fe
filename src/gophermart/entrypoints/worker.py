"""``gophermart worker``: the accrual worker alone, for scaling it out.

Any number of these (and of server processes with their in-process workers) can run
against one PostgreSQL database: orders are leased with ``FOR UPDATE SKIP LOCKED``,
uploads wake every worker through LISTEN/NOTIFY, and the 429 pause is shared.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from gophermart.bootstrap import prepare
from gophermart.facade import Gophermart
from gophermart.settings import Settings

log = logging.getLogger("gophermart.worker")


async def _main(settings: Settings) -> None:
    settings = await prepare(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loyalty = Gophermart.from_settings(settings, migrate=False)
    async with loyalty, loyalty.running_worker():
        log.info("accrual worker running against %s", settings.accrual_address)
        await stop.wait()
        log.info("stopping: finishing the orders in hand")


def run(settings: Settings) -> int:
    try:
        import uvloop

        uvloop.run(_main(settings))
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(_main(settings))
    return 0
