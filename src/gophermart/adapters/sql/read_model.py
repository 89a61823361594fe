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

    async def orders(self, user_id: UserId) -> Sequence[OrderView] | None:
        # From the account, outer-joined: no row at all is "no such user", one row of
        # NULLs is "no orders" (one round trip either way).
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(orders.c.number, orders.c.status, orders.c.accrual, orders.c.uploaded_at)
                    .select_from(accounts.outerjoin(orders, orders.c.user_id == accounts.c.user_id))
                    .where(accounts.c.user_id == user_id)
                    .order_by(orders.c.uploaded_at.desc(), orders.c.id.desc())
                )
            ).all()
        if not rows:
            return None
        return [
            OrderView(
                r.number,
                OrderStatus(r.status),
                Points(r.accrual) if r.accrual is not None else None,
                r.uploaded_at,
            )
            for r in rows
            if r.number is not None
        ]

    async def withdrawals(self, user_id: UserId) -> Sequence[WithdrawalView] | None:
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(ledger.c.order_number, ledger.c.amount, ledger.c.created_at)
                    .select_from(
                        accounts.outerjoin(
                            ledger,
                            and_(
                                ledger.c.user_id == accounts.c.user_id,
                                ledger.c.kind == EntryKind.WITHDRAWAL.value,
                            ),
                        )
                    )
                    .where(accounts.c.user_id == user_id)
                    .order_by(ledger.c.created_at.desc(), ledger.c.id.desc())
                )
            ).all()
        if not rows:
            return None
        return [
            WithdrawalView(r.order_number, Points(r.amount), r.created_at)
            for r in rows
            if r.order_number is not None
        ]
