"""Login throttling's counters, shared by every process: login_failures.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

from gophermart.adapters.stores.sql.types import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gophermart_login_failures",
        sa.Column("key", sa.String(160), nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("last_at", UtcDateTime, nullable=False),
        sa.Column("locked_until", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_gophermart_login_failures"),
    )


def downgrade() -> None:
    op.drop_table("gophermart_login_failures")
