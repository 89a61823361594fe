"""How login attempts are throttled: the policy every ``LoginThrottle`` store applies.

Three counters per attempt, each "failures recently seen":

* **(address, login) pair**: one source guessing one password. After
  ``free_per_pair`` failures it is locked for 2 s, then 4 s, 8 s ... up to
  ``max_lockout``: refused with 429 before the password is even checked.
* **login**, from every address together: a distributed guess at one password.
  Locked the same way after ``free_per_login`` failures (more than a pair gets, so a
  lone attacker's pair lock comes long before the victim's own login is locked).
  *Except* for the addresses and devices that logged in to it successfully before
  (within ``remember_for``): the owner's own. Their attempts are neither held to the
  login's lock nor counted in it, only in their pair's (and address's), so guessing
  from many addresses can keep a login locked for everyone else, never for its owner
  at home (SPEC: "Lockouts cannot be weaponised").
* **address**, over every login: password spraying. Never locked (a whole office
  behind one NAT address must not be locked out by one of them): past
  ``slow_after_per_client`` failures its attempts are *delayed*, by
  ``client_delay_step`` per failure over the budget, up to ``max_client_delay``.

An attempt is looked at twice. Before it queues for its password check (:meth:`check`,
a read): refused while locked, delayed if its address failed a lot; nothing counted.
Then, when the hasher gives it its turn (:meth:`attempt`), it is counted, as a failure
until it succeeds, and refused if a lock began meanwhile: attempts are counted as fast
as passwords are checked, never as fast as requests arrive (a client that hangs up
while queued is not counted at all), and a burst of concurrent guesses is counted
before any of them is checked. Attempts refused while locked are not counted, so
hammering a locked login does not lengthen the lock. A success clears the pair and
takes its own attempt off the login's and the address's counts (the rest stays: the
owner getting in must not hand a guesser a fresh budget). A counter is forgotten
``window`` seconds after its last failure (or after its lock ends, whichever is
later); a success, ``remember_for`` seconds after the last one.

The stores (in memory, or tables shared by every process) only load and save
:class:`Counter` values and success times (the :class:`ThrottleCounters` port); every
decision is made here, by :class:`ThrottlePolicy`, applied by :class:`LoginThrottle`.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import math
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

from gophermart.domain.errors import TooManyAttempts

#: Addresses longer than this (only a trusted proxy can supply them) are cut: keys fit
#: the table's column and a hostile header cannot make them large.
MAX_CLIENT_LENGTH = 64
#: What a device token looks like (``secrets.token_urlsafe(24)`` makes 32 characters);
#: anything else a client sends in its place is replaced by a new one.
_DEVICE_TOKEN: Final = re.compile(r"[A-Za-z0-9_-]{22,64}")


@dataclass(frozen=True, slots=True)
class Counter:
    """Failures recently counted under one key. Times are seconds since the epoch."""

    failures: int
    last_at: float
    locked_until: float = 0.0


@dataclass(frozen=True, slots=True)
class Seen:
    """What a store holds for one attempt: its counters, and when each of its known
    keys (its address, its device) last logged in to its login."""

    counters: Mapping[str, Counter] = field(default_factory=dict)
    known: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ThrottleKeys:
    """The three counters one attempt touches, and the keys under which a success
    remembers where it came from (``account`` is the login they belong to)."""

    pair: str
    login: str
    client: str
    account: str
    known: tuple[str, ...]

    @classmethod
    def of(cls, login: str, client: str, device: str | None = None) -> ThrottleKeys:
        client = client[:MAX_CLIENT_LENGTH]
        known = [f"addr:{client}"] if client else []
        if device:  # only its digest is kept: the table does not hold live device tokens
            known.append("device:" + hashlib.sha256(device.encode()).hexdigest())
        return cls(
            pair=f"pair:{client} {login}",
            login=f"login:{login}",
            client=f"client:{client}",
            account=login,
            known=tuple(known),
        )

    def all(self) -> tuple[str, str, str]:
        return (self.pair, self.login, self.client)


@dataclass(frozen=True, slots=True)
class Decision:
    """What one attempt gets: refused (``retry_after`` seconds), or let through after
    ``delay`` seconds, with the counters to store and the keys to delete."""

    retry_after: int | None = None
    delay: float = 0.0
    counters: Mapping[str, Counter] = field(default_factory=dict)
    dropped: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    free_per_pair: int = 5
    free_per_login: int = 20
    slow_after_per_client: int = 50
    window: float = 900.0
    max_lockout: float = 900.0
    client_delay_step: float = 0.1
    max_client_delay: float = 3.0
    #: How long a success exempts its address and device from the login's lock.
    remember_for: float = 30 * 86400.0
    #: Addresses and devices remembered per login, the most recent kept.
    known_per_login: int = 16

    def check(self, keys: ThrottleKeys, seen: Seen, now: float) -> Decision:
        """Before an attempt queues for its password check: refused while locked, else
        how long to wait first (its address failed a lot). Counts nothing."""
        refused = self._refusal(keys, seen, now)
        if refused is not None:
            return refused
        client = self._count(seen.counters.get(keys.client), None, now)  # as it would be
        return Decision(delay=self._delay(client))

    def attempt(self, keys: ThrottleKeys, seen: Seen, now: float) -> Decision:
        """Count an attempt whose password is about to be checked, as a failure until it
        succeeds; refused (nothing counted) if a lock began since :meth:`check`."""
        refused = self._refusal(keys, seen, now)
        if refused is not None:
            return refused
        stored = seen.counters
        counters = {
            keys.pair: self._count(stored.get(keys.pair), self.free_per_pair, now),
            keys.client: self._count(stored.get(keys.client), None, now),
        }
        if not self.exempt(keys, seen, now):  # the owner's own is not held to it
            counters[keys.login] = self._count(stored.get(keys.login), self.free_per_login, now)
        return Decision(counters=counters)

    def succeeded(self, keys: ThrottleKeys, seen: Seen, now: float) -> Decision:
        """The password was right: the pair is cleared, and the attempt's own count is
        taken off the address and the login (if it was counted there). Only its own:
        the owner's success must not wipe a guesser's count (or lock) of the login."""
        counters, dropped = {}, {keys.pair}
        counted = (keys.client,) if self.exempt(keys, seen, now) else (keys.client, keys.login)
        for key in counted:
            counter = seen.counters.get(key)
            if counter is None:
                continue
            less = Counter(max(0, counter.failures - 1), counter.last_at, counter.locked_until)
            if (less.failures == 0 and less.locked_until <= now) or self.is_forgotten(less, now):
                dropped.add(key)  # says nothing any more: no row kept for it
            else:
                counters[key] = less
        return Decision(counters=counters, dropped=frozenset(dropped))

    def exempt(self, keys: ThrottleKeys, seen: Seen, now: float) -> bool:
        """Whether the attempt comes from an address or device that logged in to this
        login before (within ``remember_for``): the owner's, not held to its lock."""
        return any(
            now - at <= self.remember_for
            for key in keys.known
            if (at := seen.known.get(key)) is not None
        )

    def is_forgotten(self, counter: Counter, now: float) -> bool:
        return now - max(counter.last_at, counter.locked_until) > self.window

    def _refusal(self, keys: ThrottleKeys, seen: Seen, now: float) -> Decision | None:
        guards = (keys.pair,) if self.exempt(keys, seen, now) else (keys.pair, keys.login)
        locked = [
            counter.locked_until
            for key in guards
            if (counter := seen.counters.get(key)) is not None and counter.locked_until > now
        ]
        if not locked:
            return None
        return Decision(retry_after=max(1, math.ceil(max(locked) - now)))

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
    """Where the counters live: one process's memory, or tables every process shares."""

    async def read(self, keys: ThrottleKeys) -> Seen:
        """The counters stored under ``keys`` and the success times of ``keys.known``
        for ``keys.account``, as they are: no lock taken, nothing written."""
        ...

    async def update(self, keys: ThrottleKeys, decide: Callable[[Seen], Decision]) -> Decision:
        """Load what :meth:`read` loads (the counters locked against concurrent
        updates), ask ``decide``, and, unless it refused (``retry_after``), store its
        counters and delete its dropped keys."""
        ...

    async def remember(self, keys: ThrottleKeys, at: float, keep: int) -> None:
        """``keys.known`` logged in to ``keys.account`` at ``at``; of that login's known
        keys, keep the ``keep`` most recent."""
        ...

    async def forget(self, before: float, known_before: float) -> None:
        """Delete counters whose last failure and lock both end before ``before``, and
        successes older than ``known_before``."""
        ...


def new_device_token() -> str:
    return secrets.token_urlsafe(24)


class LoginThrottle:
    """The :class:`~gophermart.application.ports.LoginThrottle` port: the policy over a
    store's counters. The deliberate slow-down sleeps outside any store call, so it
    holds no connection and counts against no database deadline."""

    #: Forgotten counters are deleted once per this many counted attempts (per process).
    PURGE_EVERY = 256

    def __init__(
        self,
        counters: ThrottleCounters,
        policy: ThrottlePolicy | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        new_device: Callable[[], str] = new_device_token,
    ) -> None:
        self.counters = counters
        self.policy = policy or ThrottlePolicy()
        self._clock = clock
        self._sleep = sleep
        self._new_device = new_device
        self._attempts = itertools.count(1)

    async def check(self, login: str, client: str, device: str | None = None) -> None:
        keys = ThrottleKeys.of(login, client, device)
        decision = self.policy.check(keys, await self.counters.read(keys), self._clock())
        if decision.retry_after is not None:
            raise TooManyAttempts(decision.retry_after)
        if decision.delay > 0:
            await self._sleep(decision.delay)

    async def attempt(self, login: str, client: str, device: str | None = None) -> None:
        keys = ThrottleKeys.of(login, client, device)
        now = self._clock()
        decision = await self.counters.update(
            keys, lambda seen: self.policy.attempt(keys, seen, now)
        )
        if decision.retry_after is not None:
            raise TooManyAttempts(decision.retry_after)  # nothing was counted
        if next(self._attempts) % self.PURGE_EVERY == 0:
            await self.counters.forget(now - self.policy.window, now - self.policy.remember_for)

    async def succeeded(self, login: str, client: str, device: str | None = None) -> str:
        keys = ThrottleKeys.of(login, client, device)
        now = self._clock()
        await self.counters.update(keys, lambda seen: self.policy.succeeded(keys, seen, now))
        return await self.remember(login, client, device)

    async def remember(self, login: str, client: str, device: str | None = None) -> str:
        token = device if device and _DEVICE_TOKEN.fullmatch(device) else self._new_device()
        keys = ThrottleKeys.of(login, client, token)
        await self.counters.remember(keys, self._clock(), self.policy.known_per_login)
        return token
