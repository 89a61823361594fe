"""The unit of work on PostgreSQL, straight through asyncpg: the hot write paths.

The shared repositories (stores/sql/session.py) on a session that runs each statement
as compiled once for asyncpg (runner.py), with fewer round trips and far less Python
per statement than SQLAlchemy's execution machinery:

* The transaction begins at the first *write*. Under READ COMMITTED every statement
  sees the latest committed data whether or not a transaction is open, so reads before
  the first write lose nothing by running outside one, and a read-only unit of work
  (a login) costs no BEGIN/ROLLBACK at all.
* Each ledger entry and its balance change are one statement (data-modifying CTEs):
  a credit is CREDIT_ENTRY, a debit the group commit's own statement with a batch of
  one (statements.py), so the debit rule has one statement on PostgreSQL.
* Ledger entries are written at commit (or before the next statement of the same unit
  of work). When an entry is the unit of work's only write, as in a withdrawal, it runs
  alone, outside BEGIN/COMMIT: one statement is its own transaction. That saves two
  round trips, and the account's row lock is held only while PostgreSQL runs the
  statement and flushes its commit, not while the answer travels to a busy event loop
  and a COMMIT travels back, which is what limits withdrawals from one hot account.
* With a group committer (the service always has one), that lone withdrawal debit is
  not even its own transaction: the unit of work gives its connection back and hands
  the entry to :class:`~gophermart.adapters.stores.postgres.group_commit.PgGroupCommit`, which
  writes the withdrawals of the moment in one transaction and one WAL flush, each
  with its own answer.
* A new order announces itself with ``pg_notify`` in its own ``RETURNING`` clause: the
  wake-up costs no extra round trip and is delivered only if the insert commits.

Measured effect on ``POST /api/user/balance/withdraw``: docs/performance.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, cast

from asyncpg.pool import PoolConnectionProxy
from asyncpg.transaction import Transaction

from gophermart.adapters.stores.postgres import statements as pg
from gophermart.adapters.stores.postgres.group_commit import PgGroupCommit, record_moving
from gophermart.adapters.stores.postgres.pool import PgPool, must_abandon
from gophermart.adapters.stores.postgres.runner import PgRunner
from gophermart.adapters.stores.sql import movements as mv
from gophermart.adapters.stores.sql import statements as st
from gophermart.adapters.stores.sql.runners import Conflict, Row, Runner
from gophermart.adapters.stores.sql.session import HostUnitOfWork, Session, SessionUnitOfWork
from gophermart.application.errors import ConcurrentUpdate
from gophermart.application.ports import HostConnection, UnitOfWork
from gophermart.domain.accounts import Hold, LedgerEntry
from gophermart.domain.orders import OrderNumber
from gophermart.domain.users import UserId


async def record_entry(runner: Runner, entry: LedgerEntry) -> bool:
    """PostgreSQL's shape of a ledger entry: one statement, the entry and its change of
    the figures, guarded by the debit rule (an UPDATE's WHERE is checked again on the
    row's latest version once its lock is had, so it decides on the latest balance)."""
    return await record_moving(runner, entry)


def within(conn: HostConnection, schema: str | None = None) -> UnitOfWork:
    """A unit of work in a host's own PostgreSQL transaction (``connection=``): the same
    statements, run through the host's SQLAlchemy connection (our tables named in
    ``schema`` on each statement, the host's ``search_path`` left as it is)."""
    add_order = pg.adding_order(pg.orders_channel(schema))
    return cast(
        UnitOfWork, HostUnitOfWork(conn, "postgresql", record_entry, add_order, schema=schema)
    )


class _LazyRunner:
    """A :class:`PgRunner` on a pooled connection acquired at its first statement: a
    withdrawal whose read is coalesced and whose debit is group-committed never takes
    one of its own."""

    def __init__(self, pool: PgPool) -> None:
        self._pool = pool
        self.conn: PoolConnectionProxy | None = None

    async def connection(self) -> PoolConnectionProxy:
        if self.conn is None:
            pool = await self._pool.get()
            self.conn = await pool.acquire()
        return self.conn

    async def fetch(self, statement: st.Statement, params: st.Params) -> Sequence[Row]:
        return await PgRunner(await self.connection()).fetch(statement, params)

    async def fetchrow(self, statement: st.Statement, params: st.Params) -> Row | None:
        return await PgRunner(await self.connection()).fetchrow(statement, params)

    async def fetchval(self, statement: st.Statement, params: st.Params) -> Any:
        return await PgRunner(await self.connection()).fetchval(statement, params)

    async def execute(self, statement: st.Statement, params: st.Params) -> int:
        return await PgRunner(await self.connection()).execute(statement, params)


class _PgSession(Session):
    records_in_one_statement = True
    _runner: _LazyRunner

    def __init__(
        self, runner: _LazyRunner, group: PgGroupCommit | None, add_order: st.Statement
    ) -> None:
        super().__init__(runner)
        self._group = group
        self.add_order = add_order
        self._tx: Transaction | None = None

    @property
    def in_transaction(self) -> bool:
        return self._tx is not None

    async def _begin(self) -> None:
        self._tx = (await self._runner.connection()).transaction()
        await self._tx.start()

    async def _commit(self) -> None:
        assert self._tx is not None
        await self._tx.commit()

    async def _record(self, entry: LedgerEntry) -> bool:
        return await record_entry(self._runner, entry)

    async def _record_alone(self, entry: LedgerEntry) -> bool:
        if self._group is not None and entry.is_debit:
            return await self._group.debit(entry)  # with the other withdrawals of now
        return await self._record(entry)

    async def place_hold(self, hold: Hold) -> Hold | None:
        if self.in_transaction or self._pending or self._failed:
            return await super().place_hold(hold)
        params = {
            "user_id": hold.user_id,
            "order_number": hold.order_number.value,
            "amount": hold.amount.cents,
            "at": hold.created_at,
            "until": hold.expires_at,
        }
        try:  # one statement, in a group commit (statements.PLACE_HOLD)
            hold_id = (await self._batched(pg.PLACE_HOLD, params, hold.user_id))[0]
        except Conflict:
            raise ConcurrentUpdate(f"order {hold.order_number} has an open hold") from None
        return replace(hold, id=hold_id) if hold_id is not None else None

    async def capture_hold(self, user_id: UserId, hold_id: int, at: datetime) -> Hold | None:
        if self.in_transaction or self._pending or self._failed:
            return await super().capture_hold(user_id, hold_id, at)
        params = {"hold_id": hold_id, "user_id": user_id, "at": at}
        try:  # one statement, in a group commit (statements.CAPTURE_HOLD)
            row = await self._batched(pg.CAPTURE_HOLD, params, user_id)
        except Conflict:
            raise ConcurrentUpdate(f"hold {hold_id}: its order was paid meanwhile") from None
        return mv.hold_of(row) if row[0] is not None else None

    async def _batched(self, statement: st.Statement, params: dict[str, Any], key: int) -> Row:
        """``statement``'s one row, in its group commit (batches.py) if there is one."""
        if self._group is None:
            row = await self._runner.fetchrow(statement, params)
            assert row is not None  # an aggregate: one row always
            return row
        return await self._group.batch_of(statement).fetchrow(params, key)

    async def for_withdrawal(self, user_id: UserId, order_number: OrderNumber) -> Row:
        if self._group is None or self._pending or self._failed or self.in_transaction:
            return await super().for_withdrawal(user_id, order_number)
        return await self._group.for_withdrawal(user_id, order_number.value)

    async def rollback(self) -> None:
        if self._tx is not None and not self.committed:
            await self._tx.rollback()


class PgUnitOfWork(SessionUnitOfWork):
    """A pooled connection from the first statement that needs one; a transaction from
    the first write; rollback unless committed.

    With ``group``, a withdrawal's read is coalesced with the other withdrawals' and its
    lone debit is committed together with theirs (pg_group_commit.py), neither on a
    connection of its own; without it, both on this unit of work's connection.
    """

    def __init__(
        self, pool: PgPool, group: PgGroupCommit | None = None, channel: str = pg.ORDERS_CHANNEL
    ) -> None:
        self._pool = pool
        self._group = group
        self._add_order = pg.adding_order(channel)

    async def _open(self) -> Session:
        self._lazy = _LazyRunner(self._pool)
        self._pg = _PgSession(self._lazy, self._group, self._add_order)
        return self._pg

    async def __aexit__(self, *exc_info: object) -> None:
        exc = next((e for e in exc_info if isinstance(e, BaseException)), None)
        if must_abandon(exc):  # cut short mid-statement: no round trip can end it cleanly
            if self._lazy.conn is not None:
                self._lazy.conn.terminate()  # the pool takes the connection's place back
            return
        await self._close()

    async def _close(self) -> None:
        conn = self._lazy.conn
        if conn is None:
            return
        pool = await self._pool.get()
        try:
            await self._pg.rollback()
        except Exception:
            conn.terminate()  # in an unknown state: never hand it to anyone else
        finally:
            await pool.release(conn)
