"""The reconciliation queries (see :mod:`gophermart.application.reconcile`), in Core.

Sums are cast back to BIGINT: PostgreSQL's ``SUM`` of a bigint is a ``numeric``, which
asyncpg hands over as a ``Decimal``; the report reads whole hundredths, as everywhere.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, and_, cast, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gophermart.adapters.stores.sql.schema import IS_OPEN, accounts, holds, ledger, of_kind, orders
from gophermart.adapters.stores.sql.statements import effect
from gophermart.application.reconcile import FIGURES, ReconcileReport, figures_differ
from gophermart.domain.accounts import BALANCE, HELD, WITHDRAWN, EntryKind
from gophermart.domain.points import Points


def _total(column: Any) -> Any:
    return cast(func.coalesce(func.sum(column), 0), BigInteger)


_per_user = (
    select(
        ledger.c.user_id,
        _total(effect(ledger, BALANCE)).label("balance"),
        _total(effect(ledger, WITHDRAWN)).label("withdrawn"),
        _total(effect(ledger, HELD)).label("held"),
        _total(ledger.c.owed_change).label("owed"),
    )
    .group_by(ledger.c.user_id)
    .subquery("per_user")
)
_open_holds = (
    select(holds.c.user_id, _total(holds.c.amount).label("held"))
    .where(IS_OPEN)
    .group_by(holds.c.user_id)
    .subquery("open_holds")
)
_figures = FIGURES
_from_ledger = [cast(func.coalesce(_per_user.c[f], 0), BigInteger) for f in _figures]
_in_holds = cast(func.coalesce(_open_holds.c.held, 0), BigInteger)

#: Accounts whose figures are not what their ledger entries add up to (each figure),
#: or whose held points are not their open holds'.
BALANCES = (
    select(
        accounts.c.user_id,
        *(accounts.c[f] for f in _figures),
        *_from_ledger,
        _in_holds,
    )
    .select_from(
        accounts.outerjoin(_per_user, _per_user.c.user_id == accounts.c.user_id).outerjoin(
            _open_holds, _open_holds.c.user_id == accounts.c.user_id
        )
    )
    .where(
        or_(
            *(accounts.c[f] != total for f, total in zip(_figures, _from_ledger, strict=True)),
            accounts.c.held != _in_holds,
        )
    )
    .order_by(accounts.c.user_id)
)

_reversal = ledger.alias("reversal")
_reversed = (
    select(
        _reversal.c.order_number,
        _total(_reversal.c.amount + _reversal.c.owed_change).label("reversed"),
    )
    .where(
        and_(of_kind(_reversal, EntryKind.ACCRUAL_REVERSAL), _reversal.c.order_number.is_not(None))
    )
    .group_by(_reversal.c.order_number)
    .subquery("reversals")
)
#: Orders whose ``reversed`` is not what their reversal entries took (from the balance
#: and as owed together).
REVERSALS = (
    select(
        orders.c.number, orders.c.reversed, cast(func.coalesce(_reversed.c.reversed, 0), BigInteger)
    )
    .select_from(orders.outerjoin(_reversed, _reversed.c.order_number == orders.c.number))
    .where(orders.c.reversed != func.coalesce(_reversed.c.reversed, 0))
    .order_by(orders.c.number)
)

_refunded = (
    select(ledger.c.order_number, _total(ledger.c.amount).label("refunded"))
    .where(of_kind(ledger, EntryKind.WITHDRAWAL_REFUND))
    .group_by(ledger.c.order_number)
    .subquery("refunded")
)
_spent = ledger.alias("spent")
#: Withdrawals refunded beyond their amount. From the refunds (few), each summed once,
#: to their withdrawal (the withdrawals' unique index): a join from every withdrawal
#: to its refunds was planned as a nested loop over the whole ledger when the table's
#: statistics were still those of a small one (minutes for 200,000 withdrawals).
OVER_REFUNDED = (
    select(_spent.c.order_number, _spent.c.amount, _refunded.c.refunded)
    .select_from(
        _refunded.join(
            _spent,
            and_(
                of_kind(_spent, EntryKind.WITHDRAWAL),
                _spent.c.order_number == _refunded.c.order_number,
            ),
        )
    )
    .where(_refunded.c.refunded > _spent.c.amount)
    .order_by(_spent.c.order_number)
)

_release = ledger.alias("release")
#: Holds whose entries do not say what their state says: one hold entry always, and one
#: release exactly when the hold is closed (captured, released or expired).
HOLD_ENTRIES = select(
    holds.c.id,
    holds.c.state,
    select(func.count())
    .where(and_(of_kind(ledger, EntryKind.HOLD), ledger.c.hold_id == holds.c.id))
    .scalar_subquery(),
    select(func.count())
    .where(and_(of_kind(_release, EntryKind.HOLD_RELEASE), _release.c.hold_id == holds.c.id))
    .scalar_subquery(),
).order_by(holds.c.id)

_processed = orders.c.status == "PROCESSED"
_credit = ledger.alias("credit")
#: PROCESSED orders with points whose credit is missing or differs.
UNCREDITED = (
    select(orders.c.number, orders.c.user_id, orders.c.accrual, _credit.c.user_id, _credit.c.amount)
    .select_from(
        orders.outerjoin(
            _credit,
            and_(
                of_kind(_credit, EntryKind.ACCRUAL),
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
            of_kind(ledger, EntryKind.ACCRUAL),
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


def _pts(cents: int) -> str:
    """Hundredths as points; a negative sum (a corrupt ledger) is shown, not refused."""
    cents = int(cents)
    return f"-{Points(-cents)}" if cents < 0 else str(Points(cents))


def _figures_differ(row: Any) -> str:
    user_id, *figures = row
    return figures_differ(user_id, figures[:4], figures[4:8], figures[8])


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
            for row in await conn.execute(BALANCES):
                problems.append(_figures_differ(row))
            for number, stored, summed in await conn.execute(REVERSALS):
                problems.append(
                    f"order {number}: reversed {_pts(stored)}, its reversals say {_pts(summed)}"
                )
            for number, amount, refunded in await conn.execute(OVER_REFUNDED):
                problems.append(
                    f"withdrawal for order {number}: {_pts(amount)}, refunded {_pts(refunded)}"
                )
            for hold_id, state, taken, released in await conn.execute(HOLD_ENTRIES):
                if taken != 1 or released != (0 if state == "open" else 1):
                    problems.append(
                        f"hold {hold_id} is {state} with {taken} hold and {released} release "
                        "entries"
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
