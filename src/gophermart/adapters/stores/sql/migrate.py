"""Applying the Alembic migrations at start-up, programmatically (no alembic.ini)."""

from __future__ import annotations

import io
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from gophermart.adapters.stores.sql.engine import Database
from gophermart.adapters.stores.sql.legacy import adopt_legacy

MIGRATIONS = Path(__file__).with_name("migrations")

#: Any constant: serialises concurrent start-ups of several processes on PostgreSQL.
_MIGRATION_LOCK = 7_466_375_201


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


async def migrate(engine: AsyncEngine | Database) -> None:
    """Bring the schema to the newest revision (idempotent; safe from many processes).

    ``engine`` is any engine on the database (a host's own one too; on SQLite, one that
    writes, i.e. set up with ``configure_sqlite(engine, immediate=True)``), or a
    :class:`Database`, whose write engine is used.
    """

    def upgrade(connection: Connection) -> None:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
        adopt_legacy(connection)  # a database an earlier release migrated: our names
        command.upgrade(alembic_config(connection), "head")

    if isinstance(engine, Database):
        engine = engine.write
    async with engine.begin() as conn:
        await conn.run_sync(upgrade)


def upgrade_sql(dialect: str) -> str:
    """The SQL that :func:`migrate` runs on an empty database of ``dialect``
    (``sqlite`` or ``postgresql``), for a DBA to read or run: Alembic's offline mode."""
    config = alembic_config()
    config.attributes["dialect"] = dialect
    config.output_buffer = io.StringIO()
    command.upgrade(config, "head", sql=True)
    return str(config.output_buffer.getvalue())
