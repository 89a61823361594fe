"""The statements of the ledger's movements beyond the seed's two (holds, reversals,
refunds, adjustments) and of the history, shared by SQLite and PostgreSQL like
``statements.py``'s, with the mappings of their rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    String,
    and_,
    bindparam,
    cast,
    func,
    insert,
    select,
    true,
    update,
)

from gophermart.adapters.stores.sql.schema import (
    IS_OPEN,
    accounts,
    holds,
    ledger,
    of_kind,
    orders,
)
from gophermart.adapters.stores.sql.statements import (
    ACCOUNT_FIGURES,
    Statement,
    effect,
)
from gophermart.adapters.stores.sql.types import UtcDateTime
from gophermart.application.ports import HistoryView
from gophermart.domain.accounts import BALANCE, EntryKind, Hold, HoldState
from gophermart.domain.orders import OrderNumber
from gophermart.domain.points import Points
from gophermart.domain.users import UserId

_user_id = bindparam("user_id", type_=BigInteger)
_number = bindparam("order_number", type_=String)

#: The account's figures, its row locked until the transaction ends (PostgreSQL; SQLite
#: has no row locks and needs none: its writers take the whole database in turn).
ACCOUNT_LOCKED = Statement(
    select(*ACCOUNT_FIGURES).where(accounts.c.user_id == _user_id).with_for_update()
)

# --- orders: reversals ---------------------------------------------------------------

_amount = bindparam("amount", type_=BigInteger)
#: Count ``amount`` more as reversed, if the order is PROCESSED and every reversal of it
#: stays within its accrual (the schema's CHECK says so too); back: what is left of it.
REVERSE = Statement(
    update(orders)
    .where(
        and_(
            orders.c.number == _number,
            orders.c.status == "PROCESSED",
            orders.c.reversed + _amount <= orders.c.accrual,
        )
    )
    .values(reversed=orders.c.reversed + _amount)
    .returning(orders.c.accrual - orders.c.reversed)
)
REVERSED = Statement(select(orders.c.reversed).where(orders.c.number == _number))

#: What refunds gave back of an order's withdrawal so far.
REFUNDED = Statement(
    select(cast(func.coalesce(func.sum(ledger.c.amount), 0), BigInteger)).where(
        and_(of_kind(ledger, EntryKind.WITHDRAWAL_REFUND), ledger.c.order_number == _number)
    )
)

# --- holds ---------------------------------------------------------------------------

HOLD_COLUMNS = (
    holds.c.id,
    holds.c.user_id,
    holds.c.order_number,
    holds.c.amount,
    holds.c.state,
    holds.c.created_at,
    holds.c.expires_at,
    holds.c.closed_at,
)
ADD_HOLD = Statement(
    insert(holds)
    .values(
        user_id=_user_id,
        order_number=_number,
        amount=_amount,
        state="open",
        created_at=bindparam("at", type_=UtcDateTime),
        expires_at=bindparam("until", type_=UtcDateTime),
    )
    .returning(holds.c.id)
)
HOLD = Statement(select(*HOLD_COLUMNS).where(holds.c.id == bindparam("hold_id", type_=BigInteger)))
OPEN_HOLD = Statement(select(*HOLD_COLUMNS).where(and_(holds.c.order_number == _number, IS_OPEN)))
#: An open hold moves to its final state once: a second writer finds it closed.
CLOSE_HOLD = Statement(
    update(holds)
    .where(and_(holds.c.id == bindparam("hold_id", type_=BigInteger), IS_OPEN))
    .values(state=bindparam("state", type_=String), closed_at=bindparam("at", type_=UtcDateTime))
)
DUE_HOLDS = Statement(
    select(*HOLD_COLUMNS)
    .where(and_(IS_OPEN, holds.c.expires_at <= bindparam("now", type_=UtcDateTime)))
    .order_by(holds.c.expires_at, holds.c.id)
    .limit(bindparam("limit", type_=BigInteger))
)
#: A user's open holds, oldest first (the operator's view of an account).
OPEN_HOLDS_OF = Statement(
    select(*HOLD_COLUMNS).where(and_(holds.c.user_id == _user_id, IS_OPEN)).order_by(holds.c.id)
)


def hold_params(hold_id: int, state: HoldState | None = None, at: Any = None) -> dict[str, Any]:
    return {"hold_id": hold_id, "state": state.value if state else None, "at": at}


def hold_of(row: Sequence[Any]) -> Hold:
    hold_id, user_id, number, amount, state, created_at, expires_at, closed_at = row
    return Hold(
        hold_id,
        UserId(user_id),
        OrderNumber(number),
        Points(amount),
        HoldState(state),
        created_at,
        expires_at,
        closed_at,
    )


# --- the history ---------------------------------------------------------------------

_change = effect(ledger, BALANCE)
#: Everything newer than the cursor entry (``before``): what its page's balance_after
#: is counted back from. Nothing without a cursor.
_newer = (
    select(cast(func.coalesce(func.sum(_change), 0), BigInteger))
    .where(and_(ledger.c.user_id == _user_id, ledger.c.id >= bindparam("before", type_=BigInteger)))
    .scalar_subquery()
)


def _history(*, after_cursor: bool) -> Any:
    """A page of a user's entries, newest first, each with the balance after it: the
    account's balance less what every newer entry changed (a running sum over the
    page, and over the entries before the cursor). Derived, not stored: the ledger is
    the one record, and a user's entries are numbered in the order their account row
    was locked, so an entry's balance_after never changes once written."""
    mine = ledger.c.user_id == _user_id
    if after_cursor:
        mine = and_(mine, ledger.c.id < bindparam("before", type_=BigInteger))
    page = (
        select(
            ledger.c.id,
            ledger.c.kind,
            ledger.c.order_number,
            ledger.c.amount,
            _change.label("change"),
            ledger.c.owed_change,
            ledger.c.reason,
            ledger.c.operator,
            ledger.c.hold_id,
            ledger.c.created_at,
        )
        .where(mine)
        .order_by(ledger.c.id.desc())
        .limit(bindparam("limit", type_=BigInteger))
        .subquery("page")
    )
    newer_in_page = func.coalesce(
        func.sum(page.c.change).over(order_by=page.c.id.desc(), rows=(None, -1)), 0
    )
    newer = _newer if after_cursor else 0
    balance_after = accounts.c.balance - newer - newer_in_page
    return (
        select(
            page.c.id,
            page.c.kind,
            page.c.order_number,
            page.c.change,
            cast(balance_after, BigInteger).label("balance_after"),
            page.c.owed_change,
            page.c.reason,
            page.c.operator,
            page.c.hold_id,
            page.c.created_at,
        )
        .select_from(accounts.outerjoin(page, true()))
        .where(accounts.c.user_id == _user_id)
        .order_by(page.c.id.desc())
    )


HISTORY_PAGE = Statement(_history(after_cursor=False))
HISTORY_PAGE_BEFORE = Statement(_history(after_cursor=True))


def history_view(row: Sequence[Any]) -> HistoryView:
    """From a HISTORY_PAGE row (its ``is_listed`` first: an account's row of NULLs)."""
    entry_id, kind, number, change, balance_after, owed_change, reason, operator, hold, at = row
    return HistoryView(
        str(entry_id),
        EntryKind(kind),
        number,
        int(change),
        Points(int(balance_after)),
        int(owed_change),
        reason,
        operator,
        hold,
        at,
    )
