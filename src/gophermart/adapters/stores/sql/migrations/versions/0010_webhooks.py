"""Webhooks (issue 18): ``webhooks`` and ``webhook_deliveries``.

``gophermart_webhooks`` holds the endpoints operators register (URL, event filter,
signing secret, the cursor of the event feed fanned out to it); a deleted one keeps its
row. ``gophermart_webhook_deliveries`` holds one row per (endpoint, event): the bytes
to POST, the state (pending, delivered, failed) and the queue's columns, with partial
indexes over the pending rows only. New tables: nothing existing is rewritten.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

from gophermart.adapters.stores.sql.types import Id, UtcDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_D = "gophermart_webhook_deliveries"
_PENDING = sa.text("state = 'pending'")
_DELIVERED = sa.text("state = 'delivered'")


def upgrade() -> None:
    op.create_table(
        "gophermart_webhooks",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("events", sa.Text, nullable=False),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("cursor", sa.BigInteger, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("deleted_at", UtcDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_gophermart_webhooks"),
    )
    op.create_table(
        _D,
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("endpoint_id", Id, nullable=False),
        sa.Column("event_id", sa.BigInteger, nullable=False),
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("event_at", UtcDateTime, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", UtcDateTime, nullable=True),
        sa.Column("first_attempt_at", UtcDateTime, nullable=True),
        sa.Column("last_attempt_at", UtcDateTime, nullable=True),
        sa.Column("last_status", sa.Integer, nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("delivered_at", UtcDateTime, nullable=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name=f"pk_{_D}"),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["gophermart_webhooks.id"],
            name=f"fk_{_D}_endpoint",
        ),
        sa.CheckConstraint(
            "state IN ('pending', 'delivered', 'failed')", name=f"ck_{_D}_state_known"
        ),
        sa.CheckConstraint(
            "(state = 'pending') = (next_attempt_at IS NOT NULL)", name=f"ck_{_D}_pending_queued"
        ),
    )
    _delivery_indexes()


def _delivery_indexes() -> None:
    """The deliveries' unique key, the queue's indexes and retention's."""
    op.create_index(f"uq_{_D}_endpoint_event", _D, ["endpoint_id", "event_id"], unique=True)
    op.create_index(f"ix_{_D}_event_id", _D, ["event_id"])
    op.create_index(
        f"ix_{_D}_due",
        _D,
        ["endpoint_id", "next_attempt_at"],
        postgresql_where=_PENDING,
        sqlite_where=_PENDING,
    )
    op.create_index(
        f"ix_{_D}_delivered_at",
        _D,
        ["delivered_at"],
        postgresql_where=_DELIVERED,
        sqlite_where=_DELIVERED,
    )
    op.create_index(
        f"ix_{_D}_user_order",
        _D,
        ["endpoint_id", "user_id", "event_id"],
        postgresql_where=_PENDING,
        sqlite_where=_PENDING,
    )


def downgrade() -> None:
    for index in ("user_order", "delivered_at", "due", "event_id", "endpoint_event"):
        op.drop_index(f"{'uq' if index == 'endpoint_event' else 'ix'}_{_D}_{index}", table_name=_D)
    op.drop_table(_D)
    op.drop_table("gophermart_webhooks")
