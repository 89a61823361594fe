"""The ledger a shop runs on: holds, reversals, refunds, adjustments, owed points.

* ``ledger`` takes the new kinds. An adjustment's amount is signed; every other kind's is
  a magnitude whose sign the kind gives (``domain/accounts.py``, ``EntryKind.sign``), and
  a reversal may move nothing from the balance when all of it became owed
  (``owed_change``). An entry may name no order (an adjustment), may carry the reason and
  the operator who caused it, and a hold's entries name their hold. An order is credited
  once and paid with points once: two partial unique indexes now say so (the unique
  ``(kind, order_number)`` pair would forbid a second reversal or a second hold of one
  order). History pages by ``(user_id, id)``.
* ``accounts`` keeps ``held`` (open holds) and ``owed`` (reversed points that were
  already spent) beside ``balance`` and ``withdrawn``; ``orders`` keeps ``reversed``.
* ``holds``: two-phase spending, one open hold per order at a time.

On PostgreSQL the new columns have constant defaults (no rewrite); SQLite copies the
ledger table once (batch mode) to change its constraints.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from typing import Any

import sqlalchemy as sa
from alembic import context, op

from gophermart.adapters.stores.sql.types import Id, UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

KINDS = (
    "'accrual', 'withdrawal', 'accrual_reversal', 'withdrawal_refund', 'adjustment', "
    "'hold', 'hold_release'"
)
AMOUNT_BY_KIND = (
    "(kind = 'adjustment' AND amount <> 0) OR "
    "(kind <> 'adjustment' AND (amount > 0 OR (amount = 0 AND owed_change > 0)))"
)


def upgrade() -> None:
    _ledger()
    _figures()
    _holds()


def _as_of_0005(name: str) -> sa.Table | None:
    """``gophermart migrate --sql`` on SQLite: batch mode copies a table it cannot
    reflect (there is no database), so it is handed the table as revision 0005 left it."""
    if not context.is_offline_mode():
        return None
    users_fk = sa.ForeignKeyConstraint(
        ["user_id"], ["gophermart_users.id"], name=f"fk_{name}_user_id_gophermart_users"
    )
    shape = {
        "gophermart_ledger": _ledger_0005,
        "gophermart_accounts": _accounts_0005,
        "gophermart_orders": _orders_0005,
    }[name]
    return sa.Table(name, sa.MetaData(), *shape(), users_fk)


def _ledger_0005() -> list[Any]:
    return [
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("order_number", sa.String(64), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.CheckConstraint(
            "kind IN ('accrual', 'withdrawal')",
            name=_as_0001_named("gophermart_ledger", "kind_known"),
        ),
        sa.CheckConstraint(
            "amount > 0", name=_as_0001_named("gophermart_ledger", "amount_positive")
        ),
        sa.UniqueConstraint("kind", "order_number", name="uq_gophermart_ledger_kind_order_number"),
        sa.Index(
            "ix_gophermart_ledger_user_id_kind_created_at",
            "user_id",
            "kind",
            "created_at",
            "id",
        ),
    ]


def _accounts_0005() -> list[Any]:
    return [
        sa.Column("user_id", Id, primary_key=True, autoincrement=False),
        sa.Column("balance", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("withdrawn", sa.BigInteger, nullable=False, server_default="0"),
        sa.CheckConstraint(
            "balance >= 0", name=_as_0001_named("gophermart_accounts", "balance_not_negative")
        ),
        sa.CheckConstraint(
            "withdrawn >= 0",
            name=_as_0001_named("gophermart_accounts", "withdrawn_not_negative"),
        ),
    ]


def _orders_0005() -> list[Any]:
    return [
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("number", sa.String(64), nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("accrual", sa.BigInteger, nullable=True),
        sa.Column("uploaded_at", UtcDateTime, nullable=False),
        sa.Column("next_attempt_at", UtcDateTime, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("open_claims", sa.Integer, nullable=False, server_default="0"),
        sa.UniqueConstraint("number", name="uq_gophermart_orders_number"),
        sa.CheckConstraint(
            "status IN ('NEW', 'PROCESSING', 'INVALID', 'PROCESSED')",
            name=_as_0001_named("gophermart_orders", "status_known"),
        ),
        sa.CheckConstraint(
            "accrual IS NULL OR (status = 'PROCESSED' AND accrual > 0)",
            name=_as_0001_named("gophermart_orders", "accrual"),
        ),
        sa.CheckConstraint(
            "(status IN ('INVALID', 'PROCESSED')) = (next_attempt_at IS NULL)",
            name=_as_0001_named("gophermart_orders", "final_not_queued"),
        ),
        sa.Index("ix_gophermart_orders_user_id_uploaded_at", "user_id", "uploaded_at", "id"),
        sa.Index(
            "ix_gophermart_orders_due",
            "next_attempt_at",
            sqlite_where=sa.text("next_attempt_at IS NOT NULL"),
        ),
    ]


def _as_0001_named(table: str, name: str) -> Any:
    """A CHECK constraint's name as revision 0001 made it: the metadata's naming
    convention applied to an already full name, so the table's name is in it twice."""
    return op.f(f"ck_{table}_ck_{table}_{name}")


def _existing(table: str, type_: str, endings: tuple[str, ...]) -> list[str]:
    """The names of ``table``'s constraints of ``type_`` ending with ``endings``, as the
    database has them: 0001 doubled the CHECK names, and a database adopted from before
    0.3 kept SQLite's unprefixed ones (offline, the names 0001 gives)."""
    if context.is_offline_mode():
        if type_ == "check":
            return [str(_as_0001_named(table, e)) for e in endings]
        return [f"uq_{table}_{e}" for e in endings]
    schema = context.get_context().opts.get("version_table_schema")
    inspector = sa.inspect(op.get_bind())
    found = (
        inspector.get_check_constraints(table, schema=schema)
        if type_ == "check"
        else inspector.get_unique_constraints(table, schema=schema)
    )
    return [c["name"] for c in found if c["name"] and c["name"].endswith(endings)]


def _ledger() -> None:
    old_checks = _existing("gophermart_ledger", "check", ("kind_known", "amount_positive"))
    old_unique = _existing("gophermart_ledger", "unique", ("kind_order_number",))
    with op.batch_alter_table(
        "gophermart_ledger", recreate="auto", copy_from=_as_of_0005("gophermart_ledger")
    ) as batch:
        batch.add_column(
            sa.Column("owed_change", sa.BigInteger, nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("reason", sa.String(500), nullable=True))
        batch.add_column(sa.Column("operator", sa.String(64), nullable=True))
        batch.add_column(sa.Column("hold_id", Id, nullable=True))
        batch.alter_column("order_number", existing_type=sa.String(64), nullable=True)
        # "withdrawal_refund" is 17 characters.
        batch.alter_column("kind", existing_type=sa.String(16), type_=sa.String(32))
        for name in old_unique:
            batch.drop_constraint(op.f(name), type_="unique")
        for name in old_checks:
            batch.drop_constraint(op.f(name), type_="check")
        batch.create_check_constraint(op.f("ck_gophermart_ledger_kind_known"), f"kind IN ({KINDS})")
        batch.create_check_constraint(op.f("ck_gophermart_ledger_amount_by_kind"), AMOUNT_BY_KIND)
    for kind in ("accrual", "withdrawal"):
        op.create_index(
            f"uq_gophermart_ledger_{kind}_order",
            "gophermart_ledger",
            ["order_number"],
            unique=True,
            postgresql_where=sa.text(f"kind = '{kind}'"),
            sqlite_where=sa.text(f"kind = '{kind}'"),
        )
    op.create_index("ix_gophermart_ledger_user_id_id", "gophermart_ledger", ["user_id", "id"])
    op.create_index(
        "ix_gophermart_ledger_hold_id",
        "gophermart_ledger",
        ["hold_id"],
        postgresql_where=sa.text("hold_id IS NOT NULL"),
        sqlite_where=sa.text("hold_id IS NOT NULL"),
    )


def _figures() -> None:
    with op.batch_alter_table(
        "gophermart_accounts", copy_from=_as_of_0005("gophermart_accounts")
    ) as batch:
        batch.add_column(sa.Column("held", sa.BigInteger, nullable=False, server_default="0"))
        batch.add_column(sa.Column("owed", sa.BigInteger, nullable=False, server_default="0"))
        batch.create_check_constraint(op.f("ck_gophermart_accounts_held_not_negative"), "held >= 0")
        batch.create_check_constraint(op.f("ck_gophermart_accounts_owed_not_negative"), "owed >= 0")
    op.create_index(  # the metrics' owed total reads only the accounts that owe
        "ix_gophermart_accounts_owing",
        "gophermart_accounts",
        ["user_id"],
        postgresql_where=sa.text("owed > 0"),
        sqlite_where=sa.text("owed > 0"),
    )
    with op.batch_alter_table(
        "gophermart_orders", copy_from=_as_of_0005("gophermart_orders")
    ) as batch:
        batch.add_column(sa.Column("reversed", sa.BigInteger, nullable=False, server_default="0"))
        batch.create_check_constraint(
            op.f("ck_gophermart_orders_reversed_within_accrual"),
            "reversed >= 0 AND reversed <= COALESCE(accrual, 0)",
        )


def _holds() -> None:
    op.create_table(
        "gophermart_holds",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("order_number", sa.String(64), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("expires_at", UtcDateTime, nullable=False),
        sa.Column("closed_at", UtcDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gophermart_holds")),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["gophermart_users.id"],
            name=op.f("fk_gophermart_holds_user_id_gophermart_users"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_gophermart_holds_amount_positive")),
        sa.CheckConstraint(
            "state IN ('open', 'captured', 'released', 'expired')",
            name=op.f("ck_gophermart_holds_state_known"),
        ),
        sa.CheckConstraint(
            "(state = 'open') = (closed_at IS NULL)",
            name=op.f("ck_gophermart_holds_closed_when_done"),
        ),
    )
    op.create_index(
        "uq_gophermart_holds_open_order",
        "gophermart_holds",
        ["order_number"],
        unique=True,
        postgresql_where=sa.text("state = 'open'"),
        sqlite_where=sa.text("state = 'open'"),
    )
    op.create_index(
        "ix_gophermart_holds_due",
        "gophermart_holds",
        ["expires_at"],
        postgresql_where=sa.text("state = 'open'"),
        sqlite_where=sa.text("state = 'open'"),
    )
    op.create_index("ix_gophermart_holds_user_id_id", "gophermart_holds", ["user_id", "id"])


def downgrade() -> None:
    op.drop_table("gophermart_holds")
    with op.batch_alter_table("gophermart_orders") as batch:
        batch.drop_constraint(op.f("ck_gophermart_orders_reversed_within_accrual"), type_="check")
        batch.drop_column("reversed")
    op.drop_index("ix_gophermart_accounts_owing", table_name="gophermart_accounts")
    with op.batch_alter_table("gophermart_accounts") as batch:
        batch.drop_constraint(op.f("ck_gophermart_accounts_owed_not_negative"), type_="check")
        batch.drop_constraint(op.f("ck_gophermart_accounts_held_not_negative"), type_="check")
        batch.drop_column("owed")
        batch.drop_column("held")
    op.drop_index("ix_gophermart_ledger_hold_id", table_name="gophermart_ledger")
    op.drop_index("ix_gophermart_ledger_user_id_id", table_name="gophermart_ledger")
    for kind in ("accrual", "withdrawal"):
        op.drop_index(f"uq_gophermart_ledger_{kind}_order", table_name="gophermart_ledger")
    with op.batch_alter_table("gophermart_ledger") as batch:
        batch.drop_constraint(op.f("ck_gophermart_ledger_amount_by_kind"), type_="check")
        batch.drop_constraint(op.f("ck_gophermart_ledger_kind_known"), type_="check")
        batch.create_check_constraint(op.f("ck_gophermart_ledger_amount_positive"), "amount > 0")
        batch.create_check_constraint(
            op.f("ck_gophermart_ledger_kind_known"), "kind IN ('accrual', 'withdrawal')"
        )
        batch.create_unique_constraint(
            op.f("uq_gophermart_ledger_kind_order_number"), ["kind", "order_number"]
        )
        batch.alter_column("order_number", existing_type=sa.String(64), nullable=False)
        batch.alter_column("kind", existing_type=sa.String(32), type_=sa.String(16))
        for column in ("hold_id", "operator", "reason", "owed_change"):
            batch.drop_column(column)
