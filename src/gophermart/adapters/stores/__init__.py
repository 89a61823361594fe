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


class Signal:
    """Wakes every waiter at each :meth:`set`, none missed: a waiter takes the
    :meth:`current` event *before* it looks for news, and awaits that one (a stand-in
    for the ``asyncio.Event`` a listener sets: ``set`` is all it calls)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def current(self) -> asyncio.Event:
        return self._event

    def set(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()
