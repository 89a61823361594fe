"""The schema, as SQLAlchemy Core tables (the migrations create the same shape).

Correctness lives here as much as in Python: unique logins and order numbers, one
ledger entry per (kind, order), non-negative balances, positive amounts.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
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
    Column("balance", BigInteger, nullable=False, server_default="0"),
    Column("withdrawn", BigInteger, nullable=False, server_default="0"),
    CheckConstraint("balance >= 0", name="balance_not_negative"),
    CheckConstraint("withdrawn >= 0", name="withdrawn_not_negative"),
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
    CheckConstraint("status IN ('NEW', 'PROCESSING', 'INVALID', 'PROCESSED')", name="status_known"),
    CheckConstraint("accrual IS NULL OR (status = 'PROCESSED' AND accrual > 0)", name="accrual"),
    CheckConstraint(
        "(status IN ('INVALID', 'PROCESSED')) = (next_attempt_at IS NULL)", name="final_not_queued"
    ),
    Index(f"ix_{named('orders')}_user_id_uploaded_at", "user_id", "uploaded_at", "id"),
    Index(
        f"ix_{named('orders')}_due",
        "next_attempt_at",
        postgresql_where=text("next_attempt_at IS NOT NULL"),
        sqlite_where=text("next_attempt_at IS NOT NULL"),
    ),
)

ENTRY_KINDS = ("accrual", "withdrawal")

ledger = Table(
    named("ledger"),
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", Id, ForeignKey(USERS_ID), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("order_number", String(64), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    CheckConstraint("kind IN ('accrual', 'withdrawal')", name="kind_known"),
    CheckConstraint("amount > 0", name="amount_positive"),
    UniqueConstraint("kind", "order_number"),
    Index(f"ix_{named('ledger')}_user_id_kind_created_at", "user_id", "kind", "created_at", "id"),
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


#: Alembic's table (created and kept by Alembic, so outside ``metadata``), as Core, so
#: that reading the revision follows a schema translation like every other statement.
alembic_versions = Table(VERSION_TABLE, MetaData(), Column("version_num", String(32)))
