"""Operators (issue 17): ``operators``, and why an order is parked (``orders.parked``).

``gophermart_operators`` keeps each operator's name and the SHA-256 of its key (never
the key), for ``/api/admin/``. ``gophermart_orders.parked`` says why the worker parked an
order (its credit cannot be applied), which was only logged before, so that an operator
sees it beside the order. A new table and a nullable column: nothing existing is
rewritten, on any database size (``ADD COLUMN`` without a default is instant on
PostgreSQL and a plain ``ALTER TABLE`` on SQLite).

Written beside the ledger's migration 0006 (holds, reversals: another branch of issue
17) and revising it since the two were merged: the history stays one line.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-10
"""

import sqlalchemy as sa
from alembic import op

from gophermart.adapters.stores.sql.types import Id, UtcDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gophermart_operators",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("revoked_at", UtcDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_gophermart_operators"),
        sa.UniqueConstraint("name", name="uq_gophermart_operators_name"),
        sa.UniqueConstraint("key_hash", name="uq_gophermart_operators_key_hash"),
    )
    with op.batch_alter_table("gophermart_orders") as batch:
        batch.add_column(sa.Column("parked", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gophermart_orders") as batch:
        batch.drop_column("parked")
    op.drop_table("gophermart_operators")
