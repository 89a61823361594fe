"""The repositories of both SQL stores' units of work, written once over a :class:`Session`.

The SQLite unit of work (stores/sqlite, through SQLAlchemy) and the PostgreSQL one
(stores/postgres, through asyncpg) differ only in their session: how statements
run, when the transaction begins, and the shape of a ledger entry's write.

Ledger entries saved by ``accounts.save()`` are only recorded; the session writes them
at commit, or before the unit of work's next statement so that it reads its own
writes. Their rule violations surface from that call (ports.AccountRepository.save),
after which the unit of work is finished: every later call, commit included, raises
the same error, so nothing of it is ever written.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Self

from gophermart.adapters.stores.sql import movements as mv
from gophermart.adapters.stores.sql import statements as st
from gophermart.adapters.stores.sql.runners import Conflict, Row, Runner, SqlRunner
from gophermart.application.errors import ConcurrentUpdate
from gophermart.application.ports import ClaimedOrder, HostConnection
from gophermart.domain.accounts import Account, Hold, HoldState, LedgerEntry
from gophermart.domain.errors import InsufficientPoints, InvalidInput, LoginTaken, UnknownUser
from gophermart.domain.orders import Order, OrderNumber
from gophermart.domain.points import Points
from gophermart.domain.users import Login, User, UserId


class Session(ABC):
    """The connection of one unit of work, its transaction, and the ledger entries
    waiting to be written."""

    #: The dialect's statement for ``orders.add``.
    add_order: st.Statement
    #: Whether :meth:`_record` is one statement, and so may run as its own transaction.
    records_in_one_statement: bool

    def __init__(self, runner: Runner) -> None:
        self._runner = runner
        self._pending: list[LedgerEntry] = []
        self._failed: Exception | None = None
        self.committed = False

    @property
    @abstractmethod
    def in_transaction(self) -> bool: ...

    @abstractmethod
    async def _begin(self) -> None: ...

    @abstractmethod
    async def _commit(self) -> None: ...

    @abstractmethod
    async def _record(self, entry: LedgerEntry) -> bool:
        """Write the entry and its balance change; ``False`` when the account row refused
        the change (no such account, or a debit above the balance), writing nothing."""

    async def _record_alone(self, entry: LedgerEntry) -> bool:
        """:meth:`_record` for the unit of work's only write, committed by itself (a
        store may group such writes of concurrent units of work into one commit)."""
        return await self._record(entry)

    async def for_withdrawal(self, user_id: UserId, order_number: OrderNumber) -> Row:
        """The FOR_WITHDRAWAL row (a store may coalesce the reads of concurrent units
        of work, when nothing of this one is pending)."""
        db = await self.read()
        params = {"user_id": user_id, "order_number": order_number.value}
        row = await db.fetchrow(st.FOR_WITHDRAWAL, params)
        assert row is not None  # one row always
        return row

    async def place_hold(self, hold: Hold) -> Hold | None:
        """``holds.place`` in this unit of work's transaction: the checks read, then the
        hold inserted and its entry saved like any other (a store may do it all in one
        statement instead)."""
        db = await self.write()
        number = {"order_number": hold.order_number.value}
        if await db.fetchrow(mv.OPEN_HOLD, number) or await db.fetchrow(st.WITHDRAWAL, number):
            return None
        account = await self._account(db, hold.user_id)
        if account is None or hold.amount > account.balance:
            return None
        params = {
            "user_id": hold.user_id,
            "order_number": hold.order_number.value,
            "amount": hold.amount.cents,
            "at": hold.created_at,
            "until": hold.expires_at,
        }
        try:
            placed = replace(hold, id=await db.fetchval(mv.ADD_HOLD, params))
        except Conflict:
            raise ConcurrentUpdate(f"order {hold.order_number} has an open hold") from None
        account.hold(placed)
        self.defer(account.pending)
        return placed

    async def capture_hold(self, user_id: UserId, hold_id: int, at: datetime) -> Hold | None:
        """``holds.capture`` in this unit of work's transaction: the hold read and
        checked, closed, then its entries saved like any other."""
        db = await self.write()
        row = await db.fetchrow(mv.HOLD, {"hold_id": hold_id})
        hold = mv.hold_of(row) if row is not None else None
        if hold is None or hold.user_id != user_id or hold.expires_at <= at:
            return None
        if await db.execute(mv.CLOSE_HOLD, mv.hold_params(hold.id, HoldState.CAPTURED, at)) != 1:
            return None
        account = await self._account(db, hold.user_id)
        assert account is not None  # a hold's user has an account (a foreign key)
        account.close_hold(hold, HoldState.CAPTURED, at)
        self.defer(account.pending)
        return hold.closed(HoldState.CAPTURED, at)

    async def _account(self, db: Runner, user_id: UserId) -> Account | None:
        row = await db.fetchrow(st.ACCOUNT, {"user_id": user_id})
        return st.account_of(user_id, row) if row is not None else None

    def defer(self, entries: list[LedgerEntry]) -> None:
        self._pending.extend(entries)

    async def read(self) -> Runner:
        """The runner, once this unit of work's own saved entries are in."""
        if self._pending or self._failed:
            return await self.write()
        return self._runner

    async def write(self) -> Runner:
        """The runner inside the transaction (begun now if need be), saved entries in."""
        if self._failed is not None:
            raise self._failed
        if not self.in_transaction:
            await self._begin()
        while self._pending:
            await self._apply(self._pending.pop(0))
        return self._runner

    async def commit(self) -> None:
        lone = self._failed is None and not self.in_transaction and len(self._pending) == 1
        if lone and self.records_in_one_statement:
            # The only write, one statement: its own transaction, which saves the BEGIN
            # and COMMIT round trips and holds the account row's lock only while the
            # server runs the statement.
            await self._apply(self._pending.pop(), alone=True)
        elif self.in_transaction or self._pending or self._failed:
            await self.write()
            await self._commit()
        self.committed = True

    async def _apply(self, entry: LedgerEntry, *, alone: bool = False) -> None:
        try:
            if await (self._record_alone(entry) if alone else self._record(entry)):
                return
            error: Exception = (
                InsufficientPoints(entry.amount)
                if entry.change < 0
                else LookupError(f"user {entry.user_id} has no account")
            )
        except Conflict:
            error = ConcurrentUpdate(f"{entry.kind} for order {entry.order_number} exists")
        self._failed = error
        raise error from None


#: How a store writes a ledger entry and its balance change on a runner (its dialect's
#: statements): ``False`` when the account row refused the change.
RecordEntry = Callable[[Runner, LedgerEntry], Awaitable[bool]]


class HostSession(Session):
    """A session inside a host's transaction (``connection=``): our writes go into a
    savepoint of it, released at our commit (they then commit or roll back with the
    host's own rows) and rolled back on our failure (the host's rows are untouched)."""

    records_in_one_statement = False

    def __init__(
        self, conn: Any, record: RecordEntry, add_order: st.Statement, schema: str | None = None
    ) -> None:
        super().__init__(SqlRunner(conn, schema))
        self._conn = conn
        self._record_with = record
        self.add_order = add_order
        self._savepoint: Any = None

    @property
    def in_transaction(self) -> bool:
        return self._savepoint is not None

    async def _begin(self) -> None:
        if self._conn.dialect.name == "sqlite":
            await _begin_sqlite_lazily_begun(self._conn)
        self._savepoint = await self._conn.begin_nested()

    async def _commit(self) -> None:
        await self._savepoint.commit()

    async def _record(self, entry: LedgerEntry) -> bool:
        return await self._record_with(self._runner, entry)

    async def abandon(self) -> None:
        if self._savepoint is not None and not self.committed and self._savepoint.is_active:
            await self._savepoint.rollback()


async def _begin_sqlite_lazily_begun(conn: Any) -> None:
    """Make the host's SQLite transaction real before our savepoint.

    Python's sqlite3 driver (under aiosqlite) sends ``BEGIN`` only before the first
    INSERT/UPDATE/DELETE, so a host's ``engine.begin()`` that has written nothing yet
    is no transaction on the database: a SAVEPOINT there opens one of its own, and its
    RELEASE commits our writes alone, outside the host's rollback. Our own engine emits
    ``BEGIN`` itself (stores/sqlite/engine.py); a host's engine may not."""
    raw = await conn.get_raw_connection()
    if not raw.driver_connection.in_transaction:
        await conn.exec_driver_sql("BEGIN")


class SqlUsers:
    def __init__(self, s: Session) -> None:
        self._s = s

    async def add(self, login: Login, password_hash: str) -> User:
        db = await self._s.write()
        params = {
            "login": login.value,
            "password_hash": password_hash,
            "created_at": datetime.now(UTC),
        }
        try:
            user_id = await db.fetchval(st.ADD_USER, params)
        except Conflict:
            raise LoginTaken(login.value) from None
        return User(UserId(user_id), login, password_hash)

    async def by_login(self, login: Login) -> User | None:
        db = await self._s.read()
        row = await db.fetchrow(st.USER_BY_LOGIN, {"login": login.value})
        return User(UserId(row[0]), login, row[1]) if row is not None else None


class SqlOrders:
    def __init__(self, s: Session) -> None:
        self._s = s

    async def add(self, order: Order) -> bool:
        db = await self._s.write()
        try:  # a taken number is ON CONFLICT DO NOTHING: no row back
            inserted = await db.fetchval(self._s.add_order, st.order_params(order))
        except Conflict:  # so this is the owner's foreign key
            raise UnknownUser(order.owner) from None
        return inserted is not None

    async def get(self, number: OrderNumber) -> Order | None:
        db = await self._s.read()
        row = await db.fetchrow(st.ORDER_BY_NUMBER, {"number": number.value})
        return st.order_of(number, row) if row is not None else None

    async def save(self, before: Order, after: Order, next_attempt_at: datetime | None) -> bool:
        db = await self._s.write()
        changed = await db.execute(
            st.SAVE_ORDER,
            {
                "order_number": before.number.value,
                "from_status": before.status.value,
                "status": after.status.value,
                "accrual": after.accrual.cents if after.accrual is not None else None,
                "next_attempt_at": None if after.status.is_final else next_attempt_at,
            },
        )
        return changed == 1

    async def claim_due(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> list[ClaimedOrder]:
        db = await self._s.write()
        params = {"now": now, "lease_until": lease_until, "limit": limit}
        rows = await db.fetch(st.CLAIM_DUE, params)
        return [st.claimed_of(row) for row in rows]

    async def reschedule(
        self, number: OrderNumber, at: datetime, parked: str | None = None
    ) -> None:
        db = await self._s.write()
        params = {"order_number": number.value, "at": at, "parked": parked}
        await db.execute(st.RESCHEDULE, params)

    async def retry(self, number: OrderNumber, at: datetime) -> None:
        db = await self._s.write()
        await db.execute(st.RETRY, {"order_number": number.value, "at": at})

    async def reverse(self, number: OrderNumber, amount: Points) -> Points | None:
        db = await self._s.write()
        left = await db.fetchval(mv.REVERSE, {"order_number": number.value, "amount": amount.cents})
        return Points(left) if left is not None else None

    async def reversed(self, number: OrderNumber) -> Points:
        db = await self._s.read()
        value = await db.fetchval(mv.REVERSED, {"order_number": number.value})
        return Points(value or 0)


class SqlHolds:
    def __init__(self, s: Session) -> None:
        self._s = s

    async def add(
        self, user_id: UserId, order: OrderNumber, amount: Points, at: datetime, until: datetime
    ) -> Hold:
        db = await self._s.write()
        params = {
            "user_id": user_id,
            "order_number": order.value,
            "amount": amount.cents,
            "at": at,
            "until": until,
        }
        try:
            hold_id = await db.fetchval(mv.ADD_HOLD, params)
        except Conflict:
            raise ConcurrentUpdate(f"order {order} has an open hold") from None
        return Hold(hold_id, user_id, order, amount, HoldState.OPEN, at, until)

    async def place(
        self, user_id: UserId, order: OrderNumber, amount: Points, at: datetime, until: datetime
    ) -> Hold | None:
        return await self._s.place_hold(Hold(0, user_id, order, amount, HoldState.OPEN, at, until))

    async def capture(self, user_id: UserId, hold_id: int, at: datetime) -> Hold | None:
        return await self._s.capture_hold(user_id, hold_id, at)

    async def get(self, hold_id: int) -> Hold | None:
        db = await self._s.read()
        row = await db.fetchrow(mv.HOLD, {"hold_id": hold_id})
        return mv.hold_of(row) if row is not None else None

    async def open_for(self, order: OrderNumber) -> Hold | None:
        db = await self._s.read()
        row = await db.fetchrow(mv.OPEN_HOLD, {"order_number": order.value})
        return mv.hold_of(row) if row is not None else None

    async def close(self, hold: Hold, state: HoldState, at: datetime) -> bool:
        db = await self._s.write()
        return await db.execute(mv.CLOSE_HOLD, mv.hold_params(hold.id, state, at)) == 1

    async def due(self, now: datetime, limit: int) -> list[Hold]:
        db = await self._s.read()
        return [mv.hold_of(r) for r in await db.fetch(mv.DUE_HOLDS, {"now": now, "limit": limit})]


class SqlAccounts:
    def __init__(self, s: Session) -> None:
        self._s = s

    async def open(self, user_id: UserId) -> None:
        db = await self._s.write()
        await db.execute(st.OPEN_ACCOUNT, {"user_id": user_id})

    async def get(self, user_id: UserId) -> Account | None:
        db = await self._s.read()
        row = await db.fetchrow(st.ACCOUNT, {"user_id": user_id})
        return st.account_of(user_id, row) if row is not None else None

    async def withdrawal(self, order_number: OrderNumber) -> LedgerEntry | None:
        db = await self._s.read()
        row = await db.fetchrow(st.WITHDRAWAL, {"order_number": order_number.value})
        return st.withdrawal_of(order_number, row) if row is not None else None

    async def for_withdrawal(
        self, user_id: UserId, order_number: OrderNumber
    ) -> tuple[Account | None, LedgerEntry | None, bool]:
        row = await self._s.for_withdrawal(user_id, order_number)
        account, withdrawal, held = st.split_for_withdrawal(row)
        return st.account_of(user_id, account), st.withdrawal_of(order_number, withdrawal), held

    async def locked(self, user_id: UserId) -> Account | None:
        db = await self._s.write()  # in the transaction: the lock lasts until it ends
        row = await db.fetchrow(mv.ACCOUNT_LOCKED, {"user_id": user_id})
        return st.account_of(user_id, row) if row is not None else None

    async def refunded(self, order_number: OrderNumber) -> Points:
        db = await self._s.read()
        return Points(await db.fetchval(mv.REFUNDED, {"order_number": order_number.value}))

    async def save(self, account: Account) -> None:
        """Records the entries only; the session writes them (module docstring)."""
        self._s.defer(account.pending)
        account.pending.clear()


class SessionUnitOfWork(ABC):
    """The repositories on one session; rolls back unless :meth:`commit` was called."""

    _session: Session

    @abstractmethod
    async def _open(self) -> Session: ...

    @abstractmethod
    async def _close(self) -> None:
        """Roll back what is not committed and give the connection back."""

    async def __aenter__(self) -> Self:
        self._session = await self._open()
        self.users = SqlUsers(self._session)
        self.orders = SqlOrders(self._session)
        self.accounts = SqlAccounts(self._session)
        self.holds = SqlHolds(self._session)
        return self

    async def __aexit__(self, *_exc_info: object) -> None:
        await self._close()

    async def commit(self) -> None:
        await self._session.commit()


class HostUnitOfWork(SessionUnitOfWork):
    """A unit of work within a host's transaction (:class:`HostSession`)."""

    def __init__(
        self,
        conn: HostConnection,
        dialect: str,
        record: RecordEntry,
        add_order: st.Statement,
        *,
        schema: str | None = None,
    ) -> None:
        if conn.dialect.name != dialect:
            raise InvalidInput(
                f"connection= is a {conn.dialect.name} connection; this store is {dialect}"
            )
        self._conn = conn
        self._record = record
        self._add_order = add_order
        self._schema = schema

    async def _open(self) -> Session:
        self._host = HostSession(self._conn, self._record, self._add_order, self._schema)
        return self._host

    async def _close(self) -> None:
        await self._host.abandon()
