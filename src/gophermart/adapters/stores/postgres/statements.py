"""What only PostgreSQL's store says, written once as SQLAlchemy Core from the shared
pieces (``stores/sql/statements.py``): data-modifying CTEs, arrays, and the batches of
the coalesced reads and of the group commit.
"""

from __future__ import annotations

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Insert,
    String,
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
    update,
)
from sqlalchemy.dialects import postgresql

from gophermart.adapters.stores.sql.schema import accounts, ledger, orders
from gophermart.adapters.stores.sql.statements import (
    ACCOUNT_FIGURES,
    CREDIT_CHANGE,
    ENTRY_VALUES,
    IS_WITHDRAWAL,
    ORDER_VIEW,
    WITHDRAWAL_ENTRY,
    Statement,
    add_order,
    covers,
    newest_first,
)
from gophermart.adapters.stores.sql.types import UtcDateTime
from gophermart.domain.accounts import EntryKind

#: The channel a committed upload is announced on (LISTEN/NOTIFY).
ORDERS_CHANNEL = "gophermart_orders"

#: The upload announces itself in its own RETURNING: the wake-up costs no round trip,
#: and PostgreSQL delivers it only if the insert commits.
ADD_ORDER = Statement(add_order(postgresql.insert).returning(func.pg_notify(ORDERS_CHANNEL, "")))


def _entry_moving(change: Update) -> Insert:
    """The entry and the balance change as one statement; no row back (and nothing
    written) when the change matched no account row."""
    moved = change.returning(accounts.c.user_id).cte("moved")
    return (
        insert(ledger)
        .from_select(["user_id", *ENTRY_VALUES], select(moved.c.user_id, *ENTRY_VALUES.values()))
        .returning(ledger.c.id)
    )


CREDIT_ENTRY = Statement(_entry_moving(CREDIT_CHANGE))

#: FOR_WITHDRAWAL for many (user, order number) pairs at once (coalesced:
#: group_commit.py): each asked pair, then its FOR_WITHDRAWAL row.
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
    select(*ACCOUNT_FIGURES)
    .where(accounts.c.user_id == _asked.c.user_id)
    .limit(1)
    .lateral("their_account")
)
_earlier = (
    select(*WITHDRAWAL_ENTRY)
    .where(and_(IS_WITHDRAWAL, ledger.c.order_number == _asked.c.order_number))
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

# The debit, PostgreSQL's one statement for it (group_commit.py): the withdrawals of one
# or many requests as one statement, so one transaction and one WAL flush, each with
# its own outcome:
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
_fits_first = covers(_locked.c.balance, _ranked.c.amount)
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
_fits_next = covers(_walk.c.left, _next.c.amount)
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

# Coalesced reads (coalesce.py): one statement for the users whose reads
# arrived in the same turn of a server process's event loop, each row led by its user.

_users = bindparam("user_ids", type_=ARRAY(BigInteger))

ACCOUNTS_OF = Statement(
    select(accounts.c.user_id, *ACCOUNT_FIGURES).where(accounts.c.user_id == any_(_users))
)

#: ORDERS_OF for many users at once: each user's rows together, in ORDERS_OF's order.
#: LATERAL, kept from being flattened into a join by its OFFSET 0: per account an index
#: scan of its orders, never a hash join over the whole table (see FOR_WITHDRAWALS).
_their_orders = (
    select(*ORDER_VIEW, orders.c.id)
    .where(orders.c.user_id == accounts.c.user_id)
    .offset(0)
    .lateral("their_orders")
)
ORDERS_OF_USERS = Statement(
    select(accounts.c.user_id, *(_their_orders.c[c.name] for c in ORDER_VIEW))
    .select_from(accounts.outerjoin(_their_orders, true()))
    .where(accounts.c.user_id == any_(_users))
    .order_by(accounts.c.user_id, *newest_first(_their_orders))
)
