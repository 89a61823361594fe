"""Lockouts the owner survives: ``login_successes``.

Guessing at one login from many addresses locked it for everyone, its owner included,
for as long as the guessing went on (issue 15). The addresses and devices a login was
logged in to from are kept here, so the policy can exempt them from the login's lock.
A new table: nothing existing is rewritten, on any database size.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from gophermart.adapters.stores.sql.types import UtcDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gophermart_login_successes",
        sa.Column("login", sa.String(256), nullable=False),
        sa.Column("key", sa.String(160), nullable=False),
        sa.Column("last_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("login", "key", name="pk_gophermart_login_successes"),
    )
    op.create_index(
        "ix_gophermart_login_successes_last_at", "gophermart_login_successes", ["last_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_gophermart_login_successes_last_at", table_name="gophermart_login_successes")
    op.drop_table("gophermart_login_successes")
