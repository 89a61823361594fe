"""The adapters a host embedding Gophermart opens on its own database objects: its
SQLAlchemy engine (SQLite or PostgreSQL) or its asyncpg pool."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from gophermart.adapters.sql.engine import Database, configure_sqlite
from gophermart.adapters.sql.migrate import migrate
from gophermart.adapters.sql.pg_pool import PgPool
from gophermart.adapters.sql.pg_read_model import PgReadModel
from gophermart.adapters.sql.pg_unit_of_work import PgUnitOfWork
from gophermart.adapters.sql.read_model import SqlReadModel
from gophermart.adapters.sql.unit_of_work import SqlUnitOfWork
from gophermart.adapters.sql.url import parse_database_uri
from gophermart.application.ports import ReadModel, UnitOfWorkFactory
from gophermart.domain.errors import UnknownUser
from gophermart.domain.orders import Order, OrderNumber
from gophermart.domain.users import Login, UserId

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


async def test_a_borrowed_sqlite_engine_is_set_up_used_and_left_open(tmp_path: Path) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'host.db'}")
    try:
        database = Database.from_engine(engine)
        assert database.write is engine and database.read is engine
        assert database.target.kind == "sqlite" and not database.is_postgres
        await migrate(engine)
        await _upload(lambda: SqlUnitOfWork(engine), SqlReadModel(engine))
        async with engine.connect() as conn:
            assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
            assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
        with pytest.raises(UnknownUser):  # the foreign key is enforced
            async with SqlUnitOfWork(engine) as uow:
                await uow.orders.add(Order.upload(OrderNumber("12345678903"), UserId(999), T0))
        await database.dispose()
        async with engine.connect() as conn:  # not disposed: the host's to dispose
            assert (await conn.execute(text("SELECT 1"))).scalar() == 1
    finally:
        await engine.dispose()


async def test_a_borrowed_sqlite_engine_begins_immediate(tmp_path: Path) -> None:
    """Its transactions take SQLite's write lock at BEGIN, as our writes need."""
    path = tmp_path / "host.db"
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    try:
        Database.from_engine(engine)
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


def test_the_sqlite_unit_of_work_refuses_postgresql() -> None:
    with pytest.raises(ValueError, match="PgUnitOfWork"):
        SqlUnitOfWork(create_async_engine("postgresql+asyncpg://"))


def test_a_pg_pool_needs_exactly_one_source() -> None:
    with pytest.raises(ValueError, match="or a pool to borrow"):
        PgPool()
    with pytest.raises(ValueError, match="or a pool to borrow"):
        PgPool("postgresql://x/y", pool=object())  # type: ignore[arg-type]


async def test_a_borrowed_asyncpg_pool_is_used_and_left_open(postgres_uri: str) -> None:
    database = Database(parse_database_uri(postgres_uri))
    try:
        await migrate(database.write)
    finally:
        await database.dispose()
    # The host's pool speaks another time zone: datetimes must still come back UTC.
    host_pool = await asyncpg.create_pool(
        postgres_uri, min_size=1, max_size=2, server_settings={"timezone": "Asia/Tokyo"}
    )
    try:
        pool = PgPool(pool=host_pool)
        assert await pool.get() is host_pool
        await _upload(lambda: PgUnitOfWork(pool), PgReadModel(pool))
        await pool.close()
        assert not host_pool._closed  # the host's to close
        assert await host_pool.fetchval("SELECT 1") == 1
    finally:
        await host_pool.close()


async def test_a_borrowed_postgresql_engine_serves_the_cold_paths(postgres_uri: str) -> None:
    dsn = postgres_uri.split("?")[0].replace("postgresql://", "postgresql+asyncpg://")
    engine = create_async_engine(dsn)
    try:
        database = Database.from_engine(engine)
        assert database.is_postgres and database.write is engine
        await migrate(engine)
        # The rebuilt DSN opens our own asyncpg pool on the same database.
        pool = PgPool(database.target.location)
        try:
            await _upload(lambda: PgUnitOfWork(pool), PgReadModel(pool))
        finally:
            await pool.close()
        await database.dispose()
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM users"))).scalar() == 1
    finally:
        await engine.dispose()
