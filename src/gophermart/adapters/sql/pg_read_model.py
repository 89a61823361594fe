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

import asyncio
from collections.abc import Sequence
from datetime import UTC
from typing import Any

import asyncpg

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


async def _no_reset(_conn: asyncpg.Connection) -> None:
    """These connections only ever run the three reads above: no session state to reset.
    (asyncpg's default reset is one more round trip per request.)"""


class PgReadModel:
    def __init__(self, dsn: str, min_size: int = 2, max_size: int = 10) -> None:
        self._dsn = dsn
        self._min_size = min_size
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self._dsn,
                        min_size=self._min_size,
                        max_size=self._max_size,
                        reset=_no_reset,
                        max_inactive_connection_lifetime=300,
                    )
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def balance(self, user_id: UserId) -> BalanceView | None:
        pool = await self._get_pool()
        row: Any = await pool.fetchrow(_BALANCE, user_id)
        return BalanceView(Points(row[0]), Points(row[1])) if row is not None else None

    async def orders(self, user_id: UserId) -> Sequence[OrderView]:
        pool = await self._get_pool()
        rows = await pool.fetch(_ORDERS, user_id)
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
        pool = await self._get_pool()
        rows = await pool.fetch(_WITHDRAWALS, user_id)
        return [WithdrawalView(r[0], Points(r[1]), r[2].astimezone(UTC)) for r in rows]
