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
from gophermart.application.queries import Queries
from gophermart.domain.users import UserId

#: How many orders one statement reads: a whole list is read a chunk at a time (by
#: the orders index, each chunk after the last number of the one before), so a user with
#: 300,000 orders never becomes one statement whose rows the event loop maps in one go.
CHUNK = Queries.CHUNK


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
        if limit is None:  # the whole list: a chunk at a time (CHUNK)
            return await self._whole(await self._page(user_id, CHUNK, before), user_id)
        return await self._page(user_id, limit, before)

    async def _page(
        self, user_id: UserId, limit: int, before: str | None
    ) -> list[OrderView] | None:
        if before is None:
            rows = await self._fetch(st.ORDERS_PAGE, {"user_id": user_id, "limit": limit})
        else:
            params = {"user_id": user_id, "limit": limit, "before": before}
            rows = await self._fetch(st.ORDERS_PAGE_BEFORE, params)
        if not rows:  # not even the account's row: no such user
            return None
        return [st.order_view(row) for row in rows if st.is_listed(row)]

    async def _whole(
        self, first: list[OrderView] | None, user_id: UserId
    ) -> list[OrderView] | None:
        """``first`` (a chunk) and the chunks after it, each read by its own statement."""
        listed, chunk = first, first
        while listed is not None and chunk is not None and len(chunk) == CHUNK:
            chunk = await self._page(user_id, CHUNK, chunk[-1].number)
            listed.extend(chunk or ())
        return listed

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
