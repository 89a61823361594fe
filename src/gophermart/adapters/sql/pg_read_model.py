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
_ORDERS = (
    "SELECT number, status, accrual, uploaded_at FROM orders"
    " WHERE user_id = $1 ORDER BY uploaded_at DESC, id DESC"
)
_WITHDRAWALS = (
    "SELECT order_number, amount, created_at FROM ledger"
    " WHERE user_id = $1 AND kind = 'withdrawal' ORDER BY created_at DESC, id DESC"
)
_STATUSES = {s.value: s for s in OrderStatus}


class PgReadModel:
    def __init__(self, pool: PgPool) -> None:
        self._pool = pool

    async def balance(self, user_id: UserId) -> BalanceView | None:
        async with self._pool.connection() as conn:
            row: Any = await conn.fetchrow(_BALANCE, user_id)
        return BalanceView(Points(row[0]), Points(row[1])) if row is not None else None

    async def orders(self, user_id: UserId) -> Sequence[OrderView]:
        async with self._pool.connection() as conn:
            rows = await conn.fetch(_ORDERS, user_id)
        return [
            OrderView(
                r[0],
                _STATUSES[r[1]],
                Points(r[2]) if r[2] is not None else None,
                r[3].astimezone(UTC),
            )
            for r in rows
        ]

    async def withdrawals(self, user_id: UserId) -> Sequence[WithdrawalView]:
        async with self._pool.connection() as conn:
            rows = await conn.fetch(_WITHDRAWALS, user_id)
        return [WithdrawalView(r[0], Points(r[1]), r[2].astimezone(UTC)) for r in rows]
