"""The IdempotencyKeys port's contract, on memory, SQLite and PostgreSQL (as
test_repository_contract.py does for the other ports): claim, replay, mismatch, in
progress, abandon, prune, per caller; and one claim wins among many at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from gophermart.application.idempotency import Idempotency
from gophermart.application.ports import Claim, ClaimOutcome, IdempotencyKeys
from gophermart.bootstrap import build, settle
from gophermart.settings import MEMORY_URI, Settings
from gophermart.testing import TEST_SECRET

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
A, B = "a" * 64, "b" * 64


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def keys(request: pytest.FixtureRequest) -> AsyncIterator[IdempotencyKeys]:
    uri = (
        MEMORY_URI if request.param == "memory" else request.getfixturevalue(f"{request.param}_uri")
    )
    container = build(Settings.for_database(uri, secret=TEST_SECRET))
    await settle(container)
    try:
        yield container.store.cold.idempotency_keys()
    finally:
        shutdown = container.shutdown_resources()
        if shutdown is not None:
            await shutdown


async def test_a_key_is_claimed_once_then_replayed(keys: IdempotencyKeys) -> None:
    assert await keys.claim("user:1", "k", A, T0) == Claim(ClaimOutcome.NEW)
    assert await keys.claim("user:1", "k", A, T0) == Claim(ClaimOutcome.IN_PROGRESS)
    assert await keys.claim("user:1", "k", B, T0) == Claim(ClaimOutcome.MISMATCH)
    body = b'{"ok": true}\x00\xff'  # any bytes
    await keys.complete("user:1", "k", 402, body, "application/json")
    replay = Claim(ClaimOutcome.REPLAY, 402, body, "application/json")
    assert await keys.claim("user:1", "k", A, T0 + timedelta(hours=1)) == replay
    assert await keys.claim("user:1", "k", B, T0) == Claim(ClaimOutcome.MISMATCH)
    # a stored answer is never overwritten, nor abandoned
    await keys.complete("user:1", "k", 200, b"", "text/plain")
    await keys.abandon("user:1", "k")
    assert await keys.claim("user:1", "k", A, T0) == replay


async def test_an_empty_answer_is_kept_as_one(keys: IdempotencyKeys) -> None:
    assert (await keys.claim("user:1", "e", A, T0)).outcome is ClaimOutcome.NEW
    await keys.complete("user:1", "e", 202, b"", "text/plain; charset=utf-8")
    assert await keys.claim("user:1", "e", A, T0) == Claim(
        ClaimOutcome.REPLAY, 202, b"", "text/plain; charset=utf-8"
    )


async def test_keys_are_the_callers(keys: IdempotencyKeys) -> None:
    for caller in ("user:1", "user:2", "operator:ops"):
        assert (await keys.claim(caller, "same", A, T0)).outcome is ClaimOutcome.NEW
    await keys.complete("user:2", "same", 200, b"2", "text/plain")
    assert (await keys.claim("user:1", "same", A, T0)).outcome is ClaimOutcome.IN_PROGRESS
    assert (await keys.claim("user:2", "same", A, T0)).body == b"2"


async def test_an_abandoned_key_runs_again(keys: IdempotencyKeys) -> None:
    assert (await keys.claim("user:1", "k", A, T0)).outcome is ClaimOutcome.NEW
    await keys.abandon("user:1", "k")
    await keys.abandon("user:1", "never-claimed")
    assert (await keys.claim("user:1", "k", B, T0)).outcome is ClaimOutcome.NEW


async def test_prune_deletes_the_oldest_first_in_batches(keys: IdempotencyKeys) -> None:
    for n in range(5):
        assert (await keys.claim("user:1", f"k{n}", A, T0 + timedelta(hours=n))).outcome is (
            ClaimOutcome.NEW
        )
    await keys.complete("user:1", "k0", 200, b"", "text/plain")
    cutoff = T0 + timedelta(hours=3)  # k0, k1, k2 are older
    assert await keys.prune(cutoff, 2) == 2  # k0 and k1
    assert (await keys.claim("user:1", "k2", B, T0)).outcome is ClaimOutcome.MISMATCH  # kept
    later = T0 + timedelta(hours=10)
    assert (await keys.claim("user:1", "k0", B, later)).outcome is ClaimOutcome.NEW  # pruned
    assert await keys.prune(cutoff, 2) == 1  # k2
    assert await keys.prune(cutoff, 2) == 0
    for kept in ("k0", "k3", "k4"):
        assert (await keys.claim("user:1", kept, "c" * 64, T0)).outcome is ClaimOutcome.MISMATCH


async def test_many_claims_at_once_one_wins(keys: IdempotencyKeys) -> None:
    claims = await asyncio.gather(*(keys.claim("user:1", "race", A, T0) for _ in range(8)))
    outcomes = [c.outcome for c in claims]
    assert outcomes.count(ClaimOutcome.NEW) == 1
    assert set(outcomes) <= {ClaimOutcome.NEW, ClaimOutcome.IN_PROGRESS}


async def test_the_use_case_prunes_keys_older_than_a_day(keys: IdempotencyKeys) -> None:
    class Clock:
        def now(self) -> datetime:
            return T0 + timedelta(hours=24, minutes=1)

    use_case = Idempotency(keys, Clock())
    await keys.claim("user:1", "old", A, T0)
    await keys.claim("user:1", "day", A, T0 + timedelta(minutes=2))
    for n in range(5):
        await keys.claim("user:1", f"old{n}", A, T0 - timedelta(minutes=n))
    assert await use_case.prune(batch=2) == 6
    assert (await keys.claim("user:1", "day", B, T0)).outcome is ClaimOutcome.MISMATCH
    assert (await keys.claim("user:1", "old", B, T0)).outcome is ClaimOutcome.NEW
