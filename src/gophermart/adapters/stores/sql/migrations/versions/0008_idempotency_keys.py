"""Idempotency keys (issue 17): ``idempotency_keys``.

``gophermart_idempotency_keys`` keeps, per caller (``user:42``, ``operator:ops``) and
``Idempotency-Key``, the fingerprint of the request that claimed the key and, once
stored, its answer (status, body, content type; status NULL while it runs). Keys are
pruned by age (``created_at``, indexed) after 24 hours. A new table: nothing existing
is rewritten, on any database size.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-11
"""

import sqlalchemy as sa
from alembic import op

from gophermart.adapters.stores.sql.types import UtcDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gophermart_idempotency_keys",
        sa.Column("caller", sa.String(300), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("status", sa.Integer, nullable=True),
        sa.Column("body", sa.LargeBinary, nullable=True),
        sa.Column("content_type", sa.String(255), nullable=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("caller", "key", name="pk_gophermart_idempotency_keys"),
    )
    op.create_index(
        "ix_gophermart_idempotency_keys_created_at",
        "gophermart_idempotency_keys",
        ["created_at"],
    )


def downgrade() -> None:
    op.drop_index(
        "ix_gophermart_idempotency_keys_created_at", table_name="gophermart_idempotency_keys"
    )
    op.drop_table("gophermart_idempotency_keys")
