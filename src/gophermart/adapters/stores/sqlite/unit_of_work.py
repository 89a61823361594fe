"""The unit of work on SQLite: the shared repositories (stores/sql/session.py) through
SQLAlchemy Core, on one connection of the write engine.

The transaction begins when the unit of work opens: the write engine's ``BEGIN
IMMEDIATE`` (engine.py) takes SQLite's write lock up front, so writers queue instead of
failing on a lock upgrade. A ledger entry is written as the entry, then the conditional
balance update; the update refusing leaves the entry in a unit of work that can no
longer commit, so neither is ever written alone.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gophermart.adapters.stores.sql import statements as st
from gophermart.adapters.stores.sql.runners import Runner, SqlRunner
from gophermart.adapters.stores.sql.session import HostUnitOfWork, Session, SessionUnitOfWork
from gophermart.application.ports import HostConnection, UnitOfWork
from gophermart.domain.accounts import LedgerEntry

ADD_ORDER = st.Statement(st.add_order(sqlite.insert))


async def record_entry(runner: Runner, entry: LedgerEntry) -> bool:
    """SQLite's shape of a ledger entry: the entry, then the figures' change."""
    params = st.entry_params(entry)
    # The entry first: a second accrual or withdrawal of an order fails before any
    # figure moves.
    await runner.execute(st.RECORD_ENTRY, params)
    return await runner.execute(st.change_of(entry), params) == 1


def within(conn: HostConnection) -> UnitOfWork:
    """A unit of work in a host's own SQLite transaction (``connection=``)."""
    return cast(UnitOfWork, HostUnitOfWork(conn, "sqlite", record_entry, ADD_ORDER))


class SqliteSession(Session):
    records_in_one_statement = False
    add_order = ADD_ORDER

    def __init__(self, conn: AsyncConnection) -> None:
        super().__init__(SqlRunner(conn))
        self._conn = conn

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction()

    async def _begin(self) -> None:
        await self._conn.begin()

    async def _commit(self) -> None:
        await self._conn.commit()

    async def _record(self, entry: LedgerEntry) -> bool:
        return await record_entry(self._runner, entry)


class SqliteUnitOfWork(SessionUnitOfWork):
    """One SQLite transaction on one connection; rolls back unless committed."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def _open(self) -> Session:
        self._conn = await self._engine.connect()
        try:
            await self._conn.begin()
        except BaseException:
            await self._conn.close()
            raise
        return SqliteSession(self._conn)

    async def _close(self) -> None:
        try:
            if self._conn.in_transaction():
                await self._conn.rollback()
        finally:
            await self._conn.close()
