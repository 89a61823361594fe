"""What only PostgreSQL's store says, written once as SQLAlchemy Core from the shared
pieces (``stores/sql/statements.py``): data-modifying CTEs, arrays, and the batches of
the coalesced reads and of the group commit.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import (
    ARRAY,
    CTE,
    BigInteger,
    Insert,
    Select,
    String,
    Update,
    and_,
    any_,
    bindparam,
    case,
    cast,
    exists,
    func,
    insert,
    literal,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql

from gophermart.adapters.stores.postgres.arrays import unnest_rows
from gophermart.adapters.stores.sql.movements import HOLD_COLUMNS
from gophermart.adapters.stores.sql.schema import IS_OPEN, accounts, holds, ledger, orders
from gophermart.adapters.stores.sql.statements import (
    ACCOUNT_FIGURES,
    CREDIT_CHANGE,
    ENTRY_VALUES,
    IS_WITHDRAWAL,
    MOVE_CHANGE,
    ORDER_VIEW,
    WITHDRAWAL_ENTRY,
    Statement,
    add_order,
    covers,
    newest_first,
)
from gophermart.adapters.stores.sql.types import UtcDateTime
from gophermart.application.queries import Queries
from gophermart.domain.accounts import EntryKind

#: The channel a committed upload is announced on (LISTEN/NOTIFY).
ORDERS_CHANNEL = "gophermart_orders"


def orders_channel(schema: str | None) -> str:
    """The channel of the deployment whose tables are in ``schema``: channels are per
    database, not per schema, and another deployment's uploads are not ours to poll."""
    return ORDERS_CHANNEL if schema is None else f"{ORDERS_CHANNEL}_{schema}"


@cache  # one per channel: compiled once (runner.py), like every statement
def adding_order(channel: str) -> Statement:
    """The upload, announcing itself on ``channel`` in its own RETURNING: the wake-up
    costs no round trip, and PostgreSQL delivers it only if the insert commits."""
    return Statement(add_order(postgresql.insert).returning(func.pg_notify(channel, "")))


ADD_ORDER = adding_order(ORDERS_CHANNEL)


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
#: Any other movement (a hold, a refund, an adjustment ...): the entry and its change of
#: every figure (MOVE_CHANGE), one statement.
MOVE_ENTRY = Statement(_entry_moving(MOVE_CHANGE))

#: FOR_WITHDRAWAL for many (user, order number) pairs at once (coalesced:
#: group_commit.py): each asked pair, then its FOR_WITHDRAWAL row.
_asked = unnest_rows(
    "asked", ("asked_users", "user_id", BigInteger), ("asked_numbers", "order_number", String)
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
_held = exists().where(and_(holds.c.order_number == _asked.c.order_number, IS_OPEN)).label("held")
FOR_WITHDRAWALS = Statement(
    select(
        _asked.c.user_id,
        _asked.c.order_number,
        *_their_account.c,
        *_earlier.c,
        _held,
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
# Back, per debit in arrival order: accepted (NULL: its account was not decided on),
# written, how many accounts moved, and whether the debit's account exists at all.
#
# Two forms of it. WITHDRAW_BATCH waits for the rows' locks (another batch holds its
# rows for its statement and flush: milliseconds), within the commit connections'
# ``lock_timeout``; a row held longer (a long transaction, an operator's psql) fails the
# batch, and it is sent again as WITHDRAW_SKIPPING, which passes locked rows by (SKIP
# LOCKED) and leaves *their* debits undecided (accepted NULL, known true), so they do
# not stall every other user's withdrawal; the group commit then writes those alone
# (MOVE_ENTRY, waiting for the lock within the request's own deadline): one slow thing
# stays one slow thing. Skipping by default cost a third of the withdrawals' throughput:
# two processes' batches of the same users skipped each other's rows, and every skipped
# debit was a commit of its own (docs/performance.md).

_debit_users = bindparam("users", type_=ARRAY(BigInteger))
_debits = unnest_rows(
    "batch",
    (_debit_users, "user_id", BigInteger),
    ("numbers", "order_number", String),
    ("amounts", "amount", BigInteger),
    ("ats", "created_at", UtcDateTime),
    ordinality="seq",
)
_ranked = select(
    _debits.c.seq,
    _debits.c.user_id,
    _debits.c.order_number,
    _debits.c.amount,
    _debits.c.created_at,
    func.row_number().over(partition_by=_debits.c.user_id, order_by=_debits.c.seq).label("k"),
).cte("ranked")


def _locked(*, skip_locked: bool) -> CTE:
    """The batch's accounts, locked in user order, as they are once locked."""
    return (
        select(accounts.c.user_id, accounts.c.balance)
        .where(accounts.c.user_id == any_(_debit_users))
        .order_by(accounts.c.user_id)
        .with_for_update(skip_locked=skip_locked)
        .cte("locked")
    )


def _walk(locked: CTE) -> CTE:
    """Each account's debits decided in arrival order on its locked balance."""
    fits_first = covers(locked.c.balance, _ranked.c.amount)
    first = (
        select(
            _ranked.c.seq,
            _ranked.c.user_id,
            _ranked.c.k,
            case((fits_first, locked.c.balance - _ranked.c.amount), else_=locked.c.balance).label(
                "left"
            ),
            fits_first.label("ok"),
        )
        .select_from(_ranked.join(locked, locked.c.user_id == _ranked.c.user_id))
        .where(_ranked.c.k == 1)
        .cte("walk", recursive=True)
    )
    following = _ranked.alias("next")
    fits_next = covers(first.c.left, following.c.amount)
    return first.union_all(
        select(
            following.c.seq,
            following.c.user_id,
            following.c.k,
            case((fits_next, first.c.left - following.c.amount), else_=first.c.left),
            fits_next,
        ).select_from(
            first.join(
                following,
                and_(following.c.user_id == first.c.user_id, following.c.k == first.c.k + 1),
            )
        )
    )


def _landed(walk: CTE) -> CTE:
    """The accepted debits' entries, but for those whose order number is taken."""
    return (
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
            .select_from(_ranked.join(walk, walk.c.seq == _ranked.c.seq))
            .where(walk.c.ok),
        )
        .on_conflict_do_nothing(index_elements=[ledger.c.order_number], index_where=IS_WITHDRAWAL)
        .returning(ledger.c.user_id, ledger.c.order_number, ledger.c.amount)
        .cte("landed")
    )


def _moved(landed: CTE) -> CTE:
    """Each account moved by the sum of its written entries."""
    totals = (
        select(landed.c.user_id, cast(func.sum(landed.c.amount), BigInteger).label("total"))
        .group_by(landed.c.user_id)
        .subquery("totals")
    )
    return (
        update(accounts)
        .where(
            and_(accounts.c.user_id == any_(_debit_users), accounts.c.user_id == totals.c.user_id)
        )
        .values(
            balance=accounts.c.balance - totals.c.total,
            withdrawn=accounts.c.withdrawn + totals.c.total,
        )
        .returning(accounts.c.user_id)
        .cte("moved")
    )


def _withdrawals(*, skip_locked: bool) -> Select[Any]:
    walk = _walk(_locked(skip_locked=skip_locked))
    landed = _landed(walk)
    known = exists().where(accounts.c.user_id == _ranked.c.user_id)
    return (
        select(
            walk.c.ok,
            landed.c.order_number.is_not(None).label("written"),
            select(func.count()).select_from(_moved(landed)).scalar_subquery().label("moved"),
            known.label("known"),
        )
        .select_from(
            _ranked.outerjoin(walk, walk.c.seq == _ranked.c.seq).outerjoin(
                landed, landed.c.order_number == _ranked.c.order_number
            )
        )
        .order_by(_ranked.c.seq)
    )


WITHDRAW_BATCH = Statement(_withdrawals(skip_locked=False))
WITHDRAW_SKIPPING = Statement(_withdrawals(skip_locked=True))

# Coalesced reads (coalesce.py): one statement for the users whose reads
# arrived in the same turn of a server process's event loop, each row led by its user.

_users = bindparam("user_ids", type_=ARRAY(BigInteger))

ACCOUNTS_OF = Statement(
    select(accounts.c.user_id, *ACCOUNT_FIGURES).where(accounts.c.user_id == any_(_users))
)

#: The first chunk of the orders list of many users at once: each user's rows together,
#: newest first.
#: LATERAL, kept from being flattened into a join by its OFFSET 0: per account an index
#: scan of its orders, never a hash join over the whole table (see FOR_WITHDRAWALS).
_their_orders = (
    select(*ORDER_VIEW, orders.c.id)
    .where(orders.c.user_id == accounts.c.user_id)
    .order_by(*newest_first(orders))
    .limit(Queries.CHUNK)  # a first chunk (stores/sql/reads.py reads the rest)
    .offset(0)
    .lateral("their_orders")
)
ORDERS_OF_USERS = Statement(
    select(accounts.c.user_id, *(_their_orders.c[c.name] for c in ORDER_VIEW))
    .select_from(accounts.outerjoin(_their_orders, true()))
    .where(accounts.c.user_id == any_(_users))
    .order_by(accounts.c.user_id, *newest_first(_their_orders))
)

# --- holds, each one statement (no BEGIN, no COMMIT, no lock held across a round trip) --
#
# PLACE_HOLD: the hold, its entry and the account's change at once, if the order has no
# open hold and no withdrawal and the balance covers the amount (the debit rule, in the
# UPDATE's WHERE: checked again on the row's latest version once it is locked). Back:
# the hold's id, or NULL (nothing written; the use case reads why). Two holds of one
# order at once: the open-hold unique index refuses the second (Conflict).
_hold_user = bindparam("user_id", type_=BigInteger)
_hold_number = bindparam("order_number", type_=String)
_hold_amount = bindparam("amount", type_=BigInteger)
_hold_at = bindparam("at", type_=UtcDateTime)
_reserved = (
    update(accounts)
    .where(
        and_(
            accounts.c.user_id == _hold_user,
            covers(accounts.c.balance, _hold_amount),
            ~exists().where(and_(holds.c.order_number == _hold_number, IS_OPEN)),
            ~exists().where(and_(IS_WITHDRAWAL, ledger.c.order_number == _hold_number)),
        )
    )
    .values(balance=accounts.c.balance - _hold_amount, held=accounts.c.held + _hold_amount)
    .returning(accounts.c.user_id)
    .cte("reserved")
)
_placed = (
    insert(holds)
    .from_select(
        ["user_id", "order_number", "amount", "state", "created_at", "expires_at"],
        select(
            _reserved.c.user_id,
            _hold_number,
            _hold_amount,
            literal("open"),
            _hold_at,
            bindparam("until", type_=UtcDateTime),
        ),
    )
    .returning(holds.c.id)
    .cte("placed")
)
_hold_entry = (
    insert(ledger)
    .from_select(
        ["user_id", "kind", "order_number", "amount", "created_at", "hold_id"],
        select(
            _hold_user,
            literal(EntryKind.HOLD.value),
            _hold_number,
            _hold_amount,
            _hold_at,
            _placed.c.id,
        ),
    )
    .returning(ledger.c.id)
    .cte("hold_entry")
)
#: One row always (an aggregate: NULL when nothing was placed), so that a batch of them
#: (batches.py) answers each execution.
PLACE_HOLD = Statement(select(func.max(_placed.c.id)).where(exists(select(_hold_entry.c.id))))

# CAPTURE_HOLD: an open hold of the user's, not past its expiry, captured at once: the
# hold closed, its release and its order's withdrawal written (in that order: one
# INSERT, its rows numbered in order), the account's held points spent (balance
# unchanged: the release gives back what the withdrawal spends). Back: the hold's row,
# or NULLs (not open, not the user's, expired: the use case reads why). A withdrawal of
# the order written meanwhile: the withdrawal's unique index refuses it (Conflict).
_closed = (
    update(holds)
    .where(
        and_(
            holds.c.id == bindparam("hold_id", type_=BigInteger),
            holds.c.user_id == _hold_user,
            IS_OPEN,
            holds.c.expires_at > _hold_at,
        )
    )
    .values(state=literal("captured"), closed_at=_hold_at)
    .returning(*HOLD_COLUMNS)
    .cte("closed")
)
_pair = (
    select(
        literal(1).label("n"),
        literal(EntryKind.HOLD_RELEASE.value).label("kind"),
        literal("captured").label("reason"),
    )
    .union_all(select(literal(2), literal(EntryKind.WITHDRAWAL.value), literal(None, String)))
    .cte("pair")
)
_spent = (
    update(accounts)
    .where(accounts.c.user_id == _hold_user)
    .values(
        held=accounts.c.held - _closed.c.amount,
        withdrawn=accounts.c.withdrawn + _closed.c.amount,
    )
    .returning(accounts.c.user_id)
    .cte("spent")
)
_capture_entries = (
    insert(ledger)
    .from_select(
        ["user_id", "kind", "order_number", "amount", "created_at", "reason", "hold_id"],
        select(
            _hold_user,
            _pair.c.kind,
            _closed.c.order_number,
            _closed.c.amount,
            _hold_at,
            _pair.c.reason,
            case((_pair.c.n == 1, _closed.c.id), else_=literal(None, BigInteger)),
        )
        # From the account's change: its row is locked before the entries' ids are
        # drawn, so one user's entries are numbered in the order their changes commit
        # (balance_after's order is the order of the balances, and of their events).
        .select_from(_closed.join(_pair, true()).join(_spent, true()))
        .order_by(_pair.c.n),
    )
    .returning(ledger.c.id)
    .cte("capture_entries")
)
CAPTURE_HOLD = Statement(  # one row always, like PLACE_HOLD: the hold's row, or NULLs
    select(*(func.max(column).label(column.name) for column in _closed.c)).where(
        and_(exists(select(_capture_entries.c.id)), exists(select(_spent.c.user_id)))
    )
)
