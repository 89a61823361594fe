"""The read side: balance and listings straight from the tables, no domain objects."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gophermart.adapters.sql.schema import accounts, ledger, orders
from gophermart.application.ports import BalanceView, OrderView, WithdrawalView
from gophermart.domain.accounts import EntryKind
from gophermart.domain.orders import OrderStatus
from gophermart.domain.points import Points
from gophermart.domain.users import UserId


class SqlReadModel:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def balance(self, user_id: UserId) -> BalanceView | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(accounts.c.balance, accounts.c.withdrawn).where(
                        accounts.c.user_id == user_id
                    )
                )
            ).first()
        return BalanceView(Points(row.balance), Points(row.withdrawn)) if row else None

    async def orders(self, user_id: UserId) -> Sequence[OrderView]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(orders.c.number, orders.c.status, orders.c.accrual, orders.c.uploaded_at)
                .where(orders.c.user_id == user_id)
                .order_by(orders.c.uploaded_at.desc(), orders.c.id.desc())
            )
            return [
                OrderView(
                    r.number,
                    OrderStatus(r.status),
                    Points(r.accrual) if r.accrual is not None else None,
                    r.uploaded_at,
                )
                for r in rows
            ]

    async def withdrawals(self, user_id: UserId) -> Sequence[WithdrawalView]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(ledger.c.order_number, ledger.c.amount, ledger.c.created_at)
                .where(
                    and_(ledger.c.user_id == user_id, ledger.c.kind == EntryKind.WITHDRAWAL.value)
                )
                .order_by(ledger.c.created_at.desc(), ledger.c.id.desc())
            )
            return [WithdrawalView(r.order_number, Points(r.amount), r.created_at) for r in rows]
