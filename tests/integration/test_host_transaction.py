"""``connection=``: the points move in the host's own transaction (SPEC "Embedding":
joining the host's transaction). A shop inserts its order row, spends points, and the
payment fails: both roll back together; or it succeeds: both commit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from gophermart import Gophermart, InsufficientPoints, InvalidInput, OrderNumber, Points
from gophermart.settings import DatabaseTarget
from gophermart.testing import loyalty_for_tests

ORDER, SPEND, SPEND_2, UPLOADED = "9278923470", "2377225624", "79927398713", "12345678903"


class PaymentFailed(Exception):
    pass


def _host_engine(database_uri: str) -> AsyncEngine:
    target = DatabaseTarget.parse(database_uri)
    if target.kind == "sqlite":
        return create_async_engine(f"sqlite+aiosqlite:///{target.location}")
    return create_async_engine(
        target.location.split("?")[0].replace("postgresql", "postgresql+asyncpg", 1)
    )


@pytest.fixture
async def shop(database_uri: str) -> AsyncIterator[tuple[Gophermart, AsyncEngine, int]]:
    async with loyalty_for_tests(database_uri=database_uri) as loyalty:
        alice = await loyalty.register("alice", "pw")
        await loyalty.upload_order(alice.user_id, ORDER)
        await loyalty.record_accrual(ORDER, 100)
        engine = _host_engine(database_uri)
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE shop_orders (number TEXT PRIMARY KEY)"))
        try:
            yield loyalty, engine, alice.user_id
        finally:
            await engine.dispose()


async def _shop_orders(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list(await conn.scalars(text("SELECT number FROM shop_orders ORDER BY number")))


async def test_a_failed_payment_rolls_the_points_back_with_the_shops_row(
    shop: tuple[Gophermart, AsyncEngine, int],
) -> None:
    loyalty, engine, alice = shop
    with pytest.raises(PaymentFailed):
        async with engine.begin() as conn:
            await conn.execute(text(f"INSERT INTO shop_orders VALUES ('{SPEND}')"))
            assert await loyalty.withdraw(alice, SPEND, 20, connection=conn)
            raise PaymentFailed
    assert (await loyalty.balance(alice)).current == Points.exact(100)
    assert await loyalty.withdrawals(alice) == []
    assert await _shop_orders(engine) == []
    assert (await loyalty.reconcile()).ok


async def test_a_paid_order_commits_the_points_with_the_shops_row(
    shop: tuple[Gophermart, AsyncEngine, int],
) -> None:
    loyalty, engine, alice = shop
    async with engine.begin() as conn:
        await conn.execute(text(f"INSERT INTO shop_orders VALUES ('{SPEND}')"))
        assert await loyalty.withdraw(alice, SPEND, 20, connection=conn)
        await loyalty.upload_order(alice, UPLOADED, connection=conn)
    balance = await loyalty.balance(alice)
    assert (balance.current, balance.withdrawn) == (Points.exact(80), Points.exact(20))
    assert [w.order for w in await loyalty.withdrawals(alice)] == [SPEND]
    assert {o.number for o in await loyalty.orders(alice)} == {ORDER, UPLOADED}
    assert await _shop_orders(engine) == [SPEND]
    assert (await loyalty.reconcile()).ok


async def test_points_moved_before_the_host_writes_anything_roll_back_with_it(
    shop: tuple[Gophermart, AsyncEngine, int],
) -> None:
    """The host's transaction has begun but sent nothing yet (SQLite's driver begins
    lazily, before the first write): our writes still join it, not commit alone."""
    loyalty, engine, alice = shop
    with pytest.raises(PaymentFailed):
        async with engine.begin() as conn:
            assert await loyalty.withdraw(alice, SPEND, 20, connection=conn)
            held = await loyalty.hold(alice, SPEND_2, 30, connection=conn)
            await loyalty.release(alice, held.hold.id, connection=conn)
            await conn.execute(text(f"INSERT INTO shop_orders VALUES ('{SPEND}')"))
            raise PaymentFailed
    balance = await loyalty.balance(alice)
    assert (balance.current, balance.withdrawn, balance.held) == (
        Points.exact(100),
        Points(0),
        Points(0),
    )
    assert [entry.kind.value for entry in await loyalty.history(alice)] == ["accrual"]
    assert await _shop_orders(engine) == []
    assert (await loyalty.reconcile()).ok


async def test_a_refused_withdrawal_leaves_the_hosts_own_rows_to_the_host(
    shop: tuple[Gophermart, AsyncEngine, int],
) -> None:
    """Our savepoint rolls back alone: the host may still commit what it wrote."""
    loyalty, engine, alice = shop
    async with engine.begin() as conn:
        await conn.execute(text(f"INSERT INTO shop_orders VALUES ('{SPEND_2}')"))
        with pytest.raises(InsufficientPoints):
            await loyalty.withdraw(alice, SPEND_2, 1000, connection=conn)
        await conn.execute(text(f"INSERT INTO shop_orders VALUES ('{SPEND}')"))
    assert await _shop_orders(engine) == sorted([SPEND, SPEND_2])
    assert (await loyalty.balance(alice)).current == Points.exact(100)


async def test_an_operator_s_retry_commits_or_rolls_back_with_the_host(
    shop: tuple[Gophermart, AsyncEngine, int],
) -> None:
    loyalty, engine, alice = shop
    await loyalty.upload_order(alice, UPLOADED)
    async with loyalty.container.store.uow() as uow:  # as the worker parks an order
        later = datetime.now(UTC) + timedelta(hours=1)
        await uow.orders.reschedule(OrderNumber(UPLOADED), later, "parked: why")
        await uow.commit()
    with pytest.raises(PaymentFailed):
        async with engine.begin() as conn:
            await conn.execute(text(f"INSERT INTO shop_orders VALUES ('{UPLOADED}')"))
            await loyalty.retry_order(UPLOADED, connection=conn)
            raise PaymentFailed
    assert (await loyalty.order_state(UPLOADED)).parked == "parked: why"
    async with engine.begin() as conn:
        await conn.execute(text(f"INSERT INTO shop_orders VALUES ('{UPLOADED}')"))
        await loyalty.retry_order(UPLOADED, connection=conn)
    assert await _shop_orders(engine) == [UPLOADED]
    retried = await loyalty.order_state(UPLOADED)
    assert retried.parked is None
    assert retried.next_attempt_at is not None and retried.next_attempt_at < later


async def test_the_memory_store_has_no_host_transaction_to_join() -> None:
    async with loyalty_for_tests() as loyalty:
        bob = await loyalty.register("bob", "pw")
        with pytest.raises(InvalidInput, match="connection="):
            await loyalty.withdraw(bob.user_id, SPEND, 1, connection=object())  # type: ignore[arg-type]
