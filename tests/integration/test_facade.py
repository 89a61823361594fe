"""The library's public face on every backend: memory, SQLite and PostgreSQL.

Only names exported by ``gophermart`` and ``gophermart.testing`` are used here, as a
host would; the sync twin, a host's own engine and the mounted HTTP API included.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
from litestar import Litestar, get
from litestar.testing import TestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

import gophermart
from gophermart import (
    AccrualVerdict,
    BlockingGophermart,
    Gophermart,
    GophermartError,
    IllegalStatusTransition,
    InsufficientPoints,
    InvalidCredentials,
    InvalidOrderNumber,
    LoginTaken,
    NotOpen,
    OrderOwnedByAnotherUser,
    OrderStatus,
    Points,
    Unauthenticated,
    UnknownOrder,
    UploadOutcome,
    WithdrawalConflict,
    http_router,
    loyalty_lifespan,
)
from gophermart.testing import TEST_SECRET, ScriptedAccrual, loyalty_for_tests

ORDER, OTHER, SPEND, SPEND_2 = "9278923470", "12345678903", "2377225624", "79927398713"


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    return str(
        request.getfixturevalue("sqlite_uri" if request.param == "sqlite" else "postgres_uri")
    )


@pytest.fixture
async def loyalty(url: str) -> AsyncIterator[Gophermart]:
    async with Gophermart.open(url, secret=TEST_SECRET) as opened:
        yield opened


async def test_the_whole_mission_through_the_facade(loyalty: Gophermart) -> None:
    alice = await loyalty.register("alice", "correct horse")
    bob = await loyalty.register("bob", "battery staple")
    with pytest.raises(LoginTaken):
        await loyalty.register("alice", "again")
    again = await loyalty.log_in("alice", "correct horse", client="10.0.0.1")
    assert again.user_id == alice.user_id
    with pytest.raises(InvalidCredentials):
        await loyalty.log_in("alice", "wrong", client="10.0.0.1")
    assert loyalty.authenticate(alice.token) == alice.user_id
    assert loyalty.authenticate(loyalty.issue_token(bob.user_id)) == bob.user_id
    with pytest.raises(Unauthenticated):
        loyalty.authenticate(alice.token + "x")

    assert await loyalty.upload_order(alice.user_id, ORDER) is UploadOutcome.ACCEPTED
    assert await loyalty.upload_order(alice.user_id, ORDER) is UploadOutcome.ALREADY_YOURS
    with pytest.raises(OrderOwnedByAnotherUser):
        await loyalty.upload_order(bob.user_id, ORDER)
    with pytest.raises(InvalidOrderNumber):
        await loyalty.upload_order(bob.user_id, "12345")

    credited = await loyalty.record_accrual(ORDER, "729.975")  # rounded half up
    assert credited.status is OrderStatus.PROCESSED and credited.accrual == Points(72998)
    again_credited = await loyalty.record_accrual(ORDER, "729.975")  # idempotent
    assert again_credited.accrual == Points(72998)
    with pytest.raises(IllegalStatusTransition):
        await loyalty.record_accrual(ORDER, "1")  # final is final
    with pytest.raises(UnknownOrder):
        await loyalty.record_accrual(OTHER, "1")

    assert await loyalty.withdraw(alice.user_id, SPEND, "500") is True
    assert await loyalty.withdraw(alice.user_id, SPEND, Points.exact("500")) is False  # replay
    with pytest.raises(WithdrawalConflict):
        await loyalty.withdraw(alice.user_id, SPEND, "1")
    with pytest.raises(InsufficientPoints):
        await loyalty.withdraw(alice.user_id, SPEND_2, "229.99")

    balance = await loyalty.balance(alice.user_id)
    assert (balance.current, balance.withdrawn) == (Points(22998), Points(50000))
    [order] = await loyalty.orders(alice.user_id)
    assert (order.number, order.status, order.accrual) == (
        ORDER,
        OrderStatus.PROCESSED,
        Points(72998),
    )
    [spent] = await loyalty.withdrawals(alice.user_id)
    assert (spent.order, spent.sum) == (SPEND, Points(50000))
    assert await loyalty.orders(bob.user_id) == []
    report = await loyalty.reconcile()
    assert report.ok and report.ledger_entries == 2, report.summary()


async def test_the_queue_depth_tells_leased_orders_from_scheduled_and_due(
    loyalty: Gophermart,
) -> None:
    """SPEC (Operations): the queue depth counts orders due, leased and overdue. Leased is
    a claim whose lease still runs; once it runs out unended, the order is due again."""
    from datetime import timedelta

    from gophermart.domain.orders import OrderNumber

    shopper = await loyalty.register("queue", "depth of it")
    polled, waiting, fresh = "79927398713", "12345678903", "9278923470"
    for number in (polled, waiting, fresh):
        await loyalty.upload_order(shopper.user_id, number)
    now = loyalty.container.clock().now()
    later = now + timedelta(seconds=1)
    async with loyalty.container.store.uow() as uow:
        await uow.orders.reschedule(OrderNumber(waiting), now + timedelta(minutes=5))
        await uow.commit()
    async with loyalty.container.store.uow() as uow:
        claimed = await uow.orders.claim_due(later, later + timedelta(seconds=10), 1)
        await uow.commit()
    assert [c.number.value for c in claimed] == [polled]  # the oldest due one
    probe = loyalty.container.store.cold.queue_probe()
    depth = await probe.depth(later, 30.0)
    assert (depth.due, depth.leased, depth.scheduled, depth.overdue) == (1, 1, 1, 0)
    # Its worker died: past the lease the order is due (and overdue 30 s after that).
    gone = await probe.depth(later + timedelta(seconds=45), 30.0)
    assert (gone.due, gone.leased, gone.scheduled, gone.overdue) == (2, 0, 1, 2)


async def test_recorded_verdicts_move_orders_like_the_accrual_system_does(
    loyalty: Gophermart,
) -> None:
    carol = await loyalty.register("carol", "pw")
    await loyalty.upload_order(carol.user_id, ORDER)
    await loyalty.upload_order(carol.user_id, OTHER)
    moved = await loyalty.record_accrual(ORDER, verdict=AccrualVerdict.PROCESSING)
    assert moved.status is OrderStatus.PROCESSING
    rejected = await loyalty.record_accrual(OTHER, verdict=AccrualVerdict.INVALID)
    assert rejected.status is OrderStatus.INVALID
    with pytest.raises(IllegalStatusTransition):
        await loyalty.record_accrual(OTHER, "5")  # INVALID is final
    nothing = await loyalty.record_accrual(ORDER, verdict=AccrualVerdict.PROCESSED)
    assert nothing.status is OrderStatus.PROCESSED and nothing.accrual is None
    assert (await loyalty.balance(carol.user_id)).current == Points(0)
    assert (await loyalty.reconcile()).ok


async def test_concurrent_recordings_of_one_verdict_credit_once(loyalty: Gophermart) -> None:
    dave = await loyalty.register("dave", "pw")
    await loyalty.upload_order(dave.user_id, ORDER)
    results = await asyncio.gather(
        *(loyalty.record_accrual(ORDER, "10.5") for _ in range(8)), return_exceptions=True
    )
    assert all(not isinstance(r, BaseException) for r in results), results
    assert (await loyalty.balance(dave.user_id)).current == Points(1050)
    assert (await loyalty.reconcile()).ok


def test_every_error_a_verb_raises_is_a_gophermart_error() -> None:
    for name in gophermart.__all__:
        value = getattr(gophermart, name)
        if isinstance(value, type) and issubclass(value, Exception) and name != "ConfigError":
            assert issubclass(value, GophermartError), name


async def test_the_worker_runs_as_a_task_the_host_controls() -> None:
    accrual = ScriptedAccrual()
    accrual.will_credit(ORDER, "42")
    async with loyalty_for_tests(accrual=accrual) as loyalty:
        erin = await loyalty.register("erin", "pw")
        await loyalty.upload_order(erin.user_id, ORDER)
        task = await loyalty.start_worker()
        assert not task.done()
        for _ in range(500):
            if (await loyalty.orders(erin.user_id))[0].status is OrderStatus.PROCESSED:
                break
            await asyncio.sleep(0.01)
        await loyalty.stop_worker()
        assert task.done()
        assert (await loyalty.balance(erin.user_id)).current == Points(4200)
        assert accrual.calls == [ORDER]


# --- bringing its own database ------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def host_engine_url(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        path = request.getfixturevalue("sqlite_uri").removeprefix("sqlite:///")
        return f"sqlite+aiosqlite:///{path}"
    uri = str(request.getfixturevalue("postgres_uri")).split("?")[0]
    return uri.replace("postgresql://", "postgresql+asyncpg://", 1)


async def test_a_host_engine_is_used_and_left_open(host_engine_url: str) -> None:
    engine = create_async_engine(host_engine_url)
    try:
        async with Gophermart.on_engine(engine, secret=TEST_SECRET) as loyalty:
            frank = await loyalty.register("frank", "pw")
            await loyalty.upload_order(frank.user_id, ORDER)
            await loyalty.record_accrual(ORDER, "3")
            assert await loyalty.withdraw(frank.user_id, SPEND, "1")
            assert (await loyalty.balance(frank.user_id)).current == Points(200)
        async with engine.connect() as conn:  # still the host's, still open, data in it
            assert await conn.scalar(text("SELECT balance FROM gophermart_accounts")) == 200
    finally:
        await engine.dispose()


async def test_a_host_asyncpg_pool_serves_the_requests_and_is_left_open(
    postgres_uri: str,
) -> None:
    pool = await asyncpg.create_pool(postgres_uri, min_size=1, max_size=4)
    try:
        async with Gophermart.on_asyncpg_pool(pool, secret=TEST_SECRET) as loyalty:
            ivan = await loyalty.register("ivan", "pw")
            await loyalty.upload_order(ivan.user_id, ORDER)
            await loyalty.record_accrual(ORDER, "3")
            assert await loyalty.withdraw(ivan.user_id, SPEND, "1")
            assert (await loyalty.balance(ivan.user_id)).current == Points(200)
            assert await loyalty.container.store.hot_pool().get() is pool  # the hot paths use it
        assert await pool.fetchval("SELECT balance FROM gophermart_accounts") == 200  # still open
    finally:
        await pool.close()


def test_a_pool_without_a_dsn_needs_one() -> None:
    class Pool:  # what asyncpg.create_pool(host=..., user=...) leaves: no DSN to reuse
        _connect_args = ()

    with pytest.raises(gophermart.ConfigError, match="dsn="):
        Gophermart.on_asyncpg_pool(Pool())


# --- the blocking twin ----------------------------------------------------------------


def test_the_blocking_twin_serves_many_threads(tmp_path: object) -> None:
    with BlockingGophermart.open(f"sqlite:///{tmp_path}/sync.db", secret=TEST_SECRET) as loyalty:
        grace = loyalty.register("grace", "pw")
        loyalty.upload_order(grace.user_id, ORDER)
        loyalty.record_accrual(ORDER, "10")
        outcomes: list[bool | str] = []

        def spend() -> None:
            try:
                outcomes.append(loyalty.withdraw(grace.user_id, SPEND, "7"))
            except GophermartError as exc:
                outcomes.append(type(exc).__name__)

        threads = [threading.Thread(target=spend) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(map(str, outcomes)) == ["False"] * 5 + ["True"]  # charged once
        assert loyalty.balance(grace.user_id).current == Points(300)
        assert loyalty.reconcile().ok
    with pytest.raises(NotOpen):
        loyalty.balance(grace.user_id)  # closed


# --- the HTTP API mounted in a host's app ------------------------------------------------


@pytest.fixture
def shop(url: str) -> Iterator[TestClient[Litestar]]:
    @get("/")
    async def home() -> str:
        return "shop"

    loyalty = Gophermart.open(url, secret=TEST_SECRET)
    app = Litestar(
        route_handlers=[home, http_router(loyalty, path="/loyalty")],
        lifespan=[loyalty_lifespan(loyalty)],
    )
    with TestClient(app=app) as client:
        yield client


def test_the_api_mounts_under_a_prefix_and_shares_the_hosts_lifespan(
    shop: TestClient[Litestar],
) -> None:
    assert shop.get("/").text == "shop"
    signed = shop.post("/loyalty/api/user/register", json={"login": "heidi", "password": "pw"})
    assert signed.status_code == 200
    assert "Path=/loyalty/" in signed.headers["set-cookie"]
    token = signed.headers["authorization"]
    assert shop.post("/loyalty/api/user/orders", content=ORDER).status_code == 202  # cookie
    assert shop.get("/loyalty/api/user/balance", headers={"Authorization": token}).json() == {
        "current": 0,
        "withdrawn": 0,
        "held": 0,
        "owed": 0,
    }
    bad = shop.post("/loyalty/api/user/orders", content="12345", headers={"Authorization": token})
    assert bad.status_code == 422 and "error" in bad.json()
    assert shop.get("/api/user/balance").status_code == 404  # only under the prefix
