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
    ARRAY,
    BigInteger,
    Boolean,
    Dialect,
    Insert,
    Integer,
    Select,
    String,
    Table,
    Update,
    and_,
    any_,
    bindparam,
    case,
    cast,
    column,
    func,
    insert,
    literal,
    select,
    true,
    tuple_,
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
_ASYNCPG_NATIVE = (Integer, String, UtcDateTime, Boolean, NullType)


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
        if isinstance(type_, ARRAY):  # asyncpg takes and gives lists of the item type
            type_ = type_.item_type
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
        open_claims=0,
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
    .values(next_attempt_at=bindparam("at"), open_claims=0)
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

#: FOR_WITHDRAWAL for many (user, order number) pairs at once (PostgreSQL, coalesced:
#: pg_group_commit.py): each asked pair, then its FOR_WITHDRAWAL row.
_asked = (
    func.unnest(
        bindparam("asked_users", type_=ARRAY(BigInteger)),
        bindparam("asked_numbers", type_=ARRAY(String)),
    )
    .table_valued(column("user_id", BigInteger), column("order_number", String))
    .render_derived(name="asked")
)
# LATERAL with LIMIT 1 (each finds one row at most), so that each pair is two index
# probes whatever the planner thinks of the tables: a plain join, or a LATERAL that
# PostgreSQL flattens into one, was hash-joined with every withdrawal in the ledger while
# its statistics still said the ledger was small (a cost growing with every withdrawal).
_their_account = (
    select(*_ACCOUNT)
    .where(accounts.c.user_id == _asked.c.user_id)
    .limit(1)
    .lateral("their_account")
)
_earlier = (
    select(*_WITHDRAWAL)
    .where(and_(_is_withdrawal, ledger.c.order_number == _asked.c.order_number))
    .limit(1)
    .lateral("earlier")
)
FOR_WITHDRAWALS = Statement(
    select(
        _asked.c.user_id,
        _asked.c.order_number,
        *_their_account.c,
        *_earlier.c,
    ).select_from(_asked.outerjoin(_their_account, true()).outerjoin(_earlier, true()))
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

# Group commit (PostgreSQL: pg_group_commit.py): the withdrawals of many requests as
# one statement, so one transaction and one WAL flush, each with its own outcome:
#
# * ``locked``: the batch's accounts, locked in user order (two batches never deadlock)
#   and read as they are once locked (READ COMMITTED: the latest committed balance);
# * ``walk``: each account's debits decided in arrival order (``seq``) on that balance,
#   recursively: a debit is accepted if what is left covers it, and only an accepted
#   one spends; so each answer is the one it would get alone, one after the other;
# * ``landed``: the accepted debits' ledger entries, except those whose order number is
#   taken by then (ON CONFLICT DO NOTHING: that debit is not written, the others are);
# * ``moved``: each account moved by the sum of *its written* entries, so the ledger
#   always explains the balance, and ``CHECK (balance >= 0)`` still refuses an overdraft.
#
# Back, per debit in arrival order: accepted (NULL: no such account), written, and how
# many accounts moved.

_debit_users = bindparam("users", type_=ARRAY(BigInteger))
_debits = (
    func.unnest(
        _debit_users,
        bindparam("numbers", type_=ARRAY(String)),
        bindparam("amounts", type_=ARRAY(BigInteger)),
        bindparam("ats", type_=ARRAY(UtcDateTime)),
    )
    .table_valued(
        column("user_id", BigInteger),
        column("order_number", String),
        column("amount", BigInteger),
        column("created_at", UtcDateTime),
        with_ordinality="seq",
    )
    .render_derived(name="batch")
)
_ranked = select(
    _debits.c.seq,
    _debits.c.user_id,
    _debits.c.order_number,
    _debits.c.amount,
    _debits.c.created_at,
    func.row_number().over(partition_by=_debits.c.user_id, order_by=_debits.c.seq).label("k"),
).cte("ranked")
_locked = (
    select(accounts.c.user_id, accounts.c.balance)
    .where(accounts.c.user_id == any_(_debit_users))
    .order_by(accounts.c.user_id)
    .with_for_update()
    .cte("locked")
)
_fits_first = _ranked.c.amount <= _locked.c.balance
_walk = (
    select(
        _ranked.c.seq,
        _ranked.c.user_id,
        _ranked.c.k,
        case((_fits_first, _locked.c.balance - _ranked.c.amount), else_=_locked.c.balance).label(
            "left"
        ),
        _fits_first.label("ok"),
    )
    .select_from(_ranked.join(_locked, _locked.c.user_id == _ranked.c.user_id))
    .where(_ranked.c.k == 1)
    .cte("walk", recursive=True)
)
_next = _ranked.alias("next")
_fits_next = _next.c.amount <= _walk.c.left
_walk = _walk.union_all(
    select(
        _next.c.seq,
        _next.c.user_id,
        _next.c.k,
        case((_fits_next, _walk.c.left - _next.c.amount), else_=_walk.c.left),
        _fits_next,
    ).select_from(
        _walk.join(_next, and_(_next.c.user_id == _walk.c.user_id, _next.c.k == _walk.c.k + 1))
    )
)
_landed = (
    postgresql.insert(ledger)
    .from_select(
        ["user_id", "kind", "order_number", "amount", "created_at"],
        select(
            _ranked.c.user_id,
            literal(EntryKind.WITHDRAWAL.value, String),
            _ranked.c.order_number,
            _ranked.c.amount,
            _ranked.c.created_at,
        )
        .select_from(_ranked.join(_walk, _walk.c.seq == _ranked.c.seq))
        .where(_walk.c.ok),
    )
    .on_conflict_do_nothing(index_elements=[ledger.c.kind, ledger.c.order_number])
    .returning(ledger.c.user_id, ledger.c.order_number, ledger.c.amount)
    .cte("landed")
)
_totals = (
    select(_landed.c.user_id, cast(func.sum(_landed.c.amount), BigInteger).label("total"))
    .group_by(_landed.c.user_id)
    .subquery("totals")
)
_moved = (
    update(accounts)
    .where(and_(accounts.c.user_id == any_(_debit_users), accounts.c.user_id == _totals.c.user_id))
    .values(
        balance=accounts.c.balance - _totals.c.total,
        withdrawn=accounts.c.withdrawn + _totals.c.total,
    )
    .returning(accounts.c.user_id)
    .cte("moved")
)
WITHDRAW_BATCH = Statement(
    select(
        _walk.c.ok,
        _landed.c.order_number.is_not(None).label("written"),
        select(func.count()).select_from(_moved).scalar_subquery().label("moved"),
    )
    .select_from(
        _ranked.outerjoin(_walk, _walk.c.seq == _ranked.c.seq).outerjoin(
            _landed, _landed.c.order_number == _ranked.c.order_number
        )
    )
    .order_by(_ranked.c.seq)
)

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

# A page of ORDERS_OF (``?limit=&before=``): at most ``limit`` orders, and with
# ``before`` (the number of the last order of the previous page) only the user's orders
# listed after that one, i.e. below its (uploaded_at, id) in the index's order. A
# ``before`` naming none of the user's orders lists nothing. The page is taken inside a
# derived table (ORDER BY ... LIMIT on the user's orders alone: a backward scan of the
# user's index range that stops after ``limit`` rows, not a sort of all of them), then
# outer-joined to the account as ORDERS_OF is.

_cursor = orders.alias("cursor")


def _of_cursor(column: str) -> Any:
    return (
        select(_cursor.c[column])
        .where(
            and_(_cursor.c.number == bindparam("before"), _cursor.c.user_id == bindparam("user_id"))
        )
        .scalar_subquery()
    )


def _orders_page(condition: Any) -> Select[Any]:
    page = (
        select(
            orders.c.number, orders.c.status, orders.c.accrual, orders.c.uploaded_at, orders.c.id
        )
        .where(and_(orders.c.user_id == bindparam("user_id"), condition))
        .order_by(orders.c.uploaded_at.desc(), orders.c.id.desc())
        .limit(bindparam("limit", type_=BigInteger))
        .subquery("page")
    )
    return (
        select(page.c.number, page.c.status, page.c.accrual, page.c.uploaded_at)
        .select_from(accounts.outerjoin(page, true()))
        .where(accounts.c.user_id == bindparam("user_id"))
        .order_by(page.c.uploaded_at.desc(), page.c.id.desc())
    )


ORDERS_PAGE = Statement(_orders_page(true()))
ORDERS_PAGE_BEFORE = Statement(
    _orders_page(
        tuple_(orders.c.uploaded_at, orders.c.id)
        < tuple_(_of_cursor("uploaded_at"), _of_cursor("id"))
    )
)

# Coalesced reads (PostgreSQL: coalesce.py): one statement for the users whose reads
# arrived in the same turn of a server process's event loop, each row led by its user.

_users = bindparam("user_ids", type_=ARRAY(BigInteger))

ACCOUNTS_OF = Statement(
    select(accounts.c.user_id, *_ACCOUNT).where(accounts.c.user_id == any_(_users))
)

#: ORDERS_OF for many users at once: each user's rows together, in ORDERS_OF's order.
#: LATERAL, kept from being flattened into a join by its OFFSET 0: per account an index
#: scan of its orders, never a hash join over the whole table (see FOR_WITHDRAWALS).
_their_orders = (
    select(orders.c.number, orders.c.status, orders.c.accrual, orders.c.uploaded_at, orders.c.id)
    .where(orders.c.user_id == accounts.c.user_id)
    .offset(0)
    .lateral("their_orders")
)
ORDERS_OF_USERS = Statement(
    select(
        accounts.c.user_id,
        _their_orders.c.number,
        _their_orders.c.status,
        _their_orders.c.accrual,
        _their_orders.c.uploaded_at,
    )
    .select_from(accounts.outerjoin(_their_orders, true()))
    .where(accounts.c.user_id == any_(_users))
    .order_by(accounts.c.user_id, _their_orders.c.uploaded_at.desc(), _their_orders.c.id.desc())
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
    return ClaimedOrder(OrderNumber(row[0]), _STATUSES[row[1]], row[2], taken_over=row[3] > 1)


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
