"""The read side on PostgreSQL, straight through asyncpg: the hot path of the API.

Balance and listings are single-statement reads, so they need no transaction: each
is one round trip on a pooled connection, with the statement prepared once per
connection (asyncpg's statement cache). Going through SQLAlchemy here cost a BEGIN and
a ROLLBACK round trip per request plus the Core execution machinery, about 40 % of a
request's time in profiles (docs/performance.md). The SQL is the same as
:class:`~gophermart.adapters.sql.read_model.SqlReadModel`'s, which SQLite keeps using;
the repository contract tests run both.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from typing import Any

from gophermart.adapters.sql.pg_pool import PgPool
from gophermart.application.ports import BalanceView, OrderView, WithdrawalView
from gophermart.domain.orders import OrderStatus
from gophermart.domain.points import Points
from gophermart.domain.users import UserId

_BALANCE = "SELECT balance, withdrawn FROM accounts WHERE user_id = $1"
# From the account, outer-joined: no row is "no such user", one row of NULLs "no rows".
_ORDERS = (
    "SELECT o.number, o.status, o.accrual, o.uploaded_at"
    " FROM accounts a LEFT JOIN orders o ON o.user_id = a.user_id"
    " WHERE a.user_id = $1 ORDER BY o.uploaded_at DESC, o.id DESC"
)
_WITHDRAWALS = (
    "SELECT l.order_number, l.amount, l.created_at"
    " FROM accounts a LEFT JOIN ledger l ON l.user_id = a.user_id AND l.kind = 'withdrawal'"
    " WHERE a.user_id = $1 ORDER BY l.created_at DESC, l.id DESC"
)
_STATUSES = {s.value: s for s in OrderStatus}


class PgReadModel:
    def __init__(self, pool: PgPool) -> None:
        self._pool = pool

    async def balance(self, user_id: UserId) -> BalanceView | None:
        pool = await self._pool.get()
        row: Any = await pool.fetchrow(_BALANCE, user_id)
        return BalanceView(Points(row[0]), Points(row[1])) if row is not None else None

    async def orders(self, user_id: UserId) -> Sequence[OrderView] | None:
        pool = await self._pool.get()
        rows = await pool.fetch(_ORDERS, user_id)
        if not rows:
            return None
        return [
            OrderView(
                r[0],
                _STATUSES[r[1]],
                Points(r[2]) if r[2] is not None else None,
                r[3].astimezone(UTC),
            )
            for r in rows
            if r[0] is not None
        ]

    async def withdrawals(self, user_id: UserId) -> Sequence[WithdrawalView] | None:
        pool = await self._pool.get()
        rows = await pool.fetch(_WITHDRAWALS, user_id)
        if not rows:
            return None
        return [
            WithdrawalView(r[0], Points(r[1]), r[2].astimezone(UTC))
            for r in rows
            if r[0] is not None
        ]
