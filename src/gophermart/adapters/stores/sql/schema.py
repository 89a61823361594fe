"""The schema, as SQLAlchemy Core tables (the migrations create the same shape).

Correctness lives here as much as in Python: unique logins and order numbers, one
ledger entry per (kind, order), non-negative balances, positive amounts.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ColumnElement,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    literal_column,
    text,
)

from gophermart.adapters.stores.sql.types import Id, UtcDateTime

#: Every table of ours is named with this prefix: Gophermart shares a database with a
#: shop's own tables (``users``, ``orders``, ``accounts`` ...) and never touches them
#: (SPEC "Embedding"). The Python names (``users``, ``orders`` ...) stay short.
PREFIX = "gophermart_"

#: Alembic's version table of ours, beside the shop's own ``alembic_version``.
VERSION_TABLE = PREFIX + "alembic_version"


def named(table: str) -> str:
    return PREFIX + table


USERS_ID = named("users") + ".id"

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

users = Table(
    named("users"),
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("login", String(256), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

accounts = Table(
    named("accounts"),
    metadata,
    Column("user_id", Id, ForeignKey(USERS_ID), primary_key=True, autoincrement=False),
    # What can be spent or held ("current"), what was spent, what open holds keep, and
    # what reversals took beyond the balance (paid off first from later credits).
    Column("balance", BigInteger, nullable=False, server_default="0"),
    Column("withdrawn", BigInteger, nullable=False, server_default="0"),
    Column("held", BigInteger, nullable=False, server_default="0"),
    Column("owed", BigInteger, nullable=False, server_default="0"),
    CheckConstraint("balance >= 0", name="balance_not_negative"),
    CheckConstraint("withdrawn >= 0", name="withdrawn_not_negative"),
    CheckConstraint("held >= 0", name="held_not_negative"),
    CheckConstraint("owed >= 0", name="owed_not_negative"),
    Index(
        f"ix_{named('accounts')}_owing",
        "user_id",
        postgresql_where=text("owed > 0"),
        sqlite_where=text("owed > 0"),
    ),
)

ORDER_STATUSES = ("NEW", "PROCESSING", "INVALID", "PROCESSED")

orders = Table(
    named("orders"),
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("number", String(64), nullable=False, unique=True),
    Column("user_id", Id, ForeignKey(USERS_ID), nullable=False),
    Column("status", String(16), nullable=False),
    Column("accrual", BigInteger, nullable=True),
    Column("uploaded_at", UtcDateTime, nullable=False),
    # The queue: when a non-final order is next due for polling (NULL once final).
    Column("next_attempt_at", UtcDateTime, nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    # Claims of this order not yet ended by a save or a reschedule. A claim that finds one
    # still open took the order over after that claim's lease ran out (a worker died, or
    # failed, holding it): the crash pickups gophermart_accrual_lease_expired counts.
    Column("open_claims", Integer, nullable=False, server_default="0"),
    # What reversals took back of the accrual (never more than it).
    Column("reversed", BigInteger, nullable=False, server_default="0"),
    # Why the worker parked the order (its credit cannot be applied), shown to operators;
    # NULL once it is saved, rescheduled without a reason, or retried (migration 0007).
    Column("parked", Text, nullable=True),
    CheckConstraint("status IN ('NEW', 'PROCESSING', 'INVALID', 'PROCESSED')", name="status_known"),
    CheckConstraint("accrual IS NULL OR (status = 'PROCESSED' AND accrual > 0)", name="accrual"),
    CheckConstraint(
        "(status IN ('INVALID', 'PROCESSED')) = (next_attempt_at IS NULL)", name="final_not_queued"
    ),
    CheckConstraint(
        "reversed >= 0 AND reversed <= COALESCE(accrual, 0)", name="reversed_within_accrual"
    ),
    Index(f"ix_{named('orders')}_user_id_uploaded_at", "user_id", "uploaded_at", "id"),
    Index(
        f"ix_{named('orders')}_due",
        "next_attempt_at",
        postgresql_where=text("next_attempt_at IS NOT NULL"),
        sqlite_where=text("next_attempt_at IS NOT NULL"),
    ),
)

ENTRY_KINDS = (
    "accrual",
    "withdrawal",
    "accrual_reversal",
    "withdrawal_refund",
    "adjustment",
    "hold",
    "hold_release",
)
_KINDS_SQL = ", ".join(f"'{k}'" for k in ENTRY_KINDS)


def of_kind(table: Any, kind: str) -> ColumnElement[bool]:
    """``table.kind = '<kind>'`` with the kind written into the SQL, not bound: a partial
    index (``WHERE kind = 'withdrawal'``) serves only a predicate the planner can see
    matches it, in every plan of a statement prepared once."""
    column: ColumnElement[str] = table.c.kind
    return column == literal_column(f"'{kind}'")


def _once_per_order(kind: str) -> Index:
    """An order is credited once, and paid with points once: ever."""
    only = text(f"kind = '{kind}'")
    return Index(
        f"uq_{named('ledger')}_{kind}_order",
        "order_number",
        unique=True,
        postgresql_where=only,
        sqlite_where=only,
    )


ledger = Table(
    named("ledger"),
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", Id, ForeignKey(USERS_ID), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("order_number", String(64), nullable=True),  # an adjustment names none
    # A magnitude, signed by the kind (EntryKind.sign), but an adjustment's: signed.
    Column("amount", BigInteger, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    # What the entry added to (or paid off) the account's owed points.
    Column("owed_change", BigInteger, nullable=False, server_default="0"),
    Column("reason", String(500), nullable=True),
    Column("operator", String(64), nullable=True),  # the operator key's name, if one
    Column("hold_id", Id, nullable=True),  # a hold's and its release's hold
    CheckConstraint(f"kind IN ({_KINDS_SQL})", name="kind_known"),
    CheckConstraint(
        "(kind = 'adjustment' AND amount <> 0) OR "
        "(kind <> 'adjustment' AND (amount > 0 OR (amount = 0 AND owed_change > 0)))",
        name="amount_by_kind",
    ),
    _once_per_order("accrual"),
    _once_per_order("withdrawal"),
    Index(f"ix_{named('ledger')}_user_id_kind_created_at", "user_id", "kind", "created_at", "id"),
    Index(f"ix_{named('ledger')}_user_id_id", "user_id", "id"),
    # A hold's entries (reconcile's check of every hold), only the entries that have one.
    Index(
        f"ix_{named('ledger')}_hold_id",
        "hold_id",
        postgresql_where=text("hold_id IS NOT NULL"),
        sqlite_where=text("hold_id IS NOT NULL"),
    ),
)

HOLD_STATES = ("open", "captured", "released", "expired")
_OPEN = text("state = 'open'")

holds = Table(
    named("holds"),
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", Id, ForeignKey(USERS_ID), nullable=False),
    Column("order_number", String(64), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("closed_at", UtcDateTime, nullable=True),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("state IN ('open', 'captured', 'released', 'expired')", name="state_known"),
    CheckConstraint("(state = 'open') = (closed_at IS NULL)", name="closed_when_done"),
    Index(
        f"uq_{named('holds')}_open_order",
        "order_number",
        unique=True,
        postgresql_where=_OPEN,
        sqlite_where=_OPEN,
    ),
    Index(f"ix_{named('holds')}_due", "expires_at", postgresql_where=_OPEN, sqlite_where=_OPEN),
    Index(f"ix_{named('holds')}_user_id_id", "user_id", "id"),
)

service_state = Table(
    named("service_state"),
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

accrual_gate = Table(
    named("accrual_gate"),
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("paused_until", UtcDateTime, nullable=True),
    Column("per_minute", Integer, nullable=True),
    Column("next_slot", UtcDateTime, nullable=True),
    # A learnt per_minute is forgotten after this instant (migration 0002).
    Column("rate_expires_at", UtcDateTime, nullable=True),
    CheckConstraint("id = 1", name="single_row"),
)

# Login throttling's counters (application.throttling), shared by every process. Keys are
# "pair:<address> <login>", "login:<login>", "client:<address>"; rows are forgotten
# (and deleted now and then) once quiet for the policy's window.
login_failures = Table(
    named("login_failures"),
    metadata,
    Column("key", String(160), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("last_at", UtcDateTime, nullable=False),
    Column("locked_until", UtcDateTime, nullable=False),
)

# Where each login was logged in to successfully from (application.throttling): keys are
# "addr:<address>" and "device:<sha256 of a device token>". Such an address or device is
# the owner's, exempt from the login's lock (not from its pair's). A few per login (the
# policy's ``known_per_login``, most recent kept); forgotten after ``remember_for``.
login_successes = Table(
    named("login_successes"),
    metadata,
    Column("login", String(256), primary_key=True),
    Column("key", String(160), primary_key=True),
    Column("last_at", UtcDateTime, nullable=False),
    Index(f"ix_{named('login_successes')}_last_at", "last_at"),
)

# Operators of /api/admin/ (application.operators): a name and the SHA-256 of its key
# (never the key). A revoked name keeps its row, revoked_at set, until it is given a new
# key (migration 0007).
operators = Table(
    named("operators"),
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(256), nullable=False, unique=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
)


# Idempotency keys (application.idempotency): each caller's keys ("user:42",
# "operator:ops") with the fingerprint of the request that claimed the key, and its
# answer once stored (status NULL while the request runs). Pruned by age (migration 0008).
idempotency_keys = Table(
    named("idempotency_keys"),
    metadata,
    Column("caller", String(300), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("status", Integer, nullable=True),
    Column("body", LargeBinary, nullable=True),
    Column("content_type", String(255), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Index(f"ix_{named('idempotency_keys')}_created_at", "created_at"),
)

# Webhook endpoints (application/webhooks.py, migration 0010): where events are POSTed.
# ``secret`` signs the POSTs, so it is kept as it is (README "Webhooks" says why);
# ``cursor`` is the last event id recorded for the endpoint (moved by compare-and-set in
# the transaction that records the deliveries); a deleted endpoint keeps its row and
# deliveries, ``deleted_at`` set.
webhooks = Table(
    named("webhooks"),
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("url", String(2048), nullable=False),
    # The event filter's patterns, space-separated (a pattern never holds a space).
    Column("events", Text, nullable=False),
    Column("secret", String(128), nullable=False),
    Column("cursor", BigInteger, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("deleted_at", UtcDateTime, nullable=True),
    # The worker process streaming its events, and its lease (migration 0011).
    Column("stream_owner", String(64), nullable=True),
    Column("stream_until", UtcDateTime, nullable=True),
)

#: A delivery still to be sent (the partial indexes' predicate, written into the SQL).
IS_PENDING = text("state = 'pending'")
IS_DELIVERED = text("state = 'delivered'")

# One event to one endpoint (application/webhook_delivery.py): the bytes to POST (kept
# here, so pruning events never loses what is still to be sent), its state, and the
# queue's columns: ``next_attempt_at`` is when it is due, or until when a worker's lease
# holds it; ``attempts`` counts every POST (and guards an outcome against a takeover),
# ``failures`` those of the current retry window, which began at ``first_attempt_at``.
webhook_deliveries = Table(
    named("webhook_deliveries"),
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    # Named: the convention's name would pass PostgreSQL's 63 characters.
    Column(
        "endpoint_id",
        Id,
        ForeignKey(named("webhooks") + ".id", name=f"fk_{named('webhook_deliveries')}_endpoint"),
        nullable=False,
    ),
    Column("event_id", BigInteger, nullable=False),
    Column("user_id", BigInteger, nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("event_at", UtcDateTime, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("failures", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", UtcDateTime, nullable=True),
    Column("first_attempt_at", UtcDateTime, nullable=True),
    Column("last_attempt_at", UtcDateTime, nullable=True),
    Column("last_status", Integer, nullable=True),
    Column("last_error", String(500), nullable=True),
    Column("delivered_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    CheckConstraint("state IN ('pending', 'delivered', 'failed')", name="state_known"),
    CheckConstraint("(state = 'pending') = (next_attempt_at IS NOT NULL)", name="pending_queued"),
    # One delivery per (endpoint, event): a second settle cannot invent a duplicate,
    # and the listing pages by it.
    Index(
        f"uq_{named('webhook_deliveries')}_endpoint_event", "endpoint_id", "event_id", unique=True
    ),
    Index(f"ix_{named('webhook_deliveries')}_event_id", "event_id"),
    # The queue: what is due per endpoint, and each user's oldest pending delivery.
    Index(
        f"ix_{named('webhook_deliveries')}_due",
        "endpoint_id",
        "next_attempt_at",
        postgresql_where=IS_PENDING,
        sqlite_where=IS_PENDING,
    ),
    # Retention: delivered deliveries by age (Webhooks.prune).
    Index(
        f"ix_{named('webhook_deliveries')}_delivered_at",
        "delivered_at",
        postgresql_where=IS_DELIVERED,
        sqlite_where=IS_DELIVERED,
    ),
    Index(
        f"ix_{named('webhook_deliveries')}_user_order",
        "endpoint_id",
        "user_id",
        "event_id",
        postgresql_where=IS_PENDING,
        sqlite_where=IS_PENDING,
    ),
)

# Events (SPEC "Events", migration 0009): every ledger entry and every order status
# change, written in the same transaction by the database itself (triggers on
# ``ledger`` and ``orders``: no writer can forget one). ``events`` is the feed: ``id``
# increases in commit order. SQLite's triggers write it directly (one writer: an
# autoincrement taken inside the write transaction is commit order); PostgreSQL's write
# ``event_outbox`` (``seq``: write order, not commit order), whose committed rows one
# sequencer at a time moves into ``events`` (stores/postgres/sequencer.py). A row names
# its entry or its order; the payload is read from them (domain/events.py maps it).
_EVENT_COLUMNS = (
    ("type", String(40)),
    ("user_id", Id),
    ("at", UtcDateTime),
)


def _event_columns() -> list[Column[Any]]:
    return [
        *(Column(name, kind, nullable=False) for name, kind in _EVENT_COLUMNS),
        Column("entry_id", Id, nullable=True),  # a ledger event's entry
        Column("order_id", Id, nullable=True),  # an order event's order
    ]


events = Table(
    named("events"),
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    *_event_columns(),
    sqlite_autoincrement=True,  # an id is never reused, even after retention's pruning
)

event_outbox = Table(
    named("event_outbox"),
    metadata,
    Column("seq", Id, primary_key=True, autoincrement=True),
    *_event_columns(),
)

#: Alembic's table (created and kept by Alembic, so outside ``metadata``), as Core, so
#: that reading the revision follows a schema translation like every other statement.
alembic_versions = Table(VERSION_TABLE, MetaData(), Column("version_num", String(32)))


#: An open hold (the partial indexes' predicate, written into the SQL: see of_kind).
IS_OPEN = holds.c.state == literal_column("'open'")
#: An account that owes points (the partial index's predicate, written the same way).
IS_OWING = accounts.c.owed > literal_column("0")
