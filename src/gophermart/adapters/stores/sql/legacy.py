"""Adopting a database that a release before 0.3 migrated: its tables were named
without our prefix (``users``, ``orders`` ...) and its Alembic history sat in the
default ``alembic_version`` table, where a shop's own history would collide with it.

Run once, before Alembic, in the migration's transaction: when our prefixed version
table is absent and ``alembic_version`` holds one of our revisions beside our tables,
every table, sequence, index and constraint of ours is renamed to its prefixed name and
the revision moves to our own version table. A shop's tables and its own
``alembic_version`` (any other revision) are never touched.
"""

from __future__ import annotations

import re

from sqlalchemy import Connection, bindparam, inspect, text

from gophermart.adapters.stores.sql.schema import VERSION_TABLE, named

#: The tables and revisions of the releases that named tables without the prefix.
LEGACY_TABLES = (
    "users",
    "accounts",
    "orders",
    "ledger",
    "service_state",
    "accrual_gate",
    "login_failures",
    "login_successes",
)
LEGACY_REVISIONS = frozenset({"0001", "0002", "0003", "0004", "0005"})
_LONGEST_FIRST = "|".join(sorted(LEGACY_TABLES, key=len, reverse=True))
#: A table's name inside another name, not already prefixed (SQLite rewrites an index's
#: SQL to name the renamed table itself).
_TOKEN = re.compile(rf"(?<![A-Za-z0-9])(?<!gophermart_)({_LONGEST_FIRST})(?![A-Za-z0-9])")


def prefixed(name: str) -> str:
    """An index's, a constraint's or a sequence's name with our tables' names prefixed."""
    return _TOKEN.sub(lambda m: named(m.group(1)), name)


def adopt_legacy(connection: Connection) -> bool:
    """Rename a pre-0.3 database's objects of ours (module docstring); ``True`` if it did."""
    tables = set(inspect(connection).get_table_names())
    if VERSION_TABLE in tables or "alembic_version" not in tables:
        return False
    revisions = list(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())
    if len(revisions) != 1 or revisions[0] not in LEGACY_REVISIONS or "ledger" not in tables:
        return False  # another application's history: not ours to move
    ours = [t for t in LEGACY_TABLES if t in tables]
    if connection.dialect.name == "postgresql":
        _rename_postgres(connection, ours)
    else:
        _rename_sqlite(connection, ours)
    connection.execute(
        text(f"CREATE TABLE {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
    )
    connection.execute(text(f"INSERT INTO {VERSION_TABLE} VALUES (:r)"), {"r": revisions[0]})
    connection.execute(text("DROP TABLE alembic_version"))
    return True


def _rename_postgres(connection: Connection, tables: list[str]) -> None:
    for table in tables:
        connection.execute(text(f'ALTER TABLE "{table}" RENAME TO "{named(table)}"'))
        connection.execute(
            text(f'ALTER SEQUENCE IF EXISTS "{table}_id_seq" RENAME TO "{named(table)}_id_seq"')
        )
    constraints = connection.execute(
        text(
            "SELECT c.conrelid::regclass::text, c.conname FROM pg_constraint c "
            "JOIN pg_class t ON t.oid = c.conrelid WHERE t.relname = ANY(:t) "
            "AND t.relnamespace = to_regnamespace(current_schema())::oid"
        ),
        {"t": [named(t) for t in tables]},
    ).all()
    for table, name in constraints:
        if prefixed(name) != name:
            connection.execute(
                text(f'ALTER TABLE {table} RENAME CONSTRAINT "{name}" TO "{prefixed(name)}"')
            )
    indexes = connection.execute(
        text(
            "SELECT indexname FROM pg_indexes"
            " WHERE schemaname = current_schema() AND tablename = ANY(:t)"
        ),
        {"t": [named(t) for t in tables]},
    ).scalars()
    for name in list(indexes):
        if prefixed(name) != name:
            connection.execute(text(f'ALTER INDEX "{name}" RENAME TO "{prefixed(name)}"'))


def _rename_sqlite(connection: Connection, tables: list[str]) -> None:
    """SQLite renames tables (and the foreign keys that name them) but not indexes, whose
    names are global: each of ours is dropped and made again under its prefixed name."""
    for table in tables:
        connection.execute(text(f'ALTER TABLE "{table}" RENAME TO "{named(table)}"'))
    indexes = connection.execute(
        text(
            "SELECT name, sql FROM sqlite_master"
            " WHERE type = 'index' AND sql IS NOT NULL AND tbl_name IN :tables"
        ).bindparams(bindparam("tables", expanding=True)),
        {"tables": [named(t) for t in tables]},
    ).all()
    for name, sql in indexes:
        connection.execute(text(f'DROP INDEX "{name}"'))
        connection.execute(text(prefixed(sql)))
