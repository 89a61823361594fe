"""The login throttle's counters and remembered successes of one process (the in-memory
store's): bounded dicts, the least recently touched key (or login) dropped first."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping

from gophermart.application.throttling import Counter, Decision, Seen, ThrottleKeys


class MemoryThrottleCounters:
    def __init__(self, max_keys: int = 100_000) -> None:
        self._max_keys = max_keys
        self._counters: OrderedDict[str, Counter] = OrderedDict()
        #: login -> known key -> when it last logged in
        self._known: OrderedDict[str, OrderedDict[str, float]] = OrderedDict()

    async def read(self, keys: ThrottleKeys) -> Seen:
        counters = {k: c for k in keys.all() if (c := self._counters.get(k)) is not None}
        known: Mapping[str, float] = self._known.get(keys.account, {})
        return Seen(counters, {k: at for k in keys.known if (at := known.get(k)) is not None})

    async def update(self, keys: ThrottleKeys, decide: Callable[[Seen], Decision]) -> Decision:
        decision = decide(await self.read(keys))
        if decision.retry_after is None:
            for key, counter in decision.counters.items():
                self._counters[key] = counter
                self._counters.move_to_end(key)
            for key in decision.dropped:
                self._counters.pop(key, None)
            while len(self._counters) > self._max_keys:
                self._counters.popitem(last=False)
        return decision

    async def remember(self, keys: ThrottleKeys, at: float, keep: int) -> None:
        known = self._known.setdefault(keys.account, OrderedDict())
        self._known.move_to_end(keys.account)
        for key in keys.known:
            known[key] = at
            known.move_to_end(key)
        while len(known) > keep:
            known.popitem(last=False)
        while len(self._known) > self._max_keys:
            self._known.popitem(last=False)

    async def forget(self, before: float, known_before: float) -> None:
        stale = [
            key
            for key, c in self._counters.items()
            if c.last_at < before and c.locked_until < before
        ]
        for key in stale:
            del self._counters[key]
        for login, known in list(self._known.items()):
            for key in [k for k, at in known.items() if at < known_before]:
                del known[key]
            if not known:
                del self._known[login]
