"""The stores a host embedding Gophermart opens on its own database objects: its
SQLAlchemy engine (SQLite or PostgreSQL) or its asyncpg pool (bootstrap.build's
``engine=`` and ``pool=``, what Gophermart.on_engine and on_asyncpg_pool use)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from gophermart.adapters.stores.postgres.pool import PgPool
from gophermart.adapters.stores.sql.migrate import migrate
from gophermart.adapters.stores.sqlite.engine import configure_sqlite
from gophermart.application.ports import ReadModel, UnitOfWorkFactory
from gophermart.bootstrap import Container, build, settle
from gophermart.domain.errors import UnknownUser
from gophermart.domain.orders import Order, OrderNumber
from gophermart.domain.users import Login, UserId
from gophermart.settings import Settings
from gophermart.testing import TEST_SECRET
from tests.sql_database import database_for

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def _upload(uow: UnitOfWorkFactory, read: ReadModel) -> UserId:
    """Sign up, upload an order, list it: the statements work on the host's object."""
    async with uow() as work:
        user = await work.users.add(Login("host-user"), "h")
        await work.accounts.open(user.id)
        assert await work.orders.add(Order.upload(OrderNumber("79927398713"), user.id, T0))
        await work.commit()
    views = await read.orders(user.id)
    assert [v.number for v in views] == ["79927398713"]
    assert views[0].uploaded_at == T0 and views[0].uploaded_at.utcoffset() == timedelta(0)
    return user.id


async def _opened(uri: str, **borrowed: object) -> Container:
    container = build(Settings.for_database(uri, secret=TEST_SECRET), **borrowed)  # type: ignore[arg-type]
    await settle(container)
    return container


async def _closed(container: Container) -> None:
    shutdown = container.shutdown_resources()
    if shutdown is not None:
        await shutdown


async def test_a_borrowed_sqlite_engine_is_set_up_used_and_left_open(tmp_path: Path) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'host.db'}")
    try:
        container = await _opened(f"sqlite:///{tmp_path / 'host.db'}", engine=engine)
        database = container.store.database()
        assert database.write is engine and database.read is engine
        assert not database.is_postgres
        await _upload(container.store.uow, container.store.read_model())
        async with engine.connect() as conn:
            assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
            assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
        with pytest.raises(UnknownUser):  # the foreign key is enforced
            async with container.store.uow() as uow:
                await uow.orders.add(Order.upload(OrderNumber("12345678903"), UserId(999), T0))
        await _closed(container)
        async with engine.connect() as conn:  # not disposed: the host's to dispose
            assert (await conn.execute(text("SELECT 1"))).scalar() == 1
    finally:
        await engine.dispose()


async def test_a_borrowed_sqlite_engine_begins_immediate(tmp_path: Path) -> None:
    """Its transactions take SQLite's write lock at BEGIN, as our writes need."""
    path = tmp_path / "host.db"
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    try:
        configure_sqlite(engine, immediate=True)  # what borrowing it does
        async with engine.begin() as conn:
            await conn.execute(text("SELECT 1"))  # reads only, yet holds the write lock
            other = sqlite3.connect(path, timeout=0, isolation_level=None)
            try:
                with pytest.raises(sqlite3.OperationalError, match="locked"):
                    other.execute("BEGIN IMMEDIATE")
            finally:
                other.close()
    finally:
        await engine.dispose()


def test_configure_sqlite_is_idempotent_and_refuses_contradictions(tmp_path: Path) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    configure_sqlite(engine, immediate=True)
    configure_sqlite(engine, immediate=True)
    with pytest.raises(ValueError, match="other BEGIN"):
        configure_sqlite(engine, immediate=False)
    with pytest.raises(ValueError, match="not a SQLite engine"):
        configure_sqlite(create_async_engine("postgresql+asyncpg://"), immediate=True)


def test_a_pg_pool_needs_exactly_one_source() -> None:
    with pytest.raises(ValueError, match="or a pool to borrow"):
        PgPool()
    with pytest.raises(ValueError, match="or a pool to borrow"):
        PgPool("postgresql://x/y", pool=object())  # type: ignore[arg-type]


async def test_a_borrowed_asyncpg_pool_is_used_and_left_open(postgres_uri: str) -> None:
    database = database_for(postgres_uri)
    try:
        await migrate(database.write)
    finally:
        await database.dispose()
    # The host's pool speaks another time zone: datetimes must still come back UTC.
    host_pool = await asyncpg.create_pool(
        postgres_uri, min_size=1, max_size=2, server_settings={"timezone": "Asia/Tokyo"}
    )
    try:
        container = await _opened(postgres_uri, pool=host_pool)
        assert await container.store.hot_pool().get() is host_pool
        await _upload(container.store.uow, container.store.read_model())
        await _closed(container)
        assert not host_pool._closed  # the host's to close
        assert await host_pool.fetchval("SELECT 1") == 1
    finally:
        await host_pool.close()


async def test_a_borrowed_postgresql_engine_serves_the_cold_paths(postgres_uri: str) -> None:
    dsn = postgres_uri.split("?")[0].replace("postgresql://", "postgresql+asyncpg://")
    engine = create_async_engine(dsn)
    try:
        # The engine's URL, rebuilt as a DSN, opens our own asyncpg pool on the same
        # database (what Gophermart.on_engine does).
        dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        container = await _opened(dsn, engine=engine)
        assert container.store.database().write is engine
        try:
            await _upload(container.store.uow, container.store.read_model())
        finally:
            await _closed(container)
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM gophermart_users"))).scalar() == 1
    finally:
        await engine.dispose()
