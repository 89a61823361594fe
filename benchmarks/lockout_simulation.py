"""Lockouts as a weapon (issue 15, finding 2): a simulated day of guessing at one login.

The attack: 21 wrong guesses from 5 addresses, then one guess each time the lock ends,
the addresses in turn, for 24 h. The owner, who logged in once from home before it
began, tries every 5 minutes. Prints, as JSON, how many of those tries got in: from
home, from a new address with the device cookie of that first login, and from a new
address without it. Runs the throttle of whatever ``gophermart`` is importable, on its
in-memory counters and a simulated clock (no server, no waiting), so an older tree
can be measured the same way:

    git archive <commit> src | tar -x -C /tmp/before
    PYTHONPATH=/tmp/before/src python benchmarks/lockout_simulation.py
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import json

from gophermart.adapters.stores.memory.throttle import MemoryThrottleCounters
from gophermart.application.throttling import LoginThrottle
from gophermart.domain.errors import TooManyAttempts

DAY = 86_400.0
HOME, ELSEWHERE = "198.51.100.1", "192.0.2.77"
ATTACKERS = [f"203.0.113.{i}" for i in range(1, 6)]


class Clock:
    now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


async def no_sleep(_seconds: float) -> None:
    return None


async def log_in(t: LoginThrottle, client: str, right: bool, device: str | None) -> object:
    """200 (the device token, or "" before devices), 401, or a 429's Retry-After."""
    has_devices = hasattr(t, "check")  # before issue 15: attempt() alone, no devices
    extra = (device,) if has_devices else ()
    try:
        if has_devices:
            await t.check("alice", client, *extra)
        await t.attempt("alice", client, *extra)
    except TooManyAttempts as exc:
        return exc.retry_after
    if not right:
        return 401
    token = await t.succeeded("alice", client, *extra)
    return token or ""


async def day(owner: str, with_device: bool) -> dict[str, int]:
    clock = Clock()
    t = LoginThrottle(MemoryThrottleCounters(), clock=clock, sleep=no_sleep)
    start = clock.now
    first = await log_in(t, HOME, True, None)
    device = first if with_device and isinstance(first, str) else None
    events = [(start + 300.0 * i, 0, "owner") for i in range(1, 289)]
    events += [(start + 0.01 * i, i, "guess") for i in range(21)]
    heapq.heapify(events)
    got_in = tries = guesses = 0
    while events:
        at, _, who = heapq.heappop(events)
        if at > start + DAY:
            break
        clock.now = at
        if who == "owner":
            tries += 1
            got_in += isinstance(await log_in(t, owner, True, device), str)
            continue
        guesses += 1
        answer = await log_in(t, ATTACKERS[guesses % 5], False, None)
        wait = answer if isinstance(answer, int) and answer != 401 else 1.0
        if guesses >= 21:
            heapq.heappush(events, (at + wait, guesses, "guess"))
    return {"owner_got_in": got_in, "owner_tries": tries, "guesses": guesses}


async def main() -> None:
    print(
        json.dumps(
            {
                "throttle_has_devices": "device"
                in inspect.signature(LoginThrottle.attempt).parameters,
                "from_home": await day(HOME, False),
                "elsewhere_with_device_cookie": await day(ELSEWHERE, True),
                "elsewhere_without_cookie": await day(ELSEWHERE, False),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
