"""Initial schema: users, accounts, orders (the queue), ledger, service state, gate.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

from gophermart.adapters.stores.sql.types import Id, UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    _users_and_accounts()
    _orders()
    _ledger()
    _service_state_and_gate()


def _users_and_accounts() -> None:
    op.create_table(
        "gophermart_users",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("login", sa.String(256), nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_gophermart_users"),
        sa.UniqueConstraint("login", name="uq_gophermart_users_login"),
    )
    op.create_table(
        "gophermart_accounts",
        sa.Column("user_id", Id, nullable=False, autoincrement=False),
        sa.Column("balance", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("withdrawn", sa.BigInteger, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("user_id", name="pk_gophermart_accounts"),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["gophermart_users.id"],
            name="fk_gophermart_accounts_user_id_gophermart_users",
        ),
        sa.CheckConstraint("balance >= 0", name="ck_gophermart_accounts_balance_not_negative"),
        sa.CheckConstraint("withdrawn >= 0", name="ck_gophermart_accounts_withdrawn_not_negative"),
    )


def _orders() -> None:
    op.create_table(
        "gophermart_orders",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("number", sa.String(64), nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("accrual", sa.BigInteger, nullable=True),
        sa.Column("uploaded_at", UtcDateTime, nullable=False),
        sa.Column("next_attempt_at", UtcDateTime, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("id", name="pk_gophermart_orders"),
        sa.UniqueConstraint("number", name="uq_gophermart_orders_number"),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["gophermart_users.id"],
            name="fk_gophermart_orders_user_id_gophermart_users",
        ),
        sa.CheckConstraint(
            "status IN ('NEW', 'PROCESSING', 'INVALID', 'PROCESSED')",
            name="ck_gophermart_orders_status_known",
        ),
        sa.CheckConstraint(
            "accrual IS NULL OR (status = 'PROCESSED' AND accrual > 0)",
            name="ck_gophermart_orders_accrual",
        ),
        sa.CheckConstraint(
            "(status IN ('INVALID', 'PROCESSED')) = (next_attempt_at IS NULL)",
            name="ck_gophermart_orders_final_not_queued",
        ),
    )
    op.create_index(
        "ix_gophermart_orders_user_id_uploaded_at",
        "gophermart_orders",
        ["user_id", "uploaded_at", "id"],
    )
    op.create_index(
        "ix_gophermart_orders_due",
        "gophermart_orders",
        ["next_attempt_at"],
        postgresql_where=sa.text("next_attempt_at IS NOT NULL"),
        sqlite_where=sa.text("next_attempt_at IS NOT NULL"),
    )


def _ledger() -> None:
    op.create_table(
        "gophermart_ledger",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("order_number", sa.String(64), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_gophermart_ledger"),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["gophermart_users.id"],
            name="fk_gophermart_ledger_user_id_gophermart_users",
        ),
        sa.CheckConstraint(
            "kind IN ('accrual', 'withdrawal')", name="ck_gophermart_ledger_kind_known"
        ),
        sa.CheckConstraint("amount > 0", name="ck_gophermart_ledger_amount_positive"),
        sa.UniqueConstraint("kind", "order_number", name="uq_gophermart_ledger_kind_order_number"),
    )
    op.create_index(
        "ix_gophermart_ledger_user_id_kind_created_at",
        "gophermart_ledger",
        ["user_id", "kind", "created_at", "id"],
    )


def _service_state_and_gate() -> None:
    op.create_table(
        "gophermart_service_state",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_gophermart_service_state"),
    )
    gate = op.create_table(
        "gophermart_accrual_gate",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("paused_until", UtcDateTime, nullable=True),
        sa.Column("per_minute", sa.Integer, nullable=True),
        sa.Column("next_slot", UtcDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_gophermart_accrual_gate"),
        sa.CheckConstraint("id = 1", name="ck_gophermart_accrual_gate_single_row"),
    )
    op.bulk_insert(gate, [{"id": 1}])


def downgrade() -> None:
    for table in (
        "gophermart_accrual_gate",
        "gophermart_service_state",
        "gophermart_ledger",
        "gophermart_orders",
        "gophermart_accounts",
        "gophermart_users",
    ):
        op.drop_table(table)
