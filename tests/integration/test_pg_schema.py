"""Our tables in a PostgreSQL schema of their own (SPEC "Embedding": sharing a database,
``db_schema`` / ``GOPHERMART_DB_SCHEMA``): every connection we open finds them there
(the asyncpg pools, the SQLAlchemy engine, the migrations, LISTEN's channel), a host's
engine and transaction included, and nothing of ours lands in the shop's schema."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from gophermart import Gophermart, Points, StoreMisconfigured
from gophermart.adapters.stores.postgres.statements import orders_channel
from gophermart.settings import ConfigError
from gophermart.testing import TEST_SECRET

SCHEMA = "loyalty"
OURS_BY_SCHEMA = (
    "SELECT schemaname, count(*) FROM pg_tables WHERE tablename LIKE 'gophermart%'"
    " GROUP BY schemaname"
)


def _sqlalchemy_url(postgres_uri: str) -> str:
    return postgres_uri.split("?")[0].replace("postgresql://", "postgresql+asyncpg://", 1)


@pytest.fixture
async def shop(postgres_uri: str) -> AsyncIterator[AsyncEngine]:
    """The shop's engine: its own search_path (public), its own users table."""
    engine = create_async_engine(_sqlalchemy_url(postgres_uri))
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)"))
        await conn.execute(text("CREATE TABLE purchases (id INTEGER PRIMARY KEY, total INT)"))
    try:
        yield engine
    finally:
        await engine.dispose()


async def _ours_by_schema(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        return dict((await conn.execute(text(OURS_BY_SCHEMA))).all())


async def _works(loyalty: Gophermart) -> None:
    alice = await loyalty.register("alice", "pw")
    await loyalty.upload_order(alice.user_id, "9278923470")
    await loyalty.record_accrual("9278923470", 50)
    await loyalty.withdraw(alice.user_id, "2377225624", 20)
    assert (await loyalty.balance(alice.user_id)).current == Points.exact(30)
    assert [o.number for o in await loyalty.orders(alice.user_id)] == ["9278923470"]
    assert (await loyalty.schema()).is_current
    assert (await loyalty.readiness()).ready
    assert (await loyalty.reconcile()).ok


@pytest.mark.parametrize("opened", ["url", "engine"])
async def test_every_path_uses_the_schema(
    postgres_uri: str, shop: AsyncEngine, opened: str
) -> None:
    if opened == "url":
        loyalty = Gophermart.open(postgres_uri, secret=TEST_SECRET, db_schema=SCHEMA)
    else:
        host = create_async_engine(_sqlalchemy_url(postgres_uri))  # search_path: public
        loyalty = Gophermart.on_engine(host, secret=TEST_SECRET, db_schema=SCHEMA)
    async with loyalty:
        await _works(loyalty)
    assert set(await _ours_by_schema(shop)) == {SCHEMA}  # nothing of ours in public
    async with shop.connect() as conn:  # the data is in the schema, found by name
        count = await conn.scalar(text(f"SELECT count(*) FROM {SCHEMA}.gophermart_ledger"))
    assert count == 2


async def test_a_host_transaction_moves_points_in_the_schema(
    postgres_uri: str, shop: AsyncEngine
) -> None:
    async with Gophermart.on_engine(shop, secret=TEST_SECRET, db_schema=SCHEMA) as loyalty:
        alice = await loyalty.register("alice", "pw")
        await loyalty.upload_order(alice.user_id, "9278923470")
        await loyalty.record_accrual("9278923470", 50)
        async with shop.connect() as conn, conn.begin():
            await conn.execute(text("INSERT INTO purchases VALUES (1, 20)"))
            await loyalty.withdraw(alice.user_id, "2377225624", 20, connection=conn)
            path = await conn.scalar(text("SHOW search_path"))
        assert "loyalty" not in path  # the host's connection keeps its own path
        assert (await loyalty.balance(alice.user_id)).current == Points.exact(30)
        assert [w.order for w in await loyalty.withdrawals(alice.user_id)] == ["2377225624"]


async def test_uploads_are_announced_on_the_schemas_own_channel(postgres_uri: str) -> None:
    heard: list[str] = []
    listener = await asyncpg.connect(postgres_uri)
    try:
        for channel in (orders_channel(None), orders_channel(SCHEMA)):
            await listener.add_listener(channel, lambda _c, _p, ch, _m: heard.append(ch))
        async with Gophermart.open(postgres_uri, secret=TEST_SECRET, db_schema=SCHEMA) as loyalty:
            alice = await loyalty.register("alice", "pw")
            await loyalty.upload_order(alice.user_id, "9278923470")
        for _ in range(50):
            if heard:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)  # time for a wrong second notification to arrive
    finally:
        await listener.close()
    assert heard == [f"gophermart_orders_{SCHEMA}"]


async def test_a_borrowed_pool_must_search_the_schema(postgres_uri: str) -> None:
    wrong = await asyncpg.create_pool(postgres_uri, min_size=1, max_size=2)
    right = await asyncpg.create_pool(
        postgres_uri, min_size=1, max_size=2, server_settings={"search_path": SCHEMA}
    )
    try:
        loyalty = Gophermart.on_asyncpg_pool(wrong, secret=TEST_SECRET, db_schema=SCHEMA)
        with pytest.raises(ConfigError, match="search_path") as refused:
            await loyalty.start()
        assert refused.value.setting == "GOPHERMART_DB_SCHEMA"
        async with Gophermart.on_asyncpg_pool(right, secret=TEST_SECRET, db_schema=SCHEMA) as ok:
            await _works(ok)
    finally:
        await wrong.close()
        await right.close()


async def test_a_host_engine_in_another_schema_is_refused_unless_named(
    postgres_uri: str, shop: AsyncEngine
) -> None:
    """The trap the issue found: the host's engine searches ``loyalty``, our own pool
    ``public``; the migrations would go one way and the requests the other."""
    async with shop.begin() as conn:
        await conn.execute(text(f"CREATE SCHEMA {SCHEMA}"))
    host = create_async_engine(
        _sqlalchemy_url(postgres_uri),
        connect_args={"server_settings": {"search_path": SCHEMA}},
    )
    try:
        with pytest.raises(ConfigError, match="db_schema") as refused:
            async with Gophermart.on_engine(host, secret=TEST_SECRET):
                pass
        assert isinstance(refused.value.__context__, StoreMisconfigured)
        async with Gophermart.on_engine(host, secret=TEST_SECRET, db_schema=SCHEMA) as loyalty:
            await _works(loyalty)
    finally:
        await host.dispose()
