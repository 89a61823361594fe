"""``GET /readyz`` on SQL: the database answers, and its schema is the one this code expects."""

from __future__ import annotations

import asyncio

import asyncpg
from alembic.script import ScriptDirectory
from sqlalchemy import text

from gophermart.adapters.sql.availability import describe, is_unavailable
from gophermart.adapters.sql.engine import Database
from gophermart.adapters.sql.migrate import alembic_config
from gophermart.adapters.sql.pg_pool import PgPool
from gophermart.application.readiness import Readiness


def alembic_head() -> str | None:
    """The newest migration this code ships (what ``migrate`` brings a database to)."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


class SqlReadiness:
    """Ready when the database answers within ``timeout`` seconds and its Alembic revision
    is this code's head (a database an older or newer release migrated is not ready for
    this one).

    On PostgreSQL the check goes through the asyncpg pool the requests use, whose
    connections are dropped at once when cut short; a SQLAlchemy connection would first
    try to close politely, which a frozen server makes last seconds longer.
    """

    def __init__(self, database: Database, pool: PgPool | None, timeout: float) -> None:
        self._database = database
        self._pool = pool
        self._timeout = timeout
        self._head = alembic_head()

    async def __call__(self) -> Readiness:
        try:
            async with asyncio.timeout(self._timeout):
                revision = await self._revision()
        except Exception as exc:
            if isinstance(exc, TimeoutError) and not str(exc):
                reason = f"no answer within {self._timeout:g}s"
            else:
                reason = describe(exc)
            return Readiness(False, {"database": f"unavailable: {reason}", "migrations": "unknown"})
        if revision == self._head:
            return Readiness(True, {"database": "ok", "migrations": f"current ({revision})"})
        found = f"at {revision}" if revision else "not migrated"
        migrations = f"database {found}, this code needs {self._head}"
        return Readiness(False, {"database": "ok", "migrations": migrations})

    async def _revision(self) -> str | None:
        """The database's Alembic revision; ``None`` if it was never migrated."""
        if self._pool is not None:
            async with self._pool.connection() as conn:
                try:
                    value = await conn.fetchval(_REVISION)
                except asyncpg.UndefinedTableError:
                    return None
            return str(value) if value is not None else None
        async with self._database.read.connect() as sa_conn:
            try:
                value = await sa_conn.scalar(text(_REVISION))
            except Exception as exc:
                if is_unavailable(exc):
                    raise
                return None  # no alembic_version table
        return str(value) if value is not None else None


_REVISION = "SELECT version_num FROM alembic_version"
