"""Every statement of the units of work and the read models, written once as SQLAlchemy
Core, and the mapping of their rows back to domain objects and views, also once.

A :class:`Statement` runs two ways:

* on SQLite through SQLAlchemy (``conn.execute(statement.core, ...)``), which applies
  the column types (UTC datetimes stored naive, given their zone back);
* on PostgreSQL's hot paths straight through asyncpg: compiled once for the
  ``postgresql+asyncpg`` dialect (``$n`` placeholders), executed with asyncpg's
  per-connection statement cache, rows read from asyncpg's Records directly.

Where the engines truly differ, each has its own *shape*, still written once here:
PostgreSQL records a ledger entry and moves the balance in one data-modifying CTE;
SQLite cannot UPDATE inside a CTE, so there it is the insert plus the conditional
update, the same UPDATE that the CTE wraps.

A bind parameter outside the VALUES or SET of an INSERT or UPDATE is never named like
a column of that table: SQLAlchemy would take the key for one more column to write
(it refuses to compile instead).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Dialect,
    Insert,
    Integer,
    Select,
    String,
    Table,
    Update,
    and_,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.sql import visitors
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.types import NullType

from gophermart.adapters.sql.schema import accounts, ledger, orders, users
from gophermart.adapters.sql.types import Id, UtcDateTime
from gophermart.application.ports import BalanceView, ClaimedOrder, OrderView, WithdrawalView
from gophermart.domain.accounts import Account, EntryKind, LedgerEntry
from gophermart.domain.orders import Order, OrderNumber, OrderStatus
from gophermart.domain.points import Points
from gophermart.domain.users import UserId

#: The channel a committed upload is announced on (PostgreSQL LISTEN/NOTIFY).
ORDERS_CHANNEL = "gophermart_orders"

Params = Mapping[str, Any]
#: What a Statement holds: Core constructs that are both executable and compilable.
Core = Select[Any] | Insert | Update

_ASYNCPG = PGDialect_asyncpg()  # type: ignore[no-untyped-call]

#: Types whose values asyncpg hands over exactly as SQLAlchemy's result processing would
#: on SQLite (timestamptz arrives tz-aware UTC, as UtcDateTime promises), and takes as
#: bind values as they are (aware datetimes: the domain makes no naive ones, which
#: UtcDateTime refuses on SQLite). Rows are mapped from asyncpg's Records with no
#: processing, so a column of any other type must not reach the asyncpg path unnoticed.
_ASYNCPG_NATIVE = (Integer, String, UtcDateTime, NullType)


class PgCompiled:
    """A statement's PostgreSQL text and how to order its arguments for asyncpg."""

    __slots__ = ("_fixed", "_pick", "sql")

    def __init__(self, core: Core) -> None:
        compiled = core.compile(dialect=_ASYNCPG)
        if compiled.post_compile_params:  # rendered per execution: not compilable once
            raise ValueError(f"expanding parameters in {compiled.string!r}")
        _check_native(compiled.binds[n].type for n in compiled.positiontup or ())
        _check_native(c.type for c in getattr(core, "exported_columns", ()))
        names = list(compiled.positiontup or ())
        self.sql: str = compiled.string
        # Parameters the statement itself carries (literals such as 'withdrawal').
        self._fixed = {n: compiled.binds[n].value for n in names if not compiled.binds[n].required}
        self._pick: Callable[[Params], Sequence[Any]] = (
            operator.itemgetter(*names) if len(names) > 1 else lambda p: [p[n] for n in names]
        )

    def args(self, params: Params) -> Sequence[Any]:
        """The positional arguments, ``$1`` first."""
        return self._pick({**self._fixed, **params} if self._fixed else params)


def _check_native(types: Any) -> None:
    for type_ in types:
        if not isinstance(type_, _ASYNCPG_NATIVE):
            raise TypeError(f"{type_!r} needs type processing that the asyncpg path skips")


class Statement:
    """One statement: its Core construct, and its asyncpg form, compiled at first use."""

    __slots__ = ("_pg", "binds", "core")

    def __init__(self, core: Core) -> None:
        self.core = core
        #: The names it needs a value for.
        self.binds = frozenset(
            e.key for e in visitors.iterate(core) if isinstance(e, BindParameter) and e.required
        )
        self._pg: PgCompiled | None = None

    @property
    def pg(self) -> PgCompiled:
        if self._pg is None:
            self._pg = PgCompiled(self.core)
        return self._pg

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


def _add_order(insert_: Callable[[Table], Any]) -> Any:
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


ADD_ORDER_SQLITE = Statement(_add_order(sqlite.insert))
#: The upload announces itself in its own RETURNING: the wake-up costs no round trip,
#: and PostgreSQL delivers it only if the insert commits.
ADD_ORDER_PG = Statement(
    _add_order(postgresql.insert).returning(func.pg_notify(ORDERS_CHANNEL, ""))
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
    .values(next_attempt_at=bindparam("lease_until"), attempts=orders.c.attempts + 1)
    .returning(orders.c.number, orders.c.status, orders.c.attempts)
)

RESCHEDULE = Statement(
    update(orders)
    .where(
        and_(orders.c.number == bindparam("order_number"), orders.c.next_attempt_at.is_not(None))
    )
    .values(next_attempt_at=bindparam("at"))
)

# --- accounts and the ledger --------------------------------------------------------

OPEN_ACCOUNT = Statement(insert(accounts).values(user_id=bindparam("user_id")))

_ACCOUNT = (accounts.c.balance, accounts.c.withdrawn)
_WITHDRAWAL = (ledger.c.user_id, ledger.c.amount, ledger.c.created_at)
_is_withdrawal = ledger.c.kind == EntryKind.WITHDRAWAL.value

ACCOUNT = Statement(select(*_ACCOUNT).where(accounts.c.user_id == bindparam("user_id")))

WITHDRAWAL = Statement(
    select(*_WITHDRAWAL).where(
        and_(_is_withdrawal, ledger.c.order_number == bindparam("order_number"))
    )
)

_me = select(bindparam("user_id", type_=Id).label("user_id")).subquery("me")

#: One row always: the account's figures (NULL without an account), then the withdrawal
#: already recorded for the order number, by anyone (NULL when there is none).
FOR_WITHDRAWAL = Statement(
    select(*_ACCOUNT, *_WITHDRAWAL).select_from(
        _me.outerjoin(accounts, accounts.c.user_id == _me.c.user_id).outerjoin(
            ledger, and_(_is_withdrawal, ledger.c.order_number == bindparam("order_number"))
        )
    )
)

# A ledger entry's parameters (entry_params); typed, because in the CTE shape some
# stand alone in a SELECT list, where nothing else tells PostgreSQL their type.
_user = bindparam("user", type_=BigInteger)
_amount = bindparam("amount", type_=BigInteger)
_entry_values = {
    "kind": bindparam("kind", type_=String),
    "order_number": bindparam("order_number", type_=String),
    "amount": _amount,
    "created_at": bindparam("at", type_=UtcDateTime),
}

#: The rule again, atomically in the database: never below zero.
_DEBIT = (
    update(accounts)
    .where(and_(accounts.c.user_id == _user, accounts.c.balance >= _amount))
    .values(balance=accounts.c.balance - _amount, withdrawn=accounts.c.withdrawn + _amount)
)
_CREDIT = (
    update(accounts).where(accounts.c.user_id == _user).values(balance=accounts.c.balance + _amount)
)

# SQLite's shape: the entry, then the balance change, which moves one row or none.
RECORD_ENTRY = Statement(insert(ledger).values(user_id=_user, **_entry_values))
DEBIT = Statement(_DEBIT)
CREDIT = Statement(_CREDIT)


def _entry_moving(change: Update) -> Insert:
    """PostgreSQL's shape: the entry and the balance change as one statement; no row
    back (and nothing written) when the change matched no account row."""
    moved = change.returning(accounts.c.user_id).cte("moved")
    return (
        insert(ledger)
        .from_select(
            ["user_id", *_entry_values],
            select(moved.c.user_id, *_entry_values.values()),
        )
        .returning(ledger.c.id)
    )


DEBIT_ENTRY = Statement(_entry_moving(_DEBIT))
CREDIT_ENTRY = Statement(_entry_moving(_CREDIT))

# --- the read side ------------------------------------------------------------------

# The listings read from the account, outer-joined: no row at all is "no such user"
# (a token outliving its user: 401), one row of NULLs is "nothing listed" (204). One
# round trip either way; the join adds a primary-key probe to the index scan.

ORDERS_OF = Statement(
    select(orders.c.number, orders.c.status, orders.c.accrual, orders.c.uploaded_at)
    .select_from(accounts.outerjoin(orders, orders.c.user_id == accounts.c.user_id))
    .where(accounts.c.user_id == bindparam("user_id"))
    .order_by(orders.c.uploaded_at.desc(), orders.c.id.desc())
)

WITHDRAWALS_OF = Statement(
    select(ledger.c.order_number, ledger.c.amount, ledger.c.created_at)
    .select_from(
        accounts.outerjoin(ledger, and_(ledger.c.user_id == accounts.c.user_id, _is_withdrawal))
    )
    .where(accounts.c.user_id == bindparam("user_id"))
    .order_by(ledger.c.created_at.desc(), ledger.c.id.desc())
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
        "order_number": entry.order_number.value,
        "amount": entry.amount.cents,
        "at": entry.at,
    }


def order_of(number: OrderNumber, row: Sequence[Any]) -> Order:
    """From an ORDER_BY_NUMBER row."""
    user_id, status, uploaded_at, accrual = row
    return Order(number, UserId(user_id), _STATUSES[status], uploaded_at, _points(accrual))


def claimed_of(row: Sequence[Any]) -> ClaimedOrder:
    """From a CLAIM_DUE row."""
    return ClaimedOrder(OrderNumber(row[0]), _STATUSES[row[1]], row[2])


def account_of(user_id: UserId, row: Sequence[Any]) -> Account | None:
    """From an ACCOUNT row, or the start of a FOR_WITHDRAWAL row (NULLs: no account)."""
    if row[0] is None:
        return None
    return Account(user_id, Points(row[0]), Points(row[1]))


def withdrawal_of(order_number: OrderNumber, row: Sequence[Any]) -> LedgerEntry | None:
    """From a WITHDRAWAL row, or the rest of a FOR_WITHDRAWAL row (NULLs: none)."""
    user_id, amount, created_at = row
    if user_id is None:
        return None
    return LedgerEntry(
        UserId(user_id), EntryKind.WITHDRAWAL, order_number, Points(amount), created_at
    )


def split_for_withdrawal(row: Sequence[Any]) -> tuple[Sequence[Any], Sequence[Any]]:
    """A FOR_WITHDRAWAL row as its ACCOUNT part and its WITHDRAWAL part."""
    return row[: len(_ACCOUNT)], row[len(_ACCOUNT) :]


def balance_view(row: Sequence[Any]) -> BalanceView:
    """From an ACCOUNT row."""
    return BalanceView(Points(row[0]), Points(row[1]))


def is_listed(row: Sequence[Any]) -> bool:
    """An ORDERS_OF or WITHDRAWALS_OF row that lists something (not the account's
    row of NULLs)."""
    return row[0] is not None


def order_view(row: Sequence[Any]) -> OrderView:
    """From an ORDERS_OF row."""
    return OrderView(row[0], _STATUSES[row[1]], _points(row[2]), row[3])


def withdrawal_view(row: Sequence[Any]) -> WithdrawalView:
    """From a WITHDRAWALS_OF row."""
    return WithdrawalView(row[0], Points(row[1]), row[2])
