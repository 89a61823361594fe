"""The read side of both SQL stores: balance and listings straight from the tables, no
domain objects.

The queries and the mapping of their rows are written once (:class:`Reads`), over two
abstract fetches: :class:`SqlReads` runs them through SQLAlchemy (SQLite's read
engine), PostgreSQL's store straight through asyncpg (stores/postgres/reads.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from gophermart.adapters.stores.sql import statements as st
from gophermart.adapters.stores.sql.runners import Row, SqlRunner
from gophermart.application.ports import BalanceView, OrderView, WithdrawalView
from gophermart.domain.users import UserId

#: LIMIT for a page after ``before`` with no ``limit``: every order there is.
NO_LIMIT = 2**62


class Reads(ABC):
    """Each view is one statement on a connection of its own, outside any transaction
    the caller holds."""

    @abstractmethod
    async def _fetch(self, statement: st.Statement, params: st.Params) -> Sequence[Row]: ...

    @abstractmethod
    async def _fetchrow(self, statement: st.Statement, params: st.Params) -> Row | None: ...

    async def balance(self, user_id: UserId) -> BalanceView | None:
        row = await self._fetchrow(st.ACCOUNT, {"user_id": user_id})
        return st.balance_view(row) if row is not None else None

    async def orders(
        self, user_id: UserId, limit: int | None = None, before: str | None = None
    ) -> Sequence[OrderView] | None:
        if before is not None:
            params = {"user_id": user_id, "limit": limit or NO_LIMIT, "before": before}
            rows = await self._fetch(st.ORDERS_PAGE_BEFORE, params)
        elif limit is not None:
            rows = await self._fetch(st.ORDERS_PAGE, {"user_id": user_id, "limit": limit})
        else:
            rows = await self._fetch(st.ORDERS_OF, {"user_id": user_id})
        if not rows:  # not even the account's row: no such user
            return None
        return [st.order_view(row) for row in rows if st.is_listed(row)]

    async def withdrawals(self, user_id: UserId) -> Sequence[WithdrawalView] | None:
        rows = await self._fetch(st.WITHDRAWALS_OF, {"user_id": user_id})
        if not rows:
            return None
        return [st.withdrawal_view(row) for row in rows if st.is_listed(row)]


class SqlReads(Reads):
    """Through SQLAlchemy: SQLite's read engine, whose connections read concurrently."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def _fetch(self, statement: st.Statement, params: st.Params) -> Sequence[Row]:
        async with self._engine.connect() as conn:
            return await SqlRunner(conn).fetch(statement, params)

    async def _fetchrow(self, statement: st.Statement, params: st.Params) -> Row | None:
        async with self._engine.connect() as conn:
            return await SqlRunner(conn).fetchrow(statement, params)
