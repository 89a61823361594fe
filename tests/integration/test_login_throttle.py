"""Issue 9, finding 9: login throttling across processes, on SQLite and PostgreSQL.

The counters live in the database: two throttles on two engines (two processes, as
far as the database can tell) count the same guesses, a concurrent burst is counted
attempt by attempt, an address that fails a lot is slowed and never locked. Then the
service itself with ``-w 2``: of 20 guesses at one password, the free ones and one
more reach a password check, whichever process answers; and X-Forwarded-For counts
only from a configured proxy.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from gophermart.adapters.stores.sql.engine import Database
from gophermart.adapters.stores.sql.migrate import migrate
from gophermart.adapters.stores.sql.schema import login_failures, login_successes
from gophermart.adapters.stores.sql.throttle import SqlThrottleCounters
from gophermart.application.throttling import LoginThrottle, ThrottlePolicy
from gophermart.domain.errors import TooManyAttempts
from tests.conftest import start_service
from tests.sql_database import database_for


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
async def databases(database_uri: str) -> AsyncIterator[tuple[Database, Database]]:
    """Two engines on one database: what two server processes are to it."""
    first, second = (database_for(database_uri) for _ in range(2))
    await migrate(first)
    try:
        yield first, second
    finally:
        await first.dispose()
        await second.dispose()


def throttles(
    databases: tuple[Database, Database], clock: Clock, sleeps: Sleeps, **policy: float
) -> tuple[LoginThrottle, LoginThrottle]:
    """The policy over each process's own view of the shared counters."""
    return (
        LoginThrottle(
            SqlThrottleCounters(d.write, d.read),
            ThrottlePolicy(**policy),
            clock=clock,
            sleep=sleeps,
        )
        for d in databases
    )  # type: ignore[return-value]


async def outcome(
    throttle: LoginThrottle, login: str, client: str, device: str | None = None
) -> int | None:
    """``None`` when the attempt may go on to the password check, else its Retry-After:
    checked before it queues for the hasher, counted when its turn comes."""
    try:
        await throttle.check(login, client, device)
        await throttle.attempt(login, client, device)
    except TooManyAttempts as exc:
        return exc.retry_after
    return None


async def test_two_processes_count_the_same_guesses(
    databases: tuple[Database, Database],
) -> None:
    clock, sleeps = Clock(), Sleeps()
    a, b = throttles(databases, clock, sleeps, free_per_pair=5, free_per_login=20)
    results = [await outcome((a, b)[i % 2], "alice", "6.6.6.6") for i in range(10)]
    assert results[:6] == [None] * 6  # five free, the sixth is checked and locks 2 s
    assert results[6:] == [2] * 4
    clock.now += 2
    assert await outcome(b, "alice", "6.6.6.6") is None  # one more, then 4 s
    assert await outcome(a, "alice", "6.6.6.6") == 4
    # alice herself, elsewhere, is not locked out; her success clears her login's count
    assert await outcome(a, "alice", "1.1.1.1") is None
    await a.succeeded("alice", "1.1.1.1")
    assert await outcome(b, "alice", "6.6.6.6") == 4  # the guesser's pair stays locked


async def test_a_login_is_locked_against_many_addresses_in_every_process(
    databases: tuple[Database, Database],
) -> None:
    clock, sleeps = Clock(), Sleeps()
    a, b = throttles(databases, clock, sleeps, free_per_pair=5, free_per_login=8)
    for i in range(9):
        assert await outcome((a, b)[i % 2], "alice", f"10.0.0.{i}") is None
    assert await outcome(a, "alice", "10.9.9.9") == 2
    assert await outcome(b, "alice", "10.9.9.8") == 2
    assert await outcome(a, "bob", "10.9.9.9") is None  # other logins are not affected


async def test_a_concurrent_burst_is_counted_attempt_by_attempt(
    databases: tuple[Database, Database],
) -> None:
    clock, sleeps = Clock(), Sleeps()
    a, b = throttles(databases, clock, sleeps, free_per_pair=5, free_per_login=20)
    results = await asyncio.gather(*(outcome((a, b)[i % 2], "alice", "c") for i in range(20)))
    assert results.count(None) == 6
    assert results.count(2) == 14


async def test_an_address_failing_a_lot_is_slowed_never_locked(
    databases: tuple[Database, Database],
) -> None:
    clock, sleeps = Clock(), Sleeps()
    a, b = throttles(databases, clock, sleeps)  # the production policy
    for i in range(60):  # spraying: one guess at each of 60 logins, from one address
        assert await outcome((a, b)[i % 2], f"user{i}", "6.6.6.6") is None
    assert len(sleeps.delays) == 10  # the 51st to 60th waited, increasingly
    assert sleeps.delays == sorted(sleeps.delays) and sleeps.delays[0] > 0
    # a colleague behind the same address gets in (slowed), and success un-counts
    sleeps.delays.clear()
    assert await outcome(a, "colleague", "6.6.6.6") is None
    await a.succeeded("colleague", "6.6.6.6")
    assert await outcome(b, "colleague", "6.6.6.6") is None
    await b.succeeded("colleague", "6.6.6.6")
    assert sleeps.delays[0] == sleeps.delays[1] > 0


async def test_forgotten_counters_are_deleted(databases: tuple[Database, Database]) -> None:
    clock, sleeps = Clock(), Sleeps()
    a, _ = throttles(databases, clock, sleeps)
    a.PURGE_EVERY = 5
    for i in range(4):
        await a.attempt(f"old{i}", "1.1.1.1")
    clock.now += a.policy.window + 1
    await a.attempt("new", "2.2.2.2")  # the fifth: purges the quiet ones
    async with databases[0].read.connect() as conn:
        keys = set(await conn.scalars(select(login_failures.c.key)))
        count = await conn.scalar(select(func.count()).select_from(login_failures))
    assert keys == {"pair:2.2.2.2 new", "login:new", "client:2.2.2.2"}, keys
    assert count == 3


async def rows(database: Database, table: Any) -> set[tuple[Any, ...]]:
    async with database.read.connect() as conn:
        return {tuple(r) for r in await conn.execute(select(*table.primary_key.columns))}


async def test_a_login_locked_from_many_addresses_spares_its_owner_in_every_process(
    databases: tuple[Database, Database],
) -> None:
    """Issue 15, finding 2: the successes are shared like the counters, so the process
    that answers the owner knows where they logged in from before."""
    clock, sleeps = Clock(), Sleeps()
    a, b = throttles(databases, clock, sleeps, free_per_pair=5, free_per_login=8)
    assert await outcome(a, "alice", "1.1.1.1") is None
    device = await a.succeeded("alice", "1.1.1.1")
    for i in range(9):
        assert await outcome((a, b)[i % 2], "alice", f"10.0.0.{i}") is None
    assert await outcome(b, "alice", "10.9.9.9") == 2  # locked for everyone else
    assert await outcome(b, "alice", "1.1.1.1") is None  # not for the owner at home
    assert await outcome(b, "alice", "192.0.2.1", device) is None  # nor on their device
    assert await outcome(a, "alice", "192.0.2.1") == 2  # the same place without it: locked
    assert await outcome(a, "alice", "192.0.2.1", "someone else's device token") == 2


async def test_a_success_deletes_the_counters_it_empties(
    databases: tuple[Database, Database],
) -> None:
    clock, sleeps = Clock(), Sleeps()
    a, b = throttles(databases, clock, sleeps)
    assert await outcome(a, "alice", "1.1.1.1") is None
    assert await outcome(a, "alice", "2.2.2.2") is None
    await b.succeeded("alice", "1.1.1.1")
    left = {key for (key,) in await rows(databases[0], login_failures)}
    assert left == {"pair:2.2.2.2 alice", "login:alice", "client:2.2.2.2"}
    assert await outcome(a, "carol", "1.1.1.1") is None  # an address known to alice only
    await a.succeeded("carol", "1.1.1.1")
    assert await outcome(a, "carol", "1.1.1.1") is None  # known now: not counted in carol's
    await a.succeeded("carol", "1.1.1.1")
    left = {key for (key,) in await rows(databases[0], login_failures)}
    assert left == {"pair:2.2.2.2 alice", "login:alice", "client:2.2.2.2"}  # no empty rows


async def test_successes_are_bounded_per_login_and_forgotten(
    databases: tuple[Database, Database],
) -> None:
    clock, sleeps = Clock(), Sleeps()
    a, b = throttles(databases, clock, sleeps, known_per_login=3, remember_for=3600)
    devices = []
    for i in range(4):
        clock.now += 1
        devices.append(await (a, b)[i % 2].succeeded("alice", f"10.0.0.{i}"))
    clock.now += 1800
    await a.succeeded("bob", "10.0.0.0")
    kept = await rows(databases[0], login_successes)
    assert len([r for r in kept if r[0] == "alice"]) == 3  # the newest of 8 keys
    assert ("alice", "addr:10.0.0.3") in kept and ("alice", "addr:10.0.0.0") not in kept
    assert len([r for r in kept if r[0] == "bob"]) == 2  # its address and its device
    assert all(device not in str(kept) for device in devices)  # only their digests
    clock.now += 1801  # alice's are all older than an hour now, bob's not yet
    await b.counters.forget(clock.now - 900, clock.now - 3600)
    assert {r[0] for r in await rows(databases[0], login_successes)} == {"bob"}


# --- the service ------------------------------------------------------------------


def guesses(url: str, login: str, n: int, headers: dict[str, str] | None = None) -> list[int]:
    codes = []
    for i in range(n):
        # A new connection per guess: the kernel hands each to either process.
        with httpx.Client(base_url=url, timeout=30) as c:
            response = c.post(
                "/api/user/login",
                json={"login": login, "password": f"guess {i}"},
                headers=headers or {},
            )
            codes.append(response.status_code)
            if response.status_code == 429:
                assert int(response.headers["retry-after"]) >= 1
    return codes


def test_guesses_are_counted_across_server_processes(database_uri: str) -> None:
    """With ``-w 2`` and per-process counters, 10 of 20 guesses reached a password check."""
    svc = start_service(database_uri, "-w", "2")
    try:
        login = f"victim-{uuid.uuid4().hex[:8]}"
        with httpx.Client(base_url=svc.url, timeout=30) as c:
            assert (
                c.post("/api/user/register", json={"login": login, "password": "pw"}).status_code
                == 200
            )
        codes = guesses(svc.url, login, 20)
        assert codes.count(401) == 6, codes  # five free, and the one that set the lock
        assert codes.count(429) == 14, codes
    finally:
        assert svc.stop() == 0, svc.output()


def test_x_forwarded_for_counts_only_from_a_configured_proxy(sqlite_uri: str) -> None:
    login = f"victim-{uuid.uuid4().hex[:8]}"
    # By default the client is the TCP peer: a made-up X-Forwarded-For per request does
    # not give every guess a fresh (address, login) budget.
    svc = start_service(sqlite_uri)
    try:
        codes = [
            guesses(svc.url, login, 1, {"X-Forwarded-For": f"203.0.113.{i}"})[0] for i in range(8)
        ]
        assert codes == [401] * 6 + [429] * 2
    finally:
        assert svc.stop() == 0, svc.output()
    # Behind a configured proxy, its X-Forwarded-For names the client.
    svc = start_service(sqlite_uri, env={"GOPHERMART_TRUSTED_PROXIES": "127.0.0.1/32"})
    try:
        other = f"other-{uuid.uuid4().hex[:8]}"
        codes = guesses(svc.url, other, 7, {"X-Forwarded-For": "198.51.100.7"})
        assert codes == [401] * 6 + [429]
        # another client behind the proxy is not locked out of the same login
        assert guesses(svc.url, other, 1, {"X-Forwarded-For": "198.51.100.8"}) == [401]
    finally:
        assert svc.stop() == 0, svc.output()
