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


def alembic_config(connection: Connection | None = None, schema: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    config.attributes["schema"] = schema
    return config


def in_schema(schema: str, scope: str = "LOCAL") -> list[str]:
    """What puts a migration in our PostgreSQL ``schema``: created if absent, and first
    and only on the ``search_path``, so that every name the migrations create or read
    (theirs and Alembic's) is there. ``SET LOCAL`` (for the transaction): a host's
    borrowed connection gets its own path back at commit; ``SESSION`` for a script."""
    return [f'CREATE SCHEMA IF NOT EXISTS "{schema}"', f'SET {scope} search_path TO "{schema}"']


async def migrate(engine: AsyncEngine | Database, *, schema: str | None = None) -> None:
    """Bring the schema to the newest revision (idempotent; safe from many processes).

    ``engine`` is any engine on the database (a host's own one too; on SQLite, one that
    writes, i.e. set up with ``configure_sqlite(engine, immediate=True)``), or a
    :class:`Database`, whose write engine and schema are used. ``schema``: PostgreSQL's
    schema for our tables (``None``: the connection's ``search_path``).
    """

    def upgrade(connection: Connection) -> None:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
            for statement in in_schema(schema) if schema is not None else ():
                connection.execute(text(statement))
        if schema is None:  # releases before 0.3 had no schema option
            adopt_legacy(connection)  # a database an earlier release migrated: our names
        command.upgrade(alembic_config(connection, schema), "head")

    if isinstance(engine, Database):
        schema = engine.schema
        engine = engine.write
    async with engine.begin() as conn:
        await conn.run_sync(upgrade)


def upgrade_sql(dialect: str, schema: str | None = None) -> str:
    """The SQL that :func:`migrate` runs on an empty database of ``dialect``
    (``sqlite`` or ``postgresql``; with ``schema``, in that PostgreSQL schema), for a
    DBA to read or run: Alembic's offline mode."""
    config = alembic_config(schema=schema)
    config.attributes["dialect"] = dialect
    config.output_buffer = io.StringIO()
    for statement in in_schema(schema, "SESSION") if schema is not None else ():
        config.output_buffer.write(statement + ";\n\n")
    command.upgrade(config, "head", sql=True)
    return str(config.output_buffer.getvalue())
