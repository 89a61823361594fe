"""How login attempts are throttled: the policy every ``LoginThrottle`` store applies.

Three counters per attempt, each "failures recently seen":

* **(address, login) pair**: one source guessing one password. After
  ``free_per_pair`` failures it is locked for 2 s, then 4 s, 8 s ... up to
  ``max_lockout``: refused with 429 before the password is even checked.
* **login**, from every address together: a distributed guess at one password.
  Locked the same way after ``free_per_login`` failures (more than a pair gets, so a
  lone attacker's pair lock comes long before the victim's own login is locked).
* **address**, over every login: password spraying. Never locked (a whole office
  behind one NAT address must not be locked out by one of them): past
  ``slow_after_per_client`` failures its attempts are *delayed*, by
  ``client_delay_step`` per failure over the budget, up to ``max_client_delay``.

An attempt is counted *before* its password is checked, so a burst of concurrent
guesses is counted as it arrives (not after every guess has already been checked); a
success then clears the pair and login counters and un-counts itself from the
address. Attempts refused while locked are not counted, so hammering a locked login
does not lengthen the lock its owner waits out. A counter is forgotten ``window``
seconds after its last failure (or after its lock ends, whichever is later).

The stores (in memory, or a database table shared by every process) only load and
save :class:`Counter` values (the :class:`ThrottleCounters` port); every decision is
made here, by :class:`ThrottlePolicy`, applied by :class:`LoginThrottle`.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from gophermart.domain.errors import TooManyAttempts

#: Addresses longer than this (only a trusted proxy can supply them) are cut: keys fit
#: the table's column and a hostile header cannot make them large.
MAX_CLIENT_LENGTH = 64


@dataclass(frozen=True, slots=True)
class Counter:
    """Failures recently counted under one key. Times are seconds since the epoch."""

    failures: int
    last_at: float
    locked_until: float = 0.0


@dataclass(frozen=True, slots=True)
class ThrottleKeys:
    """The three counters one attempt touches."""

    pair: str
    login: str
    client: str

    @classmethod
    def of(cls, login: str, client: str) -> ThrottleKeys:
        client = client[:MAX_CLIENT_LENGTH]
        return cls(pair=f"pair:{client} {login}", login=f"login:{login}", client=f"client:{client}")

    def all(self) -> tuple[str, str, str]:
        return (self.pair, self.login, self.client)


@dataclass(frozen=True, slots=True)
class Decision:
    """What one attempt gets: refused (``retry_after`` seconds), or let through after
    ``delay`` seconds, with the counters to store."""

    retry_after: int | None = None
    delay: float = 0.0
    counters: Mapping[str, Counter] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    free_per_pair: int = 5
    free_per_login: int = 20
    slow_after_per_client: int = 50
    window: float = 900.0
    max_lockout: float = 900.0
    client_delay_step: float = 0.1
    max_client_delay: float = 3.0

    def attempt(self, keys: ThrottleKeys, stored: Mapping[str, Counter], now: float) -> Decision:
        """Decide one attempt, given the counters stored under ``keys``."""
        locked = [
            counter.locked_until
            for key in (keys.pair, keys.login)
            if (counter := stored.get(key)) is not None and counter.locked_until > now
        ]
        if locked:
            return Decision(retry_after=max(1, math.ceil(max(locked) - now)))
        counters = {
            keys.pair: self._count(stored.get(keys.pair), self.free_per_pair, now),
            keys.login: self._count(stored.get(keys.login), self.free_per_login, now),
            keys.client: self._count(stored.get(keys.client), None, now),
        }
        return Decision(delay=self._delay(counters[keys.client]), counters=counters)

    def succeeded(self, client: Counter | None) -> Counter | None:
        """The address's counter once a success un-counts its own attempt."""
        if client is None or client.failures <= 0:
            return client
        return Counter(client.failures - 1, client.last_at, client.locked_until)

    def is_forgotten(self, counter: Counter, now: float) -> bool:
        return now - max(counter.last_at, counter.locked_until) > self.window

    def _count(self, counter: Counter | None, free: int | None, now: float) -> Counter:
        failures, locked_until = 0, 0.0
        if counter is not None and not self.is_forgotten(counter, now):
            failures, locked_until = counter.failures, counter.locked_until
        failures += 1
        if free is not None and failures > free:
            doublings = min(failures - free, 32)  # 2**32 s is far past any max_lockout
            locked_until = now + min(self.max_lockout, 2.0**doublings)
        return Counter(failures, now, locked_until)

    def _delay(self, client: Counter) -> float:
        over = client.failures - self.slow_after_per_client
        return 0.0 if over <= 0 else min(self.max_client_delay, over * self.client_delay_step)


class ThrottleCounters(Protocol):
    """Where the counters live: one process's memory, or a table every process shares."""

    async def update(
        self, keys: ThrottleKeys, decide: Callable[[Mapping[str, Counter]], Decision]
    ) -> Decision:
        """Load the counters stored under ``keys`` (locked against concurrent updates),
        ask ``decide``, and store its counters unless it refused (``retry_after``)."""
        ...

    async def cleared(self, keys: ThrottleKeys) -> None:
        """A success: forget the pair's and the login's counters, and take one failure
        (the attempt's own, counted in advance) off the address's."""
        ...

    async def forget(self, before: float) -> None:
        """Delete counters whose last failure and lock both end before ``before``."""
        ...


class LoginThrottle:
    """The :class:`~gophermart.application.ports.LoginThrottle` port: the policy over a
    store's counters. The deliberate slow-down sleeps outside any store call, so it
    holds no connection and counts against no database deadline."""

    #: Forgotten counters are deleted once per this many attempts (per process).
    PURGE_EVERY = 256

    def __init__(
        self,
        counters: ThrottleCounters,
        policy: ThrottlePolicy | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.counters = counters
        self.policy = policy or ThrottlePolicy()
        self._clock = clock
        self._sleep = sleep
        self._attempts = itertools.count(1)

    async def attempt(self, login: str, client: str) -> None:
        keys = ThrottleKeys.of(login, client)
        now = self._clock()
        decision = await self.counters.update(
            keys, lambda stored: self.policy.attempt(keys, stored, now)
        )
        if decision.retry_after is not None:
            raise TooManyAttempts(decision.retry_after)  # nothing was counted
        if next(self._attempts) % self.PURGE_EVERY == 0:
            await self.counters.forget(now - self.policy.window)
        if decision.delay > 0:
            await self._sleep(decision.delay)

    async def succeeded(self, login: str, client: str) -> None:
        await self.counters.cleared(ThrottleKeys.of(login, client))
