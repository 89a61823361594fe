"""The unit of work on PostgreSQL, straight through asyncpg: the hot write paths.

The shared repositories (repositories.py) on a session that runs each statement as
compiled once for asyncpg (statements.py), with fewer round trips and far less Python
per statement than SQLAlchemy's execution machinery:

* The transaction begins at the first *write*. Under READ COMMITTED every statement
  sees the latest committed data whether or not a transaction is open, so reads before
  the first write lose nothing by running outside one, and a read-only unit of work
  (a login) costs no BEGIN/ROLLBACK at all.
* Each ledger entry and its balance change are one statement (a data-modifying CTE):
  the conditional debit and the entry succeed or fail together.
* Ledger entries are written at commit (or before the next statement of the same unit
  of work). When an entry is the unit of work's only write, as in a withdrawal, it runs
  alone, outside BEGIN/COMMIT: one statement is its own transaction. That saves two
  round trips, and the account's row lock is held only while PostgreSQL runs the
  statement and flushes its commit, not while the answer travels to a busy event loop
  and a COMMIT travels back, which is what limits withdrawals from one hot account.
* A new order announces itself with ``pg_notify`` in its own ``RETURNING`` clause: the
  wake-up costs no extra round trip and is delivered only if the insert commits.

Measured effect on ``POST /api/user/balance/withdraw``: docs/performance.md.
"""

from __future__ import annotations

from types import TracebackType

from asyncpg.pool import PoolConnectionProxy
from asyncpg.transaction import Transaction

from gophermart.adapters.sql import statements as st
from gophermart.adapters.sql.pg_pool import PgPool, must_abandon
from gophermart.adapters.sql.repositories import Session, SessionUnitOfWork
from gophermart.adapters.sql.runners import PgRunner
from gophermart.domain.accounts import LedgerEntry


class _PgSession(Session):
    records_in_one_statement = True
    add_order = st.ADD_ORDER_PG

    def __init__(self, conn: PoolConnectionProxy) -> None:
        super().__init__(PgRunner(conn))
        self._conn = conn
        self._tx: Transaction | None = None

    @property
    def in_transaction(self) -> bool:
        return self._tx is not None

    async def _begin(self) -> None:
        self._tx = self._conn.transaction()
        await self._tx.start()

    async def _commit(self) -> None:
        assert self._tx is not None
        await self._tx.commit()

    async def _record(self, entry: LedgerEntry) -> bool:
        statement = st.DEBIT_ENTRY if entry.is_debit else st.CREDIT_ENTRY
        return await self._runner.fetchval(statement, st.entry_params(entry)) is not None

    async def rollback(self) -> None:
        if self._tx is not None and not self.committed:
            await self._tx.rollback()


class PgUnitOfWork(SessionUnitOfWork):
    """One pooled connection; a transaction from the first write; rollback unless committed."""

    def __init__(self, pool: PgPool) -> None:
        self._pool = pool

    async def _open(self) -> Session:
        pool = await self._pool.get()
        self._conn: PoolConnectionProxy = await pool.acquire()
        self._pg = _PgSession(self._conn)
        return self._pg

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if must_abandon(exc):  # cut short mid-statement: no round trip can end it cleanly
            self._conn.terminate()  # and the pool takes the connection's place back itself
            return
        await super().__aexit__(exc_type, exc, tb)

    async def _close(self) -> None:
        pool = await self._pool.get()
        try:
            await self._pg.rollback()
        except Exception:
            self._conn.terminate()  # in an unknown state: never hand it to anyone else
        finally:
            await pool.release(self._conn)
