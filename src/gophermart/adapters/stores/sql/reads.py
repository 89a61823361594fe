"""The read side of both SQL stores: balance and listings straight from the tables, no
domain objects.

The queries and the mapping of their rows are written once (:class:`Reads`), over two
abstract fetches: :class:`SqlReads` runs them through SQLAlchemy (SQLite's read
engine), PostgreSQL's store straight through asyncpg (stores/postgres/reads.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from gophermart.adapters.stores.sql import movements as mv
from gophermart.adapters.stores.sql import statements as st
from gophermart.adapters.stores.sql.runners import Row, SqlRunner
from gophermart.application.ports import (
    BalanceView,
    HistoryView,
    OrderState,
    OrderView,
    UserAccountView,
    WithdrawalView,
)
from gophermart.application.queries import Queries
from gophermart.domain.accounts import Hold
from gophermart.domain.users import UserId

#: How many orders one statement reads: a whole list is read a chunk at a time (by
#: the orders index, each chunk after the last number of the one before), so a user with
#: 300,000 orders never becomes one statement whose rows the event loop maps in one go.
CHUNK = Queries.CHUNK


V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class Listing(Generic[V]):
    """One of a user's listings: its first page, a page after a cursor, how a row
    becomes a view, and the order number a view is a cursor by."""

    first: st.Statement
    after: st.Statement
    view: Callable[[Row], V]
    number: Callable[[V], str]


ORDERS: Listing[OrderView] = Listing(
    st.ORDERS_PAGE, st.ORDERS_PAGE_BEFORE, st.order_view, lambda v: v.number
)
WITHDRAWALS: Listing[WithdrawalView] = Listing(
    st.WITHDRAWALS_PAGE, st.WITHDRAWALS_PAGE_BEFORE, st.withdrawal_view, lambda v: v.order
)


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
        return await self._listing(ORDERS, user_id, limit, before)

    async def withdrawals(
        self, user_id: UserId, limit: int | None = None, before: str | None = None
    ) -> Sequence[WithdrawalView] | None:
        return await self._listing(WITHDRAWALS, user_id, limit, before)

    async def history(
        self, user_id: UserId, limit: int, before: int | None = None
    ) -> Sequence[HistoryView] | None:
        params: dict[str, object] = {"user_id": user_id, "limit": limit}
        if before is None:
            rows = await self._fetch(mv.HISTORY_PAGE, params)
        else:
            rows = await self._fetch(mv.HISTORY_PAGE_BEFORE, {**params, "before": before})
        if not rows:  # not even the account's row: no such user
            return None
        return [mv.history_view(row) for row in rows if st.is_listed(row)]

    async def holds(self, user_id: UserId) -> Sequence[Hold] | None:
        if await self.balance(user_id) is None:
            return None
        return [
            mv.hold_of(row) for row in await self._fetch(mv.OPEN_HOLDS_OF, {"user_id": user_id})
        ]

    async def user_by_login(self, login: str) -> UserAccountView | None:
        row = await self._fetchrow(st.USER_ACCOUNT, {"login": login})
        return st.user_account_view(row) if row is not None else None

    async def order_state(self, number: str) -> OrderState | None:
        row = await self._fetchrow(st.ORDER_STATE, {"number": number})
        return st.order_state(row) if row is not None else None

    async def _listing(
        self, listing: Listing[V], user_id: UserId, limit: int | None, before: str | None
    ) -> list[V] | None:
        if limit is None:  # the whole list: a chunk at a time (CHUNK)
            first = await self._page(listing, user_id, CHUNK, before)
            return await self._whole(listing, first, user_id)
        return await self._page(listing, user_id, limit, before)

    async def _page(
        self, listing: Listing[V], user_id: UserId, limit: int, before: str | None
    ) -> list[V] | None:
        if before is None:
            rows = await self._fetch(listing.first, {"user_id": user_id, "limit": limit})
        else:
            params = {"user_id": user_id, "limit": limit, "before": before}
            rows = await self._fetch(listing.after, params)
        if not rows:  # not even the account's row: no such user
            return None
        return [listing.view(row) for row in rows if st.is_listed(row)]

    async def _whole(
        self, listing: Listing[V], first: list[V] | None, user_id: UserId
    ) -> list[V] | None:
        """``first`` (a chunk) and the chunks after it, each read by its own statement."""
        listed, chunk = first, first
        while listed is not None and chunk is not None and len(chunk) == CHUNK:
            chunk = await self._page(listing, user_id, CHUNK, listing.number(chunk[-1]))
            listed.extend(chunk or ())
        return listed


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
