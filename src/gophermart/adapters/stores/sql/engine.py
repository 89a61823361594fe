"""The SQLAlchemy engines of one SQL database, and the start-up check.

The SQL stores run their cold paths (migrations, the accrual gate, the login throttle,
the stored secret, reconcile, the queue probe) through SQLAlchemy Core on these
engines; SQLite's units of work and reads too. How each engine is made is its store's
business (``stores/sqlite/engine.py``, ``stores/postgres/engine.py``); this module
holds what both share.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gophermart.adapters.stores.outages import describe
from gophermart.application.errors import StoreUnavailable


class Database:
    """A *write* engine and a *read* engine (the same one unless the store wants two),
    shown as ``display`` in messages.

    ``schema``: PostgreSQL's schema of our tables, when configured (the engines already
    resolve our table names there; migrations create it). ``owned``: ours to dispose; a
    host's borrowed engine is left alone. ``unbounded``
    makes this database again without our timeouts, for start-up work (a migration may
    wait for another process's); ``None`` when the engines are a host's, whose settings
    are the host's. ``long``: the engine of work that may rightly run long (the ledger
    audit), when the others bound each statement.
    """

    def __init__(
        self,
        write: AsyncEngine,
        read: AsyncEngine | None = None,
        *,
        display: str,
        owned: bool = True,
        unbounded: Callable[[], Database] | None = None,
        schema: str | None = None,
        long: AsyncEngine | None = None,
    ) -> None:
        self.write = write
        self.read = read or write
        #: For work that may rightly run long (the ledger audit): no per-statement bound.
        self.long = long or self.read
        self.display = display
        self.schema = schema
        self._owned = owned
        self._unbounded = unbounded

    @property
    def is_postgres(self) -> bool:
        return self.write.dialect.name == "postgresql"

    def unbounded(self) -> Database:
        """This database without our timeouts (dispose it after use), or this one."""
        return self._unbounded() if self._unbounded is not None else self

    async def check(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Fail fast, with one readable reason, when the database cannot be reached."""
        try:
            async with asyncio.timeout(timeout):
                async with self.read.connect() as conn:
                    await conn.execute(text("SELECT 1"))
        except TimeoutError:
            raise StoreUnavailable(f"{self.display} did not answer within {timeout:.0f}s") from None
        except Exception as exc:
            raise StoreUnavailable(f"cannot use {self.display}: {describe(exc)}") from None

    async def dispose(self, close: bool = True) -> None:
        """``close=False`` drops the pooled connections without a goodbye round trip."""
        if not self._owned:
            return
        for engine in dict.fromkeys((self.write, self.read, self.long)):
            await engine.dispose(close=close)
