"""The WebhookStore's queue on both SQL stores, statement by statement: the stream's
lease and its settles by compare-and-set, claims of each user's oldest pending delivery,
and a group commit of outcomes that claims each user's next delivery (PostgreSQL: one
set-based statement, stores/postgres/webhooks.py; SQLite: the shared store's statements
one by one)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from gophermart import Gophermart
from gophermart.application.ports import ClaimedDelivery, FirstTry, NewDelivery
from gophermart.bootstrap import build
from gophermart.settings import Settings
from gophermart.testing import TEST_SECRET, use_test_doubles

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
LEASE = NOW + timedelta(seconds=15)
LATER = NOW + timedelta(minutes=5)


@pytest.fixture
async def store(database_uri: str) -> AsyncIterator[Any]:
    settings = Settings.for_database(database_uri, secret=TEST_SECRET)
    async with Gophermart(use_test_doubles(build(settings))) as loyalty:
        yield loyalty.container.store.cold.webhooks()


def _new(event_id: int, user_id: int) -> NewDelivery:
    body = b'{"id": %d}' % event_id
    return NewDelivery(event_id, user_id, "ledger.adjustment", NOW, body)


async def _endpoint_with(store: Any, events: list[tuple[int, int]]) -> int:
    """An endpoint with a pending (untried) delivery of each (event, user)."""
    endpoint = (await store.add("http://127.0.0.1:9/", ("*",), "s", 0, NOW)).id
    deliveries = [_new(event, user) for event, user in events]
    assert await store.stream(endpoint, "a", NOW, LEASE) == 0
    assert await store.settle(endpoint, "a", 0, events[-1][0], deliveries, NOW, LEASE)
    return int(endpoint)


def _ids(claimed: list[ClaimedDelivery | None]) -> list[int | None]:
    return [c.event_id if c is not None else None for c in claimed]


async def test_a_settle_moves_the_cursor_once_and_keeps_the_bytes(store: Any) -> None:
    endpoint = await _endpoint_with(store, [(1, 10), (2, 11)])
    assert not await store.settle(endpoint, "a", 0, 3, [_new(3, 10)], NOW, LEASE)  # moved
    assert [x.cursor for x in await store.lag() if x.endpoint_id == endpoint] == [2]
    assert await store.settle(endpoint, "a", 2, 5, [], NOW, LEASE)  # none matched: moves
    claimed = await store.claim(endpoint, NOW, LEASE, 10)
    assert [(c.event_id, c.user_id, c.body, c.attempts) for c in claimed] == [
        (1, 10, b'{"id": 1}', 1),
        (2, 11, b'{"id": 2}', 1),
    ]


async def test_one_process_streams_an_endpoint_until_its_lease_runs_out(store: Any) -> None:
    endpoint = (await store.add("http://127.0.0.1:9/", ("*",), "s", 7, NOW)).id
    assert await store.stream(endpoint, "a", NOW, LEASE) == 7
    assert await store.stream(endpoint, "b", NOW, NOW + timedelta(seconds=30)) is None
    assert await store.stream(endpoint, "a", NOW, LEASE) == 7  # kept by its holder
    # Its lease ran out: "b" takes it over, and "a"'s settle writes nothing.
    assert await store.stream(endpoint, "b", LEASE, LATER) == 7
    assert not await store.settle(endpoint, "a", 7, 9, [_new(8, 10)], LEASE, LATER)
    assert await store.settle(endpoint, "b", 7, 9, [], LEASE, LATER)
    # Given up (``until`` = now): anyone takes it at once.
    assert await store.stream(endpoint, "b", LEASE, LEASE) == 9
    assert await store.stream(endpoint, "c", LEASE, LATER) == 9
    await store.delete(endpoint, LATER)
    assert await store.stream(endpoint, "c", LATER, LATER) is None  # deleted: nobody


async def test_a_settle_records_each_delivery_as_its_first_try_left_it(store: Any) -> None:
    endpoint = (await store.add("http://127.0.0.1:9/", ("*",), "s", 0, NOW)).id
    tried = NOW - timedelta(seconds=1)
    delivered = replace(_new(1, 10), tried=FirstTry(tried, 200, None, None))
    failed = replace(_new(2, 11), tried=FirstTry(tried, 503, "HTTP 503", LATER))
    behind = _new(3, 11)  # queued behind user 11's failed one, never tried
    assert await store.stream(endpoint, "a", NOW, LEASE) == 0
    assert await store.settle(endpoint, "a", 0, 3, [delivered, failed, behind], NOW, LEASE)
    views = {v.event_id: v for v in await store.deliveries(endpoint, 10, None)}
    assert (views[1].state, views[1].attempts, views[1].last_status) == ("delivered", 1, 200)
    assert views[1].delivered_at == tried and views[1].next_attempt_at is None
    assert (views[2].state, views[2].attempts, views[2].last_error) == ("pending", 1, "HTTP 503")
    assert views[2].next_attempt_at == LATER and views[2].last_attempt_at == tried
    assert (views[3].state, views[3].attempts, views[3].next_attempt_at) == ("pending", 0, NOW)
    assert await store.queued(endpoint, [10, 11, 12]) == {11}
    assert await store.claim(endpoint, NOW, LEASE, 10) == []  # 2 not due, 3 waits for it
    retried = await store.claim(endpoint, LATER, LATER + timedelta(seconds=15), 10)
    assert [(c.event_id, c.attempts, c.failures, c.first_at) for c in retried] == [
        (2, 2, 1, tried)  # the retry window began with the stream's try
    ]


async def test_outcomes_recorded_together_each_claim_their_users_next(store: Any) -> None:
    # Users 10 (events 1, 2, 3), 11 (4, 5) and 12 (6).
    endpoint = await _endpoint_with(store, [(1, 10), (2, 10), (3, 10), (4, 11), (5, 11), (6, 12)])
    heads = await store.claim(endpoint, NOW, LEASE, 10)
    assert _ids(heads) == [1, 4, 6]  # each user's oldest; the later ones wait
    one, four, six = heads
    at = NOW + timedelta(seconds=1)
    # One group commit: delivered, failed for now (retried later), delivered.
    following = await asyncio.gather(
        store.record(one, "delivered", at, None, 200, None, LEASE),
        store.record(four, "pending", at, LATER, 500, "HTTP 500", LEASE),
        store.record(six, "delivered", at, None, 204, None, LEASE),
    )
    assert _ids(following) == [2, None, None]  # 5 waits for 4; 12 has nothing more
    two = following[0]
    assert two is not None and two.attempts == 1 and two.first_at == at
    # An outcome of an attempt taken over since (or recorded twice) writes nothing.
    assert await store.record(one, "pending", at, LATER, 500, "late", LEASE) is None
    assert await store.claim(endpoint, at, LEASE, 10) == []  # 2 leased, 4 not due yet
    # A delivery that failed for good lets its user's next one go.
    three = await store.record(two, "failed", at, None, 410, "HTTP 410", LEASE)
    assert _ids([three]) == [3]
    assert await store.record(three, "delivered", at, None, 200, None, None) is None
    views = {v.event_id: v for v in await store.deliveries(endpoint, 10, None)}
    assert {e: v.state for e, v in views.items()} == {
        1: "delivered",
        2: "failed",
        3: "delivered",
        4: "pending",
        5: "pending",
        6: "delivered",
    }
    assert views[4].attempts == 1 and views[4].last_error == "HTTP 500"
    assert views[1].delivered_at == at and views[1].last_status == 200
    # Once 4 is due again it is claimed, and delivered it brings 5 along.
    (again,) = await store.claim(endpoint, LATER, LATER + timedelta(seconds=15), 10)
    assert (again.event_id, again.attempts, again.failures) == (4, 2, 1)
    lease = LATER + timedelta(seconds=15)
    five = await store.record(again, "delivered", LATER, None, 200, None, lease)
    assert _ids([five]) == [5]


async def test_no_next_delivery_is_claimed_without_a_lease_or_before_it_is_due(
    store: Any,
) -> None:
    endpoint = await _endpoint_with(store, [(1, 10), (2, 10)])
    (one,) = await store.claim(endpoint, NOW, LEASE, 10)
    # Delivered, but the worker is stopping: no lease asked, nothing chained.
    assert await store.record(one, "delivered", NOW, None, 200, None, None) is None
    (two,) = await store.claim(endpoint, NOW, LEASE, 10)
    assert two.event_id == 2


async def test_the_worker_vacuums_the_deliveries_after_many_outcomes_on_postgres(
    postgres_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gophermart.adapters.stores.postgres import webhooks as pg_webhooks

    monkeypatch.setattr(pg_webhooks, "VACUUM_AFTER", 3)
    monkeypatch.setattr(pg_webhooks, "VACUUM_EVERY", 0.0)
    settings = Settings.for_database(postgres_uri, secret=TEST_SECRET)
    async with Gophermart(use_test_doubles(build(settings))) as loyalty:
        store = loyalty.container.store.cold.webhooks()
        endpoint = await _endpoint_with(store, [(1, 10), (2, 11), (3, 12), (4, 13)])

        async def vacuums() -> int:
            async with store._pool.connection() as conn:
                return int(
                    await conn.fetchval(
                        "SELECT vacuum_count FROM pg_stat_user_tables"
                        " WHERE relname = 'gophermart_webhook_deliveries'"
                    )
                )

        before = await vacuums()
        claimed = await store.claim(endpoint, NOW, LEASE, 10)
        at = NOW + timedelta(seconds=1)
        await asyncio.gather(
            *(store.record(c, "delivered", at, None, 200, None, None) for c in claimed[:2])
        )
        assert store._vacuum is None  # 2 outcomes: not yet
        await asyncio.gather(
            *(store.record(c, "delivered", at, None, 200, None, None) for c in claimed[2:])
        )
        assert store._vacuum is not None  # 4 >= 3: a VACUUM in the background
        await store._vacuum
        assert await vacuums() == before + 1


async def test_closing_the_pool_cuts_off_a_statement_run_alone(postgres_uri: str) -> None:
    """The worker's background VACUUM runs on a connection of its own: the store's
    close ends it too, instead of leaving it running past the pool's close."""
    from gophermart.adapters.stores.postgres.pool import PgPool

    pool = PgPool(postgres_uri, timeout=5.0)
    running = asyncio.create_task(pool.run_alone("SELECT pg_sleep(30)"))
    await asyncio.sleep(0.5)  # connected, sleeping
    started = time.monotonic()
    await pool.close()
    with pytest.raises(asyncpg.exceptions.ConnectionDoesNotExistError):
        await asyncio.wait_for(running, 5)
    assert time.monotonic() - started < 2
