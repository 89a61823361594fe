"""The migrations build exactly the schema the code declares (``sql/schema.py``), on
SQLite and PostgreSQL: Alembic's comparison of a migrated database with the metadata
finds nothing to add, drop or change. The two are written by hand; this holds them
together."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from gophermart import Gophermart
from gophermart.adapters.stores.sql.schema import VERSION_TABLE, metadata
from gophermart.testing import TEST_SECRET
from tests.integration.test_shared_database import engine_for


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection,
        opts={
            "compare_type": True,
            "include_name": lambda name, kind, _parents: (
                not (kind == "table" and name == VERSION_TABLE)
            ),
        },
    )
    found = compare_metadata(context, metadata)
    # SQLite reflects no CHECK constraints' changes and PostgreSQL no partial-index
    # predicates through autogenerate; what is left must be empty.
    return [d for d in found if not _expected_noise(d)]


def _expected_noise(difference: Any) -> bool:
    """Alembic reports a server default written '0' by the migration and "'0'::bigint"
    by reflection as changed on some versions: not a difference in the schema."""
    return isinstance(difference, list) and all(d[0] == "modify_default" for d in difference)


async def test_a_migrated_database_is_the_declared_schema(database_uri: str) -> None:
    async with Gophermart.open(database_uri, secret=TEST_SECRET):
        pass
    engine = engine_for(database_uri)
    try:
        async with engine.connect() as conn:
            differences = await conn.run_sync(_differences)
    finally:
        await engine.dispose()
    assert differences == [], differences
