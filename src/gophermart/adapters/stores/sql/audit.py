"""The reconciliation queries (see :mod:`gophermart.application.reconcile`), in Core.

Sums are cast back to BIGINT: PostgreSQL's ``SUM`` of a bigint is a ``numeric``, which
asyncpg hands over as a ``Decimal``; the report reads whole hundredths, as everywhere.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, and_, case, cast, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gophermart.adapters.stores.sql.schema import accounts, ledger, orders
from gophermart.application.reconcile import ReconcileReport
from gophermart.domain.accounts import EntryKind
from gophermart.domain.points import Points


def _sum_of(kind: EntryKind) -> Any:
    amount = case((ledger.c.kind == kind.value, ledger.c.amount), else_=0)
    return cast(func.coalesce(func.sum(amount), 0), BigInteger)


_per_user = (
    select(
        ledger.c.user_id,
        _sum_of(EntryKind.ACCRUAL).label("credits"),
        _sum_of(EntryKind.WITHDRAWAL).label("debits"),
    )
    .group_by(ledger.c.user_id)
    .subquery("per_user")
)
_credits = cast(func.coalesce(_per_user.c.credits, 0), BigInteger)
_debits = cast(func.coalesce(_per_user.c.debits, 0), BigInteger)

#: Accounts whose figures are not what their ledger entries add up to.
BALANCES = (
    select(accounts.c.user_id, accounts.c.balance, accounts.c.withdrawn, _credits, _debits)
    .select_from(accounts.outerjoin(_per_user, _per_user.c.user_id == accounts.c.user_id))
    .where(or_(accounts.c.balance != _credits - _debits, accounts.c.withdrawn != _debits))
    .order_by(accounts.c.user_id)
)

_processed = orders.c.status == "PROCESSED"
_credit = ledger.alias("credit")
#: PROCESSED orders with points whose credit is missing or differs.
UNCREDITED = (
    select(orders.c.number, orders.c.user_id, orders.c.accrual, _credit.c.user_id, _credit.c.amount)
    .select_from(
        orders.outerjoin(
            _credit,
            and_(
                _credit.c.kind == EntryKind.ACCRUAL.value,
                _credit.c.order_number == orders.c.number,
            ),
        )
    )
    .where(
        and_(
            _processed,
            orders.c.accrual.is_not(None),
            or_(
                _credit.c.id.is_(None),
                _credit.c.amount != orders.c.accrual,
                _credit.c.user_id != orders.c.user_id,
            ),
        )
    )
    .order_by(orders.c.number)
)

#: Credits without a PROCESSED order behind them.
ORPHAN_CREDITS = (
    select(ledger.c.order_number, ledger.c.user_id)
    .select_from(ledger.outerjoin(orders, orders.c.number == ledger.c.order_number))
    .where(
        and_(
            ledger.c.kind == EntryKind.ACCRUAL.value,
            or_(orders.c.id.is_(None), orders.c.status != "PROCESSED"),
        )
    )
    .order_by(ledger.c.order_number)
)

COUNTS = select(
    select(func.count()).select_from(accounts).scalar_subquery(),
    select(func.count())
    .select_from(orders)
    .where(orders.c.status == "PROCESSED")
    .scalar_subquery(),
    select(func.count()).select_from(ledger).scalar_subquery(),
)


def _pts(cents: int) -> Points:
    return Points(int(cents))


class SqlLedgerAudit:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def reconcile(self) -> ReconcileReport:
        # One REPEATABLE READ snapshot on PostgreSQL so a live service cannot make the
        # checks disagree with each other mid-way; SQLite's read transaction is one anyway.
        engine = self._engine
        if engine.dialect.name == "postgresql":
            engine = engine.execution_options(isolation_level="REPEATABLE READ")
        problems: list[str] = []
        async with engine.connect() as conn:
            counts = (await conn.execute(COUNTS)).one()
            for user_id, balance, withdrawn, credits, debits in await conn.execute(BALANCES):
                problems.append(
                    f"user {user_id}: balance {_pts(balance)} withdrawn {_pts(withdrawn)}, "
                    f"but the ledger says credits {_pts(credits)} - debits {_pts(debits)}"
                )
            for number, owner, accrual, credited_user, credited in await conn.execute(UNCREDITED):
                if credited is None:
                    problems.append(f"order {number}: PROCESSED with points but never credited")
                else:
                    problems.append(
                        f"order {number}: accrual {_pts(accrual)} for user {owner}, "
                        f"credit {_pts(credited)} to user {credited_user}"
                    )
            for number, owner in await conn.execute(ORPHAN_CREDITS):
                problems.append(f"credit for order {number} (user {owner}) has no PROCESSED order")
        return ReconcileReport(int(counts[0]), int(counts[1]), int(counts[2]), problems)
