"""Crash pickups become visible: ``orders.open_claims``.

A worker's claim used to be only a later ``next_attempt_at`` (the lease), the same column
as the retry timer, so a claim could not tell an expired lease from a due retry and
``gophermart_accrual_lease_expired_total`` never moved. A claim now counts itself up and a
save or reschedule sets the count back to 0; a claim that finds it above 0 took the order
over from a worker that died, or failed, holding it.

Adding a column with a constant default is instant on PostgreSQL ≥ 11 (no table rewrite)
and a plain ``ALTER TABLE … ADD COLUMN`` on SQLite, whatever the size of the queue.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gophermart_orders") as batch:
        batch.add_column(sa.Column("open_claims", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("gophermart_orders") as batch:
        batch.drop_column("open_claims")
