"""The login throttle's counters of one process (the in-memory store's): a bounded dict
with the least recently counted key dropped first."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping

from gophermart.application.throttling import Counter, Decision, ThrottleKeys


class MemoryThrottleCounters:
    def __init__(self, max_keys: int = 100_000) -> None:
        self._max_keys = max_keys
        self._counters: OrderedDict[str, Counter] = OrderedDict()

    async def update(
        self, keys: ThrottleKeys, decide: Callable[[Mapping[str, Counter]], Decision]
    ) -> Decision:
        stored = {k: c for k in keys.all() if (c := self._counters.get(k)) is not None}
        decision = decide(stored)
        if decision.retry_after is None:
            for key, counter in decision.counters.items():
                self._counters[key] = counter
                self._counters.move_to_end(key)
            while len(self._counters) > self._max_keys:
                self._counters.popitem(last=False)
        return decision

    async def cleared(self, keys: ThrottleKeys) -> None:
        self._counters.pop(keys.pair, None)
        self._counters.pop(keys.login, None)
        client = self._counters.get(keys.client)
        if client is not None and client.failures > 0:
            self._counters[keys.client] = Counter(
                client.failures - 1, client.last_at, client.locked_until
            )

    async def forget(self, before: float) -> None:
        stale = [
            key
            for key, c in self._counters.items()
            if c.last_at < before and c.locked_until < before
        ]
        for key in stale:
            del self._counters[key]
