"""The read side on PostgreSQL, straight through asyncpg: the hot path of the API.

Balance and listings are single-statement reads, so they need no transaction: each
is one round trip on a pooled connection, with the statement prepared once per
connection (asyncpg's statement cache). Going through SQLAlchemy here cost a BEGIN and
a ROLLBACK round trip per request plus the Core execution machinery, about 40 % of a
request's time in profiles (docs/performance.md). The statements and the mapping of
their rows are :class:`~gophermart.adapters.stores.sql.reads.Reads`', shared with SQLite.

The two hot reads, the balance and the whole list of orders, are *coalesced*
(coalesce.py): the requests of one event-loop turn share one statement
(``WHERE user_id = ANY($1)``), whose rows are then handed out per user. Pages of
orders and the withdrawals run alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gophermart.adapters.stores.postgres import statements as pg
from gophermart.adapters.stores.postgres.coalesce import Coalescer
from gophermart.adapters.stores.postgres.pool import PgPool
from gophermart.adapters.stores.postgres.runner import PgRunner
from gophermart.adapters.stores.sql import statements as st
from gophermart.adapters.stores.sql.reads import CHUNK, ORDERS, Reads
from gophermart.adapters.stores.sql.runners import Row
from gophermart.application.ports import BalanceView, OrderView
from gophermart.domain.users import UserId


class PgReads(Reads):
    def __init__(self, pool: PgPool, *, coalesce: bool = True) -> None:
        self._pool = pool
        self._coalesce = coalesce
        self._balances = Coalescer(self._balances_of)
        self._orders = Coalescer(self._orders_of)

    # On a connection of our own rather than pool.fetch(): a read cut short by its
    # deadline must close its connection, not hand it back (pg_pool.must_abandon).

    async def _fetch(self, statement: st.Statement, params: st.Params) -> Sequence[Row]:
        async with self._pool.connection() as conn:
            return await PgRunner(conn).fetch(statement, params)

    async def _fetchrow(self, statement: st.Statement, params: st.Params) -> Row | None:
        async with self._pool.connection() as conn:
            return await PgRunner(conn).fetchrow(statement, params)

    async def balance(self, user_id: UserId) -> BalanceView | None:
        if not self._coalesce:
            return await super().balance(user_id)
        return await self._balances.get(user_id)

    async def orders(
        self, user_id: UserId, limit: int | None = None, before: str | None = None
    ) -> Sequence[OrderView] | None:
        """A first chunk (of the whole list, or a page no longer than it) is coalesced;
        what follows it, and later pages, are read as :class:`Reads` reads them."""
        if not self._coalesce or before is not None or (limit or 0) > CHUNK:
            return await super().orders(user_id, limit, before)
        first = await self._orders.get(user_id)
        if limit is not None:
            return first[:limit] if first is not None else None
        return await self._whole(ORDERS, list(first) if first is not None else None, user_id)

    async def _balances_of(self, user_ids: Sequence[UserId]) -> Mapping[UserId, BalanceView]:
        rows = await self._fetch(pg.ACCOUNTS_OF, {"user_ids": user_ids})
        return {row[0]: st.balance_view(row[1:]) for row in rows}

    async def _orders_of(self, user_ids: Sequence[UserId]) -> Mapping[UserId, list[OrderView]]:
        """Users without an account are absent (``None``: no such user); an account
        with no orders has its one row of NULLs, so an empty list."""
        rows = await self._fetch(pg.ORDERS_OF_USERS, {"user_ids": user_ids})
        found: dict[UserId, list[OrderView]] = {}
        for row in rows:
            listed = found.setdefault(row[0], [])
            order = row[1:]
            if st.is_listed(order):
                listed.append(st.order_view(order))
        return found
