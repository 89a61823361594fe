"""Webhooks end to end (issue 18, "Done when"), on real SQLite and PostgreSQL, with real
HTTP receivers (tests/integration/receiver.py) and the library's own worker; delays are
scaled down (a backoff of tens of milliseconds, a "30 s" endpoint that answers in 3 s)
so each scenario takes seconds.

* an endpoint down for a while then back gets every event, in order per user, at least
  once, each signature verifying;
* a rolled-back withdrawal (the host's transaction, and a refused one) is never POSTed;
* a user's events arrive in ``balance_after`` order (their history's order);
* a slow endpoint delays another by no more than a second;
* a delivery that keeps failing is ``failed`` after its window, and a redeliver sends it.

The kill -9 of a ``gophermart worker`` mid-batch is test_webhooks_crash.py.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from gophermart import Gophermart, InsufficientPoints, Points
from gophermart.bootstrap import build
from gophermart.settings import DatabaseTarget, Settings
from gophermart.testing import TEST_SECRET, use_test_doubles
from tests.integration.receiver import Receiver, receiving

#: Fast retries: a down endpoint is asked again within a fifth of a second.
FAST = {"webhook_backoff": 0.05, "webhook_backoff_cap": 0.2, "webhook_timeout": 2.0}


@asynccontextmanager
async def running(database_uri: str, **changes: Any) -> AsyncIterator[Gophermart]:
    """The library on ``database_uri`` with its worker running (fast test doubles)."""
    settings = Settings.for_database(database_uri, secret=TEST_SECRET, **{**FAST, **changes})
    loyalty = Gophermart(use_test_doubles(build(settings)))
    async with loyalty, loyalty.running_worker():
        yield loyalty


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as r:
        yield r


async def wait_for(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def _user_with_points(loyalty: Gophermart, cents: int = 100_000) -> int:
    user = (await loyalty.register(f"u-{uuid.uuid4().hex[:10]}", "pw")).user_id
    await loyalty.adjust(user, Points(cents), "seed", operator="tests")
    return user


_orders = iter(range(10**6))


def _order() -> str:
    """A fresh order number that passes the Luhn check."""
    from tests.luhn_reference import with_check_digit

    return with_check_digit(f"4{next(_orders):09d}{uuid.uuid4().int % 10**5:05d}")


async def test_a_down_endpoint_gets_every_event_in_order_per_user_once_back(
    database_uri: str, receiver: Receiver
) -> None:
    async with running(database_uri) as loyalty:
        new = await loyalty.add_webhook(receiver.url, ["ledger.*"])
        receiver.down()
        users = [await _user_with_points(loyalty) for _ in range(3)]
        for round_ in range(4):
            for user in users:
                assert await loyalty.withdraw(user, _order(), 1 + round_)
        await asyncio.sleep(1.0)  # a second of refused connections and retries
        views = await loyalty.webhook_deliveries(new.endpoint.id)
        assert len(views) == 15 and all(v.state == "pending" for v in views)
        assert any(v.attempts > 1 for v in views)  # it was being retried
        receiver.up()
        await wait_for(lambda: len(set(receiver.event_ids())) == 15, "all 15 events")
        await _until_all_delivered(loyalty, new.endpoint.id)
    events = [r.event for r in receiver.received]
    assert all(r.verifies(new.secret) for r in receiver.received)
    assert all(r.headers["content-type"] == "application/json" for r in receiver.received)
    for user in users:
        mine = [e.id for e in events if e.user_id == user]
        assert mine == sorted(mine)  # in order per user (a repeat is allowed: at least once)
        assert len(set(mine)) == 5  # the seed and four withdrawals


async def _until_all_delivered(loyalty: Gophermart, endpoint_id: int) -> None:
    deadline = time.monotonic() + 10
    while {v.state for v in await loyalty.webhook_deliveries(endpoint_id)} != {"delivered"}:
        assert time.monotonic() < deadline, await loyalty.webhook_deliveries(endpoint_id)
        await asyncio.sleep(0.05)


async def test_a_rolled_back_withdrawal_is_never_posted(
    database_uri: str, receiver: Receiver
) -> None:
    async with running(database_uri) as loyalty:
        new = await loyalty.add_webhook(receiver.url, ["ledger.withdrawal", "ledger.adjustment"])
        user = await _user_with_points(loyalty, 500)
        target = DatabaseTarget.parse(database_uri)
        url = (
            f"sqlite+aiosqlite:///{target.location}"
            if target.kind == "sqlite"
            else target.location.split("?")[0].replace("postgresql", "postgresql+asyncpg", 1)
        )
        engine = create_async_engine(url)
        try:
            with pytest.raises(RuntimeError):
                async with engine.begin() as conn:
                    await conn.execute(text("SELECT 1"))
                    assert await loyalty.withdraw(user, _order(), 2, connection=conn)
                    raise RuntimeError("the payment failed: the host rolls back")
        finally:
            await engine.dispose()
        with pytest.raises(InsufficientPoints):
            await loyalty.withdraw(user, _order(), 10_000)  # refused: nothing written
        assert await loyalty.withdraw(user, _order(), 3)  # the one that commits
        await wait_for(lambda: len(receiver.received) >= 2, "the seed and the withdrawal")
        await asyncio.sleep(0.5)  # time for anything else to (wrongly) arrive
    kinds = [(r.event.type, r.event.data.get("amount")) for r in receiver.received]
    assert kinds == [("ledger.adjustment", "5"), ("ledger.withdrawal", "-3")]
    views = await _deliveries_after_close(database_uri, new.endpoint.id)
    assert len(views) == 2


async def _deliveries_after_close(database_uri: str, endpoint_id: int) -> list[Any]:
    settings = Settings.for_database(database_uri, secret=TEST_SECRET)
    async with Gophermart(use_test_doubles(build(settings))) as loyalty:
        return list(await loyalty.webhook_deliveries(endpoint_id))


async def test_a_users_events_arrive_in_balance_after_order(
    database_uri: str, receiver: Receiver
) -> None:
    async with running(database_uri) as loyalty:
        new = await loyalty.add_webhook(receiver.url, ["*"])
        user = await _user_with_points(loyalty, 10_000)

        async def spend(k: int) -> None:
            await loyalty.withdraw(user, _order(), 1 + k % 7)

        async def give(k: int) -> None:
            await loyalty.adjust(user, Points(100 + k), "goodwill", operator="tests")

        await asyncio.gather(*(spend(k) if k % 3 else give(k) for k in range(30)))
        history = await loyalty.history(user, 100)
        await wait_for(lambda: len(set(receiver.event_ids())) >= len(history), "every entry")
    assert new.endpoint.id >= 1
    arrived: list[int] = []
    for r in receiver.received:
        if r.event.id not in arrived:
            arrived.append(r.event.id)
    amounts = {r.event.id: r.event.data["amount"] for r in receiver.received}
    # The history, oldest first, is the balance_after chain: each entry's balance_after
    # is the one before plus its change. The events came in that order.
    chain = [h.amount for h in reversed(history)]
    assert [Decimal(str(amounts[event_id])) for event_id in arrived] == chain
    running_total = 0
    for h in reversed(history):
        running_total += h.change
        assert h.balance_after.cents == running_total


async def test_a_slow_endpoint_delays_another_by_no_more_than_a_second(
    database_uri: str,
) -> None:
    with receiving() as slow, receiving() as fast:
        slow.delay = 3.0  # "30 s per answer", scaled down; its deadline is 5 s
        async with running(database_uri, webhook_timeout=5.0, webhook_concurrency=2) as loyalty:
            await loyalty.add_webhook(slow.url, ["*"])
            await loyalty.add_webhook(fast.url, ["*"])
            users = [await _user_with_points(loyalty) for _ in range(8)]
            committed: dict[int, float] = {}
            for k, user in enumerate(users * 2):
                await loyalty.withdraw(user, _order(), 1 + k)
                committed[k] = time.time()
            await wait_for(lambda: len(set(fast.event_ids())) == 24, "the fast endpoint's 24")
            assert slow.in_flight <= 2  # its own two slots, busy for 3 s each
        first_at: dict[int, float] = {}
        for r in fast.received:
            if r.event.type == "ledger.withdrawal":
                first_at.setdefault(r.event.id, r.at)
        assert len(first_at) == 16
        # Each withdrawal's event reached the fast endpoint within a second of the
        # withdrawal's commit (they commit one after another: ids in that order), while
        # the slow endpoint sat on its slots.
        for k, event_id in enumerate(sorted(first_at)):
            late = first_at[event_id] - committed[k]
            assert late < 1.0, (k, late)


async def test_a_delivery_that_keeps_failing_is_failed_then_redelivered(
    database_uri: str, receiver: Receiver
) -> None:
    receiver.status = 500
    async with running(database_uri, webhook_retry_for=1.0) as loyalty:
        new = await loyalty.add_webhook(receiver.url, ["ledger.adjustment"])
        await _user_with_points(loyalty)
        endpoint = new.endpoint.id
        deadline = time.monotonic() + 10
        while True:
            views = await loyalty.webhook_deliveries(endpoint)
            if views and views[0].state == "failed":
                break
            assert time.monotonic() < deadline, views
            await asyncio.sleep(0.05)
        failed = views[0]
        assert failed.attempts > 1 and failed.last_status == 500
        assert failed.last_error is not None and failed.last_error.startswith("HTTP 500")
        receiver.status = 200
        before = len(receiver.received)
        assert await loyalty.redeliver_event(failed.event_id) == 1
        await wait_for(lambda: len(receiver.received) > before, "the redelivery")
        await asyncio.sleep(0.2)
        again = (await loyalty.webhook_deliveries(endpoint))[0]
        assert again.state == "delivered" and again.attempts == failed.attempts + 1


async def test_deliveries_done_with_are_pruned_and_a_live_endpoints_failed_ones_kept(
    database_uri: str, receiver: Receiver
) -> None:
    """Retention of deliveries: delivered ones and a deleted endpoint's go once older
    than the retention; a live endpoint's failed ones stay for an operator to replay."""
    async with running(database_uri, webhook_retry_for=0.3) as loyalty:
        good = (await loyalty.add_webhook(receiver.url, ["ledger.adjustment"])).endpoint.id
        dead = (await loyalty.add_webhook("http://127.0.0.1:9/", ["ledger.*"])).endpoint.id
        await _user_with_points(loyalty)
        await _user_with_points(loyalty)
        await _until_all_delivered(loyalty, good)
        deadline = time.monotonic() + 10
        while {v.state for v in await loyalty.webhook_deliveries(dead)} != {"failed"}:
            assert time.monotonic() < deadline, await loyalty.webhook_deliveries(dead)
            await asyncio.sleep(0.05)
        store = loyalty.container.store.cold.webhooks()
        later = datetime.now(UTC) + timedelta(hours=1)
        assert await store.prune(datetime.now(UTC) - timedelta(hours=1), 100) == 0
        assert await store.prune(later, 1) == 1  # a batch at a time
        assert await store.prune(later, 100) == 1
        assert await loyalty.webhook_deliveries(good) == []
        assert len(await loyalty.webhook_deliveries(dead)) == 2  # failed: kept
        await loyalty.delete_webhook(dead)
        assert await store.prune(later, 100) == 2
        assert await loyalty.webhook_deliveries(dead) == []
