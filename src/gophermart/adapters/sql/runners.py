"""Running a :class:`~gophermart.adapters.sql.statements.Statement` on one connection:
through SQLAlchemy (SQLite) or straight through asyncpg (PostgreSQL's hot paths).

Both answer in rows that are read by index (a SQLAlchemy ``Row`` or an asyncpg
``Record``), and both report a unique or foreign-key violation as :class:`Conflict`,
which the repository that ran the statement turns into what it means there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from sqlalchemy import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from gophermart.adapters.sql.statements import Params, Statement

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
    """Through SQLAlchemy, which applies the column types both ways."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def _run(self, statement: Statement, params: Params) -> CursorResult[Any]:
        try:
            return await self._conn.execute(statement.core, statement.params(params))
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


_PG_CONFLICTS = (asyncpg.UniqueViolationError, asyncpg.ForeignKeyViolationError)


class PgRunner:
    """Straight through asyncpg: the statement's text compiled once, asyncpg's Records
    as they come (no per-row SQLAlchemy machinery on the hot path)."""

    def __init__(self, conn: asyncpg.Pool | PoolConnectionProxy) -> None:
        self._conn = conn

    async def _run(
        self, method: Callable[..., Awaitable[Any]], statement: Statement, params: Params
    ) -> Any:
        compiled = statement.pg
        try:
            return await method(compiled.sql, *compiled.args(params))
        except _PG_CONFLICTS as exc:
            raise Conflict(str(exc)) from exc

    async def fetch(self, statement: Statement, params: Params) -> Sequence[Row]:
        rows: Sequence[Row] = await self._run(self._conn.fetch, statement, params)
        return rows

    async def fetchrow(self, statement: Statement, params: Params) -> Row | None:
        return await self._run(self._conn.fetchrow, statement, params)

    async def fetchval(self, statement: Statement, params: Params) -> Any:
        return await self._run(self._conn.fetchval, statement, params)

    async def execute(self, statement: Statement, params: Params) -> int:
        status: str = await self._run(self._conn.execute, statement, params)
        return int(status.rpartition(" ")[2])  # "UPDATE 3"
