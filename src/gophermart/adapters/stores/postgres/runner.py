"""Running a shared :class:`~gophermart.adapters.stores.sql.statements.Statement`
straight through asyncpg: PostgreSQL's hot paths.

Each statement is compiled once for the ``postgresql+asyncpg`` dialect (``$n``
placeholders), executed with asyncpg's per-connection statement cache, and its rows
read from asyncpg's Records as they come: no per-row SQLAlchemy machinery, and no
second, hand-written copy of any statement.
"""

from __future__ import annotations

import operator
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from sqlalchemy import ARRAY, Boolean, Integer, LargeBinary, String
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.types import NullType

from gophermart.adapters.stores.sql.runners import Conflict, Row
from gophermart.adapters.stores.sql.statements import Core, Params, Statement
from gophermart.adapters.stores.sql.types import UtcDateTime

_ASYNCPG = PGDialect_asyncpg()  # type: ignore[no-untyped-call]

#: Types whose values asyncpg hands over exactly as SQLAlchemy's result processing would
#: on SQLite (timestamptz arrives tz-aware UTC, as UtcDateTime promises), and takes as
#: bind values as they are (aware datetimes: the domain makes no naive ones, which
#: UtcDateTime refuses on SQLite). Rows are mapped from asyncpg's Records with no
#: processing, so a column of any other type must not reach the asyncpg path unnoticed.
_ASYNCPG_NATIVE = (Integer, String, UtcDateTime, Boolean, LargeBinary, NullType)


class PgCompiled:
    """A statement's PostgreSQL text and how to order its arguments for asyncpg."""

    __slots__ = ("_fixed", "_pick", "sql")

    def __init__(self, core: Core) -> None:
        compiled = core.compile(dialect=_ASYNCPG)
        if compiled.post_compile_params:  # rendered per execution: not compilable once
            raise ValueError(f"expanding parameters in {compiled.string!r}")
        _check_native(compiled.binds[n].type for n in compiled.positiontup or ())
        _check_native(c.type for c in getattr(core, "exported_columns", ()))
        names = list(compiled.positiontup or ())
        self.sql: str = compiled.string
        # Parameters the statement itself carries (literals such as 'withdrawal').
        self._fixed = {n: compiled.binds[n].value for n in names if not compiled.binds[n].required}
        self._pick: Callable[[Params], Sequence[Any]] = (
            operator.itemgetter(*names) if len(names) > 1 else lambda p: [p[n] for n in names]
        )

    def args(self, params: Params) -> Sequence[Any]:
        """The positional arguments, ``$1`` first."""
        return self._pick({**self._fixed, **params} if self._fixed else params)


def _check_native(types: Any) -> None:
    for type_ in types:
        if isinstance(type_, ARRAY):  # asyncpg takes and gives lists of the item type
            type_ = type_.item_type
        if not isinstance(type_, _ASYNCPG_NATIVE):
            raise TypeError(f"{type_!r} needs type processing that the asyncpg path skips")


_COMPILED: dict[Statement, PgCompiled] = {}


def compiled(statement: Statement) -> PgCompiled:
    """``statement`` compiled for asyncpg, once (statements are module constants)."""
    found = _COMPILED.get(statement)
    if found is None:
        found = _COMPILED[statement] = PgCompiled(statement.core)
    return found


_PG_CONFLICTS = (asyncpg.UniqueViolationError, asyncpg.ForeignKeyViolationError)


class PgRunner:
    """Straight through asyncpg: the statement's text compiled once, asyncpg's Records
    as they come (no per-row SQLAlchemy machinery on the hot path)."""

    def __init__(self, conn: asyncpg.Pool | PoolConnectionProxy) -> None:
        self._conn = conn

    async def _run(
        self, method: Callable[..., Awaitable[Any]], statement: Statement, params: Params
    ) -> Any:
        compiled_ = compiled(statement)
        try:
            return await method(compiled_.sql, *compiled_.args(params))
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
