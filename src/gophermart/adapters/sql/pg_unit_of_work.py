"""The unit of work on PostgreSQL, straight through asyncpg: the hot write paths.

Same contract as :class:`~gophermart.adapters.sql.unit_of_work.SqlUnitOfWork` (the
repository contract tests run both), fewer round trips and far less Python per
statement:

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

from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from gophermart.adapters.sql.pg_pool import PgPool, must_abandon
from gophermart.adapters.sql.unit_of_work import ORDERS_CHANNEL
from gophermart.application.errors import ConcurrentUpdate
from gophermart.application.ports import ClaimedOrder
from gophermart.domain.accounts import Account, EntryKind, LedgerEntry
from gophermart.domain.errors import InsufficientPoints, LoginTaken, UnknownUser
from gophermart.domain.orders import Order, OrderNumber, OrderStatus
from gophermart.domain.points import Points
from gophermart.domain.users import Login, User, UserId

_STATUSES = {s.value: s for s in OrderStatus}

_DEBIT = """
WITH debit AS (
    UPDATE accounts SET balance = balance - $3, withdrawn = withdrawn + $3
    WHERE user_id = $1 AND balance >= $3
    RETURNING user_id
)
INSERT INTO ledger (user_id, kind, order_number, amount, created_at)
SELECT user_id, 'withdrawal', $2, $3, $4 FROM debit
RETURNING id
"""

_CREDIT = """
WITH credit AS (
    UPDATE accounts SET balance = balance + $3 WHERE user_id = $1 RETURNING user_id
)
INSERT INTO ledger (user_id, kind, order_number, amount, created_at)
SELECT user_id, 'accrual', $2, $3, $4 FROM credit
RETURNING id
"""

# One row always: the account's figures (NULL without an account) and the withdrawal
# already recorded for the order number, by anyone (NULL when there is none).
_FOR_WITHDRAWAL = """
SELECT a.balance, a.withdrawn, l.user_id, l.amount, l.created_at
FROM (SELECT $1::bigint AS user_id) AS me
LEFT JOIN accounts AS a ON a.user_id = me.user_id
LEFT JOIN ledger AS l ON l.kind = 'withdrawal' AND l.order_number = $2
"""

_ADD_ORDER = f"""
INSERT INTO orders (number, user_id, status, uploaded_at, next_attempt_at, attempts)
VALUES ($1, $2, $3, $4, $4, 0)
ON CONFLICT (number) DO NOTHING
RETURNING id, pg_notify('{ORDERS_CHANNEL}', '')
"""

_CLAIM = """
UPDATE orders SET next_attempt_at = $2, attempts = attempts + 1
WHERE id IN (
    SELECT id FROM orders WHERE next_attempt_at <= $1
    ORDER BY next_attempt_at LIMIT $3
    FOR UPDATE SKIP LOCKED
)
RETURNING number, status, attempts
"""


class _Session:
    """The connection of one unit of work, its lazily started transaction, and the
    ledger entries waiting for the commit."""

    def __init__(self, conn: PoolConnectionProxy) -> None:
        self.conn = conn
        self.tx: Any = None
        self.committed = False
        self.deferred: list[LedgerEntry] = []

    async def read(self) -> PoolConnectionProxy:
        """The connection, once this unit of work's own deferred writes are in."""
        if self.deferred:
            await self.write()
        return self.conn

    async def write(self) -> PoolConnectionProxy:
        """The connection inside the transaction (begun now if need be), deferred writes in."""
        if self.tx is None:
            self.tx = self.conn.transaction()
            await self.tx.start()
        while self.deferred:
            await _apply(self.conn, self.deferred.pop(0))
        return self.conn

    async def commit(self) -> None:
        if self.tx is None and len(self.deferred) == 1:
            await _apply(self.conn, self.deferred.pop())  # its own transaction
        elif self.tx is not None or self.deferred:
            await self.write()
            await self.tx.commit()
        self.committed = True


def _withdrawal(
    order_number: OrderNumber, user_id: int, amount: int, created_at: datetime
) -> LedgerEntry:
    return LedgerEntry(
        UserId(user_id),
        EntryKind.WITHDRAWAL,
        order_number,
        Points(amount),
        created_at.astimezone(UTC),
    )


async def _apply(conn: PoolConnectionProxy, entry: LedgerEntry) -> None:
    """One ledger entry and its balance change, as one statement."""
    try:
        entry_id = await conn.fetchval(
            _DEBIT if entry.is_debit else _CREDIT,
            entry.user_id,
            entry.order_number.value,
            entry.amount.cents,
            entry.at,
        )
    except asyncpg.UniqueViolationError:
        raise ConcurrentUpdate(f"{entry.kind} for order {entry.order_number} exists") from None
    if entry_id is None:
        if entry.is_debit:
            raise InsufficientPoints("balance changed concurrently")
        raise LookupError(f"user {entry.user_id} has no account")


class PgUsers:
    def __init__(self, s: _Session) -> None:
        self._s = s

    async def add(self, login: Login, password_hash: str) -> User:
        conn = await self._s.write()
        try:
            user_id = await conn.fetchval(
                "INSERT INTO users (login, password_hash, created_at) VALUES ($1, $2, $3)"
                " RETURNING id",
                login.value,
                password_hash,
                datetime.now(UTC),
            )
        except asyncpg.UniqueViolationError:
            raise LoginTaken(f"login {login} is taken") from None
        return User(UserId(user_id), login, password_hash)

    async def by_login(self, login: Login) -> User | None:
        conn = await self._s.read()
        row = await conn.fetchrow(
            "SELECT id, password_hash FROM users WHERE login = $1", login.value
        )
        return User(UserId(row[0]), login, row[1]) if row is not None else None


class PgOrders:
    def __init__(self, s: _Session) -> None:
        self._s = s

    async def add(self, order: Order) -> bool:
        conn = await self._s.write()
        try:
            row = await conn.fetchrow(
                _ADD_ORDER, order.number.value, order.owner, order.status.value, order.uploaded_at
            )
        except asyncpg.ForeignKeyViolationError:
            raise UnknownUser(f"user {order.owner} does not exist") from None
        return row is not None

    async def get(self, number: OrderNumber) -> Order | None:
        conn = await self._s.read()
        row = await conn.fetchrow(
            "SELECT user_id, status, uploaded_at, accrual FROM orders WHERE number = $1",
            number.value,
        )
        if row is None:
            return None
        return Order(
            number=number,
            owner=UserId(row[0]),
            status=_STATUSES[row[1]],
            uploaded_at=row[2].astimezone(UTC),
            accrual=Points(row[3]) if row[3] is not None else None,
        )

    async def save(self, before: Order, after: Order, next_attempt_at: datetime | None) -> bool:
        conn = await self._s.write()
        result = await conn.execute(
            "UPDATE orders SET status = $3, accrual = $4, next_attempt_at = $5"
            " WHERE number = $1 AND status = $2",
            before.number.value,
            before.status.value,
            after.status.value,
            after.accrual.cents if after.accrual is not None else None,
            None if after.status.is_final else next_attempt_at,
        )
        return bool(result == "UPDATE 1")

    async def claim_due(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> list[ClaimedOrder]:
        conn = await self._s.write()
        rows = await conn.fetch(_CLAIM, now, lease_until, limit)
        return [ClaimedOrder(OrderNumber(r[0]), _STATUSES[r[1]], r[2]) for r in rows]

    async def reschedule(self, number: OrderNumber, at: datetime) -> None:
        conn = await self._s.write()
        await conn.execute(
            "UPDATE orders SET next_attempt_at = $2"
            " WHERE number = $1 AND next_attempt_at IS NOT NULL",
            number.value,
            at,
        )


class PgAccounts:
    def __init__(self, s: _Session) -> None:
        self._s = s

    async def open(self, user_id: UserId) -> None:
        conn = await self._s.write()
        await conn.execute("INSERT INTO accounts (user_id) VALUES ($1)", user_id)

    async def get(self, user_id: UserId) -> Account | None:
        conn = await self._s.read()
        row = await conn.fetchrow(
            "SELECT balance, withdrawn FROM accounts WHERE user_id = $1", user_id
        )
        return Account(user_id, Points(row[0]), Points(row[1])) if row is not None else None

    async def withdrawal(self, order_number: OrderNumber) -> LedgerEntry | None:
        conn = await self._s.read()
        row = await conn.fetchrow(
            "SELECT user_id, amount, created_at FROM ledger"
            " WHERE kind = 'withdrawal' AND order_number = $1",
            order_number.value,
        )
        return _withdrawal(order_number, *row) if row is not None else None

    async def for_withdrawal(
        self, user_id: UserId, order_number: OrderNumber
    ) -> tuple[Account | None, LedgerEntry | None]:
        conn = await self._s.read()
        row = await conn.fetchrow(_FOR_WITHDRAWAL, user_id, order_number.value)
        account = Account(user_id, Points(row[0]), Points(row[1])) if row[0] is not None else None
        return account, _withdrawal(order_number, *row[2:]) if row[2] is not None else None

    async def save(self, account: Account) -> None:
        """Deferred to the commit (module docstring); errors surface there."""
        self._s.deferred.extend(account.pending)
        account.pending.clear()


class PgUnitOfWork:
    """One pooled connection; a transaction from the first write; rollback unless committed."""

    def __init__(self, pool: PgPool) -> None:
        self._pool = pool

    async def __aenter__(self) -> Self:
        pool = await self._pool.get()
        self._conn: PoolConnectionProxy = await pool.acquire()
        self._session = _Session(self._conn)
        self.users = PgUsers(self._session)
        self.orders = PgOrders(self._session)
        self.accounts = PgAccounts(self._session)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pool = await self._pool.get()
        if must_abandon(exc):  # cut short mid-statement: no round trip can end it cleanly
            self._conn.terminate()  # and the pool takes the connection's place back itself
            return
        try:
            if self._session.tx is not None and not self._session.committed:
                await self._session.tx.rollback()
        except Exception:
            self._conn.terminate()  # in an unknown state: never hand it to anyone else
        finally:
            await pool.release(self._conn)

    async def commit(self) -> None:
        await self._session.commit()
