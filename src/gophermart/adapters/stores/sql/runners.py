"""Running a :class:`~gophermart.adapters.stores.sql.statements.Statement` on one
connection. :class:`Runner` is what the shared repositories need; :class:`SqlRunner`
runs through SQLAlchemy (SQLite's store, and any SQLAlchemy connection), PostgreSQL's
store has its own straight through asyncpg (``stores/postgres/runner.py``).

Both answer in rows that are read by index (a SQLAlchemy ``Row`` or an asyncpg
``Record``), and both report a unique or foreign-key violation as :class:`Conflict`,
which the repository that ran the statement turns into what it means there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from gophermart.adapters.stores.sql.statements import Params, Statement

#: A row read by index: a SQLAlchemy ``Row`` or an asyncpg ``Record``.
Row = Any


class Conflict(Exception):
    """A unique or foreign-key violation."""


class Runner(Protocol):
    async def fetch(self, statement: Statement, params: Params) -> Sequence[Row]: ...

    async def fetchrow(self, statement: Statement, params: Params) -> Row | None: ...

    async def fetchval(self, statement: Statement, params: Params) -> Any:
        """The first column of the first row; ``None`` without a row."""
        ...

    async def execute(self, statement: Statement, params: Params) -> int:
        """How many rows the statement changed."""
        ...


#: What SQLite calls the violations that are a Conflict (a CHECK is not one: it is a bug).
_SQLITE_CONFLICTS = frozenset(
    {"SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY", "SQLITE_CONSTRAINT_FOREIGNKEY"}
)


class SqlRunner:
    """Through SQLAlchemy, which applies the column types both ways. With ``schema``
    (PostgreSQL) our tables are named in it on each statement, leaving the connection's
    own ``search_path`` alone: it may be a host's."""

    def __init__(self, conn: AsyncConnection, schema: str | None = None) -> None:
        self._conn = conn
        self._options = {"schema_translate_map": {None: schema}} if schema is not None else None

    async def _run(self, statement: Statement, params: Params) -> CursorResult[Any]:
        try:
            return await self._conn.execute(
                statement.core, statement.params(params), execution_options=self._options
            )
        except IntegrityError as exc:
            if getattr(exc.orig, "sqlite_errorname", None) in _SQLITE_CONFLICTS:
                raise Conflict(str(exc.orig)) from exc
            raise

    async def fetch(self, statement: Statement, params: Params) -> Sequence[Row]:
        return (await self._run(statement, params)).all()

    async def fetchrow(self, statement: Statement, params: Params) -> Row | None:
        return (await self._run(statement, params)).first()

    async def fetchval(self, statement: Statement, params: Params) -> Any:
        return (await self._run(statement, params)).scalar()

    async def execute(self, statement: Statement, params: Params) -> int:
        return (await self._run(statement, params)).rowcount
