"""The accrual gate's learnt rate expires: ``accrual_gate.rate_expires_at``.

A rate limit learnt from a 429 is a hint, not a setting: past ``rate_expires_at`` the
workers forget it and go back to full speed (and learn it again from the next 429).
A rate learnt before this revision had no end, so it is forgotten here.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

from gophermart.adapters.stores.sql.types import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gophermart_accrual_gate") as batch:
        batch.add_column(sa.Column("rate_expires_at", UtcDateTime, nullable=True))
    op.execute("UPDATE gophermart_accrual_gate SET per_minute = NULL, next_slot = NULL")


def downgrade() -> None:
    with op.batch_alter_table("gophermart_accrual_gate") as batch:
        batch.drop_column("rate_expires_at")
