"""Every statement that SQLite and PostgreSQL share, written once as SQLAlchemy Core, and
the mapping of their rows back to domain objects and views, also once.

A :class:`Statement` is a Core construct plus the names of the values it needs. The
SQLite store runs it through SQLAlchemy (``conn.execute(statement.core, ...)``), which
applies the column types; the PostgreSQL store runs the very same construct as
compiled once for asyncpg (``stores/postgres/runner.py``). What only PostgreSQL can say
(data-modifying CTEs, arrays, the batches of the coalesced reads and the group commit)
is written once too, in ``stores/postgres/statements.py``, from the pieces here.

A bind parameter outside the VALUES or SET of an INSERT or UPDATE is never named like
a column of that table: SQLAlchemy would take the key for one more column to write
(it refuses to compile instead).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Dialect,
    Insert,
    Integer,
    Select,
    String,
    Table,
    Update,
    and_,
    bindparam,
    case,
    exists,
    insert,
    literal,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import visitors
from sqlalchemy.sql.elements import BindParameter

from gophermart.adapters.stores.sql.schema import (
    IS_OPEN,
    accounts,
    alembic_versions,
    holds,
    ledger,
    of_kind,
    orders,
    users,
)
from gophermart.adapters.stores.sql.types import Id, UtcDateTime
from gophermart.application.ports import (
    BalanceView,
    ClaimedOrder,
    OrderState,
    OrderView,
    UserAccountView,
    WithdrawalView,
)
from gophermart.domain.accounts import EFFECTS, Account, EntryKind, LedgerEntry
from gophermart.domain.orders import Order, OrderNumber, OrderStatus
from gophermart.domain.points import Points
from gophermart.domain.users import UserId

Params = Mapping[str, Any]
#: What a Statement holds: Core constructs that are both executable and compilable.
Core = Select[Any] | Insert | Update


class Statement:
    """One statement: its Core construct and the names it needs a value for."""

    __slots__ = ("binds", "core")

    def __init__(self, core: Core) -> None:
        self.core = core
        self.binds = frozenset(
            e.key for e in visitors.iterate(core) if isinstance(e, BindParameter) and e.required
        )

    def params(self, values: Params) -> dict[str, Any]:
        """Exactly this statement's parameters out of ``values``: SQLAlchemy reads any
        further key naming a column of an UPDATE's table as one more column to SET."""
        return {name: values[name] for name in self.binds}


def insert_if_absent(dialect: Dialect, table: Table, **values: Any) -> Insert:
    """``INSERT ... ON CONFLICT DO NOTHING`` in the engine's dialect (both know it)."""
    insert_ = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
    return insert_(table).values(**values).on_conflict_do_nothing()


# --- users ------------------------------------------------------------------------

ADD_USER = Statement(
    insert(users)
    .values(
        login=bindparam("login"),
        password_hash=bindparam("password_hash"),
        created_at=bindparam("created_at"),
    )
    .returning(users.c.id)
)

USER_BY_LOGIN = Statement(
    select(users.c.id, users.c.password_hash).where(users.c.login == bindparam("login"))
)

# --- orders -----------------------------------------------------------------------


def add_order(insert_: Callable[[Table], Any]) -> Any:
    """A new order, due for polling at once; no row back if the number exists."""
    return (
        insert_(orders)
        .values(
            number=bindparam("number"),
            user_id=bindparam("user_id"),
            status=bindparam("status"),
            uploaded_at=bindparam("uploaded_at"),
            next_attempt_at=bindparam("uploaded_at"),
        )
        .on_conflict_do_nothing(index_elements=[orders.c.number])
        .returning(orders.c.id)
    )


ORDER_BY_NUMBER = Statement(
    select(orders.c.user_id, orders.c.status, orders.c.uploaded_at, orders.c.accrual).where(
        orders.c.number == bindparam("number")
    )
)

SAVE_ORDER = Statement(
    update(orders)
    .where(
        and_(
            orders.c.number == bindparam("order_number"),
            orders.c.status == bindparam("from_status"),
        )
    )
    .values(
        status=bindparam("status"),
        accrual=bindparam("accrual"),
        next_attempt_at=bindparam("next_attempt_at"),
        open_claims=0,
        parked=None,
    )
)

_due = (
    select(orders.c.id)
    .where(orders.c.next_attempt_at <= bindparam("now"))
    .order_by(orders.c.next_attempt_at)
    .limit(bindparam("limit", type_=Integer))
    .with_for_update(skip_locked=True)  # PostgreSQL; SQLite's writers are serial anyway
    .scalar_subquery()
)

CLAIM_DUE = Statement(
    update(orders)
    .where(orders.c.id.in_(_due))
    .values(
        next_attempt_at=bindparam("lease_until"),
        attempts=orders.c.attempts + 1,
        open_claims=orders.c.open_claims + 1,
    )
    .returning(orders.c.number, orders.c.status, orders.c.attempts, orders.c.open_claims)
)

RESCHEDULE = Statement(
    update(orders)
    .where(
        and_(orders.c.number == bindparam("order_number"), orders.c.next_attempt_at.is_not(None))
    )
    .values(next_attempt_at=bindparam("at"), open_claims=0, parked=bindparam("parked"))
)

#: An operator's retry: due at once, no longer parked; not an order a worker holds (its
#: poll's outcome decides), nor a final one.
RETRY = Statement(
    update(orders)
    .where(
        and_(
            orders.c.number == bindparam("order_number"),
            orders.c.next_attempt_at.is_not(None),
            orders.c.open_claims == 0,
        )
    )
    .values(next_attempt_at=bindparam("at"), parked=None)
)

# --- accounts and the ledger --------------------------------------------------------

OPEN_ACCOUNT = Statement(insert(accounts).values(user_id=bindparam("user_id")))

#: An account's figures (account_of, balance_view), and a withdrawal as the ledger
#: holds it (withdrawal_of).
ACCOUNT_FIGURES = (accounts.c.balance, accounts.c.withdrawn, accounts.c.held, accounts.c.owed)
WITHDRAWAL_ENTRY = (ledger.c.user_id, ledger.c.amount, ledger.c.created_at)
IS_WITHDRAWAL = of_kind(ledger, EntryKind.WITHDRAWAL)


def effect(table: Any, figure: int) -> ColumnElement[int]:
    """What an entry row of ``table`` (the ledger or an alias) does to ``figure``
    (``BALANCE``, ``WITHDRAWN`` or ``HELD``), signed, from ``EFFECTS``: the one
    definition of every movement."""
    whens = [
        (of_kind(table, kind), table.c.amount if sign > 0 else -table.c.amount)
        for kind, effects in EFFECTS.items()
        if (sign := effects[figure])
    ]
    return case(*whens, else_=literal(0, BigInteger))


ACCOUNT = Statement(select(*ACCOUNT_FIGURES).where(accounts.c.user_id == bindparam("user_id")))

WITHDRAWAL = Statement(
    select(*WITHDRAWAL_ENTRY).where(
        and_(IS_WITHDRAWAL, ledger.c.order_number == bindparam("order_number"))
    )
)

_me = select(bindparam("user_id", type_=Id).label("user_id")).subquery("me")

#: Whether an open hold reserves points for the order (a withdrawal of it is refused):
#: a probe of the holds' unique index on open orders.
OPEN_HOLD = (
    exists().where(and_(holds.c.order_number == bindparam("order_number"), IS_OPEN)).label("held")
)

#: One row always: the account's figures (NULL without an account), then the withdrawal
#: already recorded for the order number, by anyone (NULL when there is none), then
#: whether the order has an open hold.
FOR_WITHDRAWAL = Statement(
    select(*ACCOUNT_FIGURES, *WITHDRAWAL_ENTRY, OPEN_HOLD).select_from(
        _me.outerjoin(accounts, accounts.c.user_id == _me.c.user_id).outerjoin(
            ledger, and_(IS_WITHDRAWAL, ledger.c.order_number == bindparam("order_number"))
        )
    )
)

# A ledger entry's parameters (entry_params); typed, because in PostgreSQL's CTE shape
# some stand alone in a SELECT list, where nothing else tells PostgreSQL their type.
_user = bindparam("user", type_=BigInteger)
_amount = bindparam("amount", type_=BigInteger)
ENTRY_VALUES = {
    "kind": bindparam("kind", type_=String),
    "order_number": bindparam("order_number", type_=String),
    "amount": _amount,
    "created_at": bindparam("at", type_=UtcDateTime),
    "owed_change": bindparam("owed_change", type_=BigInteger),
    "reason": bindparam("reason", type_=String),
    "operator": bindparam("operator", type_=String),
    "hold_id": bindparam("hold_id", type_=BigInteger),
}


def covers(balance: ColumnElement[int], amount: ColumnElement[int]) -> ColumnElement[bool]:
    """The debit rule (``Account.withdraw``'s), as each store's SQL states it: a debit
    is written only if the balance it is decided on covers it. With ``CHECK (balance >=
    0)`` in the schema, the database refuses an overdraft however a write is raced."""
    return balance >= amount


#: A credit: the account moves up by the entry's amount (one row, or none: no account).
CREDIT_CHANGE = (
    update(accounts).where(accounts.c.user_id == _user).values(balance=accounts.c.balance + _amount)
)

# SQLite's shape: the entry, then the balance change, which moves one row or none.
RECORD_ENTRY = Statement(insert(ledger).values(user_id=_user, **ENTRY_VALUES))
DEBIT = Statement(
    update(accounts)
    .where(and_(accounts.c.user_id == _user, covers(accounts.c.balance, _amount)))
    .values(balance=accounts.c.balance - _amount, withdrawn=accounts.c.withdrawn + _amount)
)
CREDIT = Statement(CREDIT_CHANGE)

#: Any entry's change of the figures (the movements beyond accruals and withdrawals,
#: each with its own deltas: LedgerEntry.change and its siblings); one row or none (no
#: account, or a change the balance does not cover).
_change = bindparam("change", type_=BigInteger)
MOVE_CHANGE = (
    update(accounts)
    .where(and_(accounts.c.user_id == _user, covers(accounts.c.balance, -_change)))
    .values(
        balance=accounts.c.balance + _change,
        withdrawn=accounts.c.withdrawn + bindparam("withdrawn_change", type_=BigInteger),
        held=accounts.c.held + bindparam("held_change", type_=BigInteger),
        owed=accounts.c.owed + bindparam("owed_change", type_=BigInteger),
    )
)
MOVE = Statement(MOVE_CHANGE)


def change_of(entry: LedgerEntry) -> Statement:
    """The figures' change an entry makes, as SQLite writes it after the entry: the seed's
    two movements keep their own statements (the hot paths), the rest share MOVE."""
    if entry.kind is EntryKind.WITHDRAWAL:
        return DEBIT
    return CREDIT if entry.kind is EntryKind.ACCRUAL else MOVE


# --- the read side ------------------------------------------------------------------

# The listings read from the account, outer-joined: no row at all is "no such user"
# (a token outliving its user: 401), one row of NULLs is "nothing listed" (204). One
# round trip either way; the join adds a primary-key probe to the index scan.

#: What a listed order shows (order_view reads these), and the listing's order: newest
#: upload first, ties broken by the row id (the index's order, so pages are stable).
ORDER_VIEW = (orders.c.number, orders.c.status, orders.c.accrual, orders.c.uploaded_at)
WITHDRAWAL_VIEW = (ledger.c.order_number, ledger.c.amount, ledger.c.created_at)


def newest_first(table: Any) -> tuple[Any, Any]:
    return table.c.uploaded_at.desc(), table.c.id.desc()


# A page of the orders list (``?limit=&before=``; the whole list is read a page at a
# time, stores/sql/reads.py): at most ``limit`` orders,
# and with ``before`` (the number of the last order of the previous page) only the
# user's orders listed after that one, i.e. below its (uploaded_at, id) in the index's
# order. A ``before`` naming none of the user's orders lists nothing. The page is taken
# inside a derived table (ORDER BY ... LIMIT on the user's orders alone: a backward scan
# of the user's index range that stops after ``limit`` rows, not a sort of all of
# them), then outer-joined to the account. PostgreSQL's coalesced list of many users
# (stores/postgres/statements.py) reads the same columns in the same order.

_order_cursor = orders.alias("cursor")
_withdrawal_cursor = ledger.alias("cursor")


def _place_of(cursor: Any, when: str, match: Any) -> Any:
    """The (time, id) of the cursor row: where a page after it starts."""
    return tuple_(
        select(cursor.c[when]).where(match).scalar_subquery(),
        select(cursor.c.id).where(match).scalar_subquery(),
    )


def _page_of(
    table: Table, columns: Sequence[Any], when: Any, mine: Any, place: Any | None
) -> Select[Any]:
    """At most ``limit`` of the user's rows (``mine``), newest first, below ``place``;
    in a derived table outer-joined to the account (one row of NULLs: a user with no
    rows; no row: no such user)."""
    if place is not None:
        mine = and_(mine, tuple_(when, table.c.id) < place)
    listed = (
        select(*columns, table.c.id, when.label("listed_at"))
        .where(mine)
        .order_by(when.desc(), table.c.id.desc())
        .limit(bindparam("limit", type_=BigInteger))
        .subquery("page")
    )
    return (
        select(*(listed.c[c.name] for c in columns))
        .select_from(accounts.outerjoin(listed, true()))
        .where(accounts.c.user_id == bindparam("user_id"))
        .order_by(listed.c.listed_at.desc(), listed.c.id.desc())
    )


def _orders_listing(*, after_cursor: bool) -> Select[Any]:
    cursor = _order_cursor
    match = and_(cursor.c.number == bindparam("before"), cursor.c.user_id == bindparam("user_id"))
    place = _place_of(cursor, "uploaded_at", match) if after_cursor else None
    mine = orders.c.user_id == bindparam("user_id")
    return _page_of(orders, ORDER_VIEW, orders.c.uploaded_at, mine, place)


def _withdrawals_listing(*, after_cursor: bool) -> Select[Any]:
    cursor = _withdrawal_cursor
    match = and_(
        cursor.c.order_number == bindparam("before"),
        cursor.c.user_id == bindparam("user_id"),
        of_kind(cursor, EntryKind.WITHDRAWAL),
    )
    place = _place_of(cursor, "created_at", match) if after_cursor else None
    mine = and_(ledger.c.user_id == bindparam("user_id"), IS_WITHDRAWAL)
    return _page_of(ledger, WITHDRAWAL_VIEW, ledger.c.created_at, mine, place)


ORDERS_PAGE = Statement(_orders_listing(after_cursor=False))
ORDERS_PAGE_BEFORE = Statement(_orders_listing(after_cursor=True))
WITHDRAWALS_PAGE = Statement(_withdrawals_listing(after_cursor=False))
WITHDRAWALS_PAGE_BEFORE = Statement(_withdrawals_listing(after_cursor=True))

# --- what operators see (/api/admin/) -------------------------------------------------

USER_ACCOUNT = Statement(
    select(users.c.id, users.c.login, *ACCOUNT_FIGURES)
    .select_from(users.join(accounts, accounts.c.user_id == users.c.id))
    .where(users.c.login == bindparam("login"))
)

ORDER_STATE = Statement(
    select(
        orders.c.number,
        users.c.login,
        orders.c.status,
        orders.c.accrual,
        orders.c.attempts,
        orders.c.next_attempt_at,
        orders.c.parked,
        orders.c.reversed,
    )
    .select_from(orders.join(users, users.c.id == orders.c.user_id))
    .where(orders.c.number == bindparam("number"))
)

# --- rows back to the domain: indexes, which SQLAlchemy Rows and asyncpg Records share

_STATUSES = {s.value: s for s in OrderStatus}


def _points(cents: int | None) -> Points | None:
    return Points(cents) if cents is not None else None


def order_params(order: Order) -> dict[str, Any]:
    return {
        "number": order.number.value,
        "user_id": order.owner,
        "status": order.status.value,
        "uploaded_at": order.uploaded_at,
    }


def entry_params(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "user": entry.user_id,
        "kind": entry.kind.value,
        "order_number": entry.order_number.value if entry.order_number else None,
        "amount": entry.stored_amount,
        "at": entry.at,
        "owed_change": entry.owed_change,
        "reason": entry.reason,
        "operator": entry.operator,
        "hold_id": entry.hold_id,
        "change": entry.change,
        "withdrawn_change": entry.withdrawn_change,
        "held_change": entry.held_change,
    }


def order_of(number: OrderNumber, row: Sequence[Any]) -> Order:
    """From an ORDER_BY_NUMBER row."""
    user_id, status, uploaded_at, accrual = row
    return Order(number, UserId(user_id), _STATUSES[status], uploaded_at, _points(accrual))


def claimed_of(row: Sequence[Any]) -> ClaimedOrder:
    """From a CLAIM_DUE row."""
    return ClaimedOrder(OrderNumber(row[0]), _STATUSES[row[1]], row[2], taken_over=row[3] > 1)


def account_of(user_id: UserId, row: Sequence[Any]) -> Account | None:
    """From an ACCOUNT row, or the start of a FOR_WITHDRAWAL row (NULLs: no account)."""
    if row[0] is None:
        return None
    return Account(user_id, Points(row[0]), Points(row[1]), Points(row[2]), Points(row[3]))


def withdrawal_of(order_number: OrderNumber, row: Sequence[Any]) -> LedgerEntry | None:
    """From a WITHDRAWAL row, or the rest of a FOR_WITHDRAWAL row (NULLs: none)."""
    user_id, amount, created_at = row
    if user_id is None:
        return None
    return LedgerEntry(
        UserId(user_id), EntryKind.WITHDRAWAL, order_number, Points(amount), created_at
    )


def split_for_withdrawal(row: Sequence[Any]) -> tuple[Sequence[Any], Sequence[Any], bool]:
    """A FOR_WITHDRAWAL row as its ACCOUNT part, its WITHDRAWAL part and its OPEN_HOLD."""
    figures = len(ACCOUNT_FIGURES)
    entry = figures + len(WITHDRAWAL_ENTRY)
    return row[:figures], row[figures:entry], bool(row[entry])


def balance_view(row: Sequence[Any]) -> BalanceView:
    """From an ACCOUNT row."""
    return BalanceView(Points(row[0]), Points(row[1]), Points(row[2]), Points(row[3]))


def is_listed(row: Sequence[Any]) -> bool:
    """An ORDERS_PAGE or WITHDRAWALS_PAGE row that lists something (not the account's
    row of NULLs)."""
    return row[0] is not None


def order_view(row: Sequence[Any]) -> OrderView:
    """From an ORDERS_PAGE row (ORDER_VIEW)."""
    return OrderView(row[0], _STATUSES[row[1]], _points(row[2]), row[3])


def withdrawal_view(row: Sequence[Any]) -> WithdrawalView:
    """From a WITHDRAWALS_PAGE row (WITHDRAWAL_VIEW)."""
    return WithdrawalView(row[0], Points(row[1]), row[2])


def user_account_view(row: Sequence[Any]) -> UserAccountView:
    """From a USER_ACCOUNT row (its holds are read apart)."""
    user_id, login, current, withdrawn, held, owed = row
    return UserAccountView(
        UserId(user_id), login, Points(current), Points(withdrawn), Points(held), Points(owed)
    )


def order_state(row: Sequence[Any]) -> OrderState:
    """From an ORDER_STATE row."""
    number, login, status, accrual, attempts, next_attempt_at, parked, reversed_ = row
    return OrderState(
        number,
        login,
        _STATUSES[status],
        _points(accrual),
        attempts,
        next_attempt_at,
        parked,
        Points(reversed_),
    )


# --- operations -------------------------------------------------------------------

#: The database's Alembic revision (no row, or no table: never migrated).
REVISION = Statement(select(alembic_versions.c.version_num))
