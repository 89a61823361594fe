"""``GET /readyz`` on SQL: the database answers, and its schema is the one this code expects."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

from gophermart.adapters.stores.outages import describe, is_unavailable
from gophermart.adapters.stores.sql.migrate import alembic_config
from gophermart.adapters.stores.sql.statements import REVISION
from gophermart.application.readiness import Readiness


def alembic_head() -> str | None:
    """The newest migration this code ships (what ``migrate`` brings a database to)."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


class SqlReadiness:
    """Ready when the database answers within ``timeout`` seconds and its Alembic revision
    is this code's head (a database an older or newer release migrated is not ready for
    this one).

    ``revision`` reads the database's revision (``None``: never migrated) the way its
    store reads fastest and gives up cleanest: PostgreSQL's goes through the asyncpg
    pool the requests use, whose connections are dropped at once when cut short (a
    SQLAlchemy connection would first try to close politely, which a frozen server
    makes last seconds longer); SQLite's through its read engine
    (:func:`revision_on_engine`).
    """

    def __init__(self, revision: Callable[[], Awaitable[str | None]], timeout: float) -> None:
        self._revision = revision
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


async def revision_on_engine(engine: AsyncEngine) -> str | None:
    """The database's Alembic revision; ``None`` if it was never migrated."""
    async with engine.connect() as conn:
        try:
            value = await conn.scalar(REVISION.core)
        except Exception as exc:
            if is_unavailable(exc):
                raise
            return None  # no alembic_version table
    return str(value) if value is not None else None
