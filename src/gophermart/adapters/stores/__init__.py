"""The stores: one package per backend (``memory``, ``sqlite``, ``postgres``), each a
dependency-injector container providing every storage port the application needs
(unit of work, read model, accrual gate, throttle counters, audit, queue probe,
readiness, the upload listener, its own life). The composition root chooses one, once
(``gophermart.bootstrap``). ``sql`` holds what the two SQL stores share; ``guard.py``
puts a whole store behind the database-outage guard.
"""

from __future__ import annotations

import asyncio


class NoListener:
    """A store with no cross-process wake-up: uploads wake the worker in process (the
    upload use case sets the event itself)."""

    def start(self, wakeup: asyncio.Event) -> None:
        return None

    async def stop(self) -> None:
        return None
