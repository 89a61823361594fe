"""Events (issue 18): ``events``, ``event_outbox`` and the triggers that write them.

Every ledger entry and every order status change is written as an event in the same
transaction, by the database: a trigger on ``gophermart_ledger`` (every entry, whoever
writes it: the group-committed withdrawals, the one-statement holds and captures, the
shared session, a host's transaction) and one on ``gophermart_orders`` (a status that
became PROCESSING, PROCESSED or INVALID). A rolled-back write rolls its event back.

* SQLite (one writer at a time): the triggers insert into ``gophermart_events``, whose
  AUTOINCREMENT id, taken inside the write transaction, is commit order.
* PostgreSQL: they insert into ``gophermart_event_outbox`` (its ``seq`` is write order,
  not commit order); the sequencer (stores/postgres/sequencer.py) moves committed rows
  into ``gophermart_events`` one run at a time, numbering them as it goes. The ledger's
  trigger is a statement trigger over the statement's new rows: a batch of withdrawals
  writes its events with one INSERT ... SELECT.

New tables and triggers only: nothing existing is rewritten, on any database size.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-18
"""

import sqlalchemy as sa
from alembic import context, op

from gophermart.adapters.stores.sql.types import Id, UtcDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

#: The statuses announced (order.processing, order.processed, order.invalid).
ANNOUNCED = "('PROCESSING', 'PROCESSED', 'INVALID')"


def _columns() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("entry_id", Id, nullable=True),
        sa.Column("order_id", Id, nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "gophermart_events",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        *_columns(),
        sa.PrimaryKeyConstraint("id", name="pk_gophermart_events"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "gophermart_event_outbox",
        sa.Column("seq", Id, autoincrement=True, nullable=False),
        *_columns(),
        sa.PrimaryKeyConstraint("seq", name="pk_gophermart_event_outbox"),
    )
    if op.get_context().dialect.name == "postgresql":
        _postgresql_triggers()
    else:
        _sqlite_triggers()


def _sqlite_triggers() -> None:
    op.execute(
        """
        CREATE TRIGGER gophermart_ledger_events AFTER INSERT ON gophermart_ledger
        BEGIN
            INSERT INTO gophermart_events (type, user_id, at, entry_id)
            VALUES ('ledger.' || NEW.kind, NEW.user_id, NEW.created_at, NEW.id);
        END
        """
    )
    # The order's time is the database's (SQLAlchemy's text form of a UTC instant).
    for event, when in (
        ("INSERT", f"NEW.status IN {ANNOUNCED}"),
        ("UPDATE OF status", f"NEW.status IS NOT OLD.status AND NEW.status IN {ANNOUNCED}"),
    ):
        name = "gophermart_order_events_" + event.split()[0].lower()
        op.execute(
            f"""
            CREATE TRIGGER {name} AFTER {event} ON gophermart_orders
            WHEN {when}
            BEGIN
                INSERT INTO gophermart_events (type, user_id, at, order_id)
                VALUES ('order.' || lower(NEW.status), NEW.user_id,
                        strftime('%Y-%m-%d %H:%M:%f000', 'now'), NEW.id);
            END
            """
        )


def _postgresql_triggers() -> None:
    # The functions name the outbox in our schema (when one is configured), so that
    # a host's connection with another search_path still writes ours.
    schema = context.config.attributes.get("schema")
    outbox = f'"{schema}".gophermart_event_outbox' if schema else "gophermart_event_outbox"
    op.execute(
        f"""
        CREATE FUNCTION gophermart_ledger_events() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO {outbox} (type, user_id, at, entry_id)
            SELECT 'ledger.' || kind, user_id, created_at, id FROM written ORDER BY id;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER gophermart_ledger_events AFTER INSERT ON gophermart_ledger
        REFERENCING NEW TABLE AS written
        FOR EACH STATEMENT EXECUTE FUNCTION gophermart_ledger_events()
        """
    )
    op.execute(
        f"""
        CREATE FUNCTION gophermart_order_events() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO {outbox} (type, user_id, at, order_id)
            VALUES ('order.' || lower(NEW.status), NEW.user_id, now(), NEW.id);
            RETURN NULL;
        END $$
        """
    )
    # Row triggers whose WHEN is checked without calling the function: a claim or a
    # reschedule (no status in its SET, or the same status) costs nothing.
    for event, when in (
        ("INSERT", f"NEW.status IN {ANNOUNCED}"),
        (
            "UPDATE OF status",
            f"OLD.status IS DISTINCT FROM NEW.status AND NEW.status IN {ANNOUNCED}",
        ),
    ):
        name = "gophermart_order_events_" + event.split()[0].lower()
        op.execute(
            f"""
            CREATE TRIGGER {name} AFTER {event} ON gophermart_orders
            FOR EACH ROW WHEN ({when}) EXECUTE FUNCTION gophermart_order_events()
            """
        )


def downgrade() -> None:
    for name in (
        "gophermart_order_events_update",
        "gophermart_order_events_insert",
        "gophermart_ledger_events",
    ):
        table = "gophermart_ledger" if "ledger" in name else "gophermart_orders"
        if op.get_context().dialect.name == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS gophermart_order_events()")
        op.execute("DROP FUNCTION IF EXISTS gophermart_ledger_events()")
    op.drop_table("gophermart_event_outbox")
    op.drop_table("gophermart_events")
