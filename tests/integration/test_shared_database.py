"""Gophermart in a shop's own database (SPEC "Embedding": sharing a database): beside
the shop's ``users``, ``orders`` and ``accounts`` and its own Alembic history, opened by
URL or on the shop's engine, it works and touches nothing of the shop's; and a database
an earlier release migrated (tables without our prefix, our history in
``alembic_version``) is adopted in place."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from gophermart import Gophermart, Points
from gophermart.adapters.stores.sql.legacy import LEGACY_REVISIONS, LEGACY_TABLES
from gophermart.adapters.stores.sql.migrate import alembic_config
from gophermart.settings import DatabaseTarget
from gophermart.testing import TEST_SECRET

SHOP_DDL = (
    "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL)",
    "CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users (id))",
    "CREATE TABLE accounts (id INTEGER PRIMARY KEY, iban TEXT)",
    "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)",
    "INSERT INTO users VALUES (1, 'shop@example.com')",
    "INSERT INTO orders VALUES (7, 1)",
    "INSERT INTO accounts VALUES (3, 'DE00')",
    "INSERT INTO alembic_version VALUES ('shop0001')",
)
SHOP_STATE = (
    "SELECT email FROM users",
    "SELECT id, user_id FROM orders",
    "SELECT iban FROM accounts",
    "SELECT version_num FROM alembic_version",
)


def engine_for(database_uri: str) -> AsyncEngine:
    target = DatabaseTarget.parse(database_uri)
    if target.kind == "sqlite":
        return create_async_engine(f"sqlite+aiosqlite:///{target.location}")
    dsn = target.location.split("?")[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return create_async_engine(dsn)


@pytest.fixture
async def shop(database_uri: str) -> AsyncIterator[AsyncEngine]:
    engine = engine_for(database_uri)
    async with engine.begin() as conn:
        for statement in SHOP_DDL:
            await conn.execute(text(statement))
    try:
        yield engine
    finally:
        await engine.dispose()


async def _state(engine: AsyncEngine) -> list[list[tuple[object, ...]]]:
    async with engine.connect() as conn:
        return [[tuple(r) for r in await conn.execute(text(q))] for q in SHOP_STATE]


async def _works(loyalty: Gophermart) -> None:
    alice = await loyalty.register("alice", "pw")
    await loyalty.upload_order(alice.user_id, "9278923470")
    await loyalty.record_accrual("9278923470", 50)
    await loyalty.withdraw(alice.user_id, "2377225624", 20)
    assert (await loyalty.balance(alice.user_id)).current == Points.exact(30)
    assert (await loyalty.schema()).is_current
    assert (await loyalty.reconcile()).ok


@pytest.mark.parametrize("opened", ["url", "engine"])
async def test_beside_a_shops_tables_and_history(
    database_uri: str, shop: AsyncEngine, opened: str
) -> None:
    before = await _state(shop)
    if opened == "url":
        loyalty = Gophermart.open(database_uri, secret=TEST_SECRET)
    else:
        loyalty = Gophermart.on_engine(engine_for(database_uri), secret=TEST_SECRET)
    async with loyalty:
        await _works(loyalty)
    assert await _state(shop) == before  # the shop's rows and its revision, untouched
    async with shop.begin() as conn:  # the shop's own Alembic moves its own history on
        await conn.execute(text("UPDATE alembic_version SET version_num = 'shop0002'"))
        await conn.execute(text("ALTER TABLE users ADD COLUMN name TEXT"))
    async with Gophermart.open(database_uri, secret=TEST_SECRET) as again:
        assert (await again.schema()).is_current


async def _legacy(engine: AsyncEngine) -> None:
    """What an earlier release left: its last revision's schema (later migrations
    undone) without our prefix anywhere (tables, sequences, constraints, indexes), and
    our history in alembic_version."""
    async with engine.begin() as conn:
        await conn.run_sync(
            lambda sync: command.downgrade(alembic_config(sync), max(LEGACY_REVISIONS))
        )
    async with engine.begin() as conn:
        # Those releases ended at revision 0005: back to it first.
        await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0005"))
    async with engine.begin() as conn:
        postgres = conn.dialect.name == "postgresql"
        await conn.execute(text("ALTER TABLE gophermart_alembic_version RENAME TO alembic_version"))
        if postgres:
            for table, name in (await conn.execute(text(_OUR_CONSTRAINTS))).all():
                old = name.replace("gophermart_", "")
                await conn.execute(
                    text(f'ALTER TABLE {table} RENAME CONSTRAINT "{name}" TO "{old}"')
                )
            for (name,) in (await conn.execute(text(_OUR_INDEXES))).all():
                await conn.execute(
                    text(f'ALTER INDEX "{name}" RENAME TO "{name.replace("gophermart_", "")}"')
                )
        else:
            indexes = await conn.execute(text(_SQLITE_INDEXES))
            for name, sql in indexes.all():
                await conn.execute(text(f'DROP INDEX "{name}"'))
                await conn.execute(text(sql.replace("ix_gophermart_", "ix_")))
        for table in LEGACY_TABLES:
            await conn.execute(text(f"ALTER TABLE gophermart_{table} RENAME TO {table}"))
            if postgres and table in ("users", "orders", "ledger"):
                await conn.execute(
                    text(f"ALTER SEQUENCE gophermart_{table}_id_seq RENAME TO {table}_id_seq")
                )


_OUR_CONSTRAINTS = (
    "SELECT conrelid::regclass::text, conname FROM pg_constraint"
    " WHERE conname LIKE '%gophermart%' AND contype <> 'p'"
)
_OUR_INDEXES = (
    "SELECT indexname FROM pg_indexes WHERE indexname LIKE 'ix_gophermart%'"
    " AND schemaname = current_schema()"
)
_SQLITE_INDEXES = (
    "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND name LIKE 'ix_gophermart%'"
)


async def test_a_database_an_earlier_release_migrated_is_adopted(database_uri: str) -> None:
    async with Gophermart.open(database_uri, secret=TEST_SECRET) as old:
        bob = await old.register("bob", "pw")
        await old.upload_order(bob.user_id, "12345678903")
        await old.record_accrual("12345678903", 70)
    engine = engine_for(database_uri)
    try:
        await _legacy(engine)
        async with Gophermart.open(database_uri, secret=TEST_SECRET) as adopted:
            assert (await adopted.balance(bob.user_id)).current == Points.exact(70)
            carol = await adopted.register("carol", "pw")  # the sequences go on
            assert carol.user_id > bob.user_id
            assert (await adopted.schema()).is_current
            assert (await adopted.reconcile()).ok
        async with engine.connect() as conn:
            names = set(await conn.run_sync(lambda c: c.dialect.get_table_names(c)))
        assert "alembic_version" not in names and "users" not in names
    finally:
        await engine.dispose()
