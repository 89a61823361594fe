"""The SQL unit of work and repositories (SQLAlchemy Core on one connection)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from sqlalchemy import and_, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gophermart.adapters.sql.schema import accounts, ledger, orders, users
from gophermart.application.errors import ConcurrentUpdate
from gophermart.application.ports import ClaimedOrder
from gophermart.domain.accounts import Account, EntryKind, LedgerEntry
from gophermart.domain.errors import InsufficientPoints, LoginTaken, UnknownUser
from gophermart.domain.orders import Order, OrderNumber, OrderStatus
from gophermart.domain.points import Points
from gophermart.domain.users import Login, User, UserId

#: The channel a committed upload is announced on (PostgreSQL LISTEN/NOTIFY).
ORDERS_CHANNEL = "gophermart_orders"


class SqlUsers:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, login: Login, password_hash: str) -> User:
        # No savepoint: a unique violation ends the whole unit of work anyway.
        try:
            user_id = await self._conn.scalar(
                insert(users)
                .values(
                    login=login.value, password_hash=password_hash, created_at=datetime.now(UTC)
                )
                .returning(users.c.id)
            )
        except IntegrityError:
            raise LoginTaken(f"login {login} is taken") from None
        assert user_id is not None
        return User(UserId(user_id), login, password_hash)

    async def by_login(self, login: Login) -> User | None:
        row = (
            await self._conn.execute(
                select(users.c.id, users.c.password_hash).where(users.c.login == login.value)
            )
        ).first()
        return User(UserId(row.id), login, row.password_hash) if row else None


def _order(row: Any) -> Order:
    return Order(
        number=OrderNumber(row.number),
        owner=UserId(row.user_id),
        status=OrderStatus(row.status),
        uploaded_at=row.uploaded_at,
        accrual=Points(row.accrual) if row.accrual is not None else None,
    )


class SqlOrders:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, order: Order) -> bool:
        dialect = postgresql if self._conn.dialect.name == "postgresql" else sqlite
        statement = (
            dialect.insert(orders)
            .values(
                number=order.number.value,
                user_id=order.owner,
                status=order.status.value,
                uploaded_at=order.uploaded_at,
                next_attempt_at=order.uploaded_at,
            )
            .on_conflict_do_nothing(index_elements=["number"])
            .returning(orders.c.id)
        )
        try:
            inserted = await self._conn.scalar(statement)
        except IntegrityError:  # the number is ON CONFLICT; this is the owner's foreign key
            raise UnknownUser(f"user {order.owner} does not exist") from None
        if inserted is not None and dialect is postgresql:
            # Delivered at commit, to every worker process LISTENing: poll it now.
            await self._conn.execute(text(f"NOTIFY {ORDERS_CHANNEL}"))
        return inserted is not None

    async def get(self, number: OrderNumber) -> Order | None:
        row = (
            await self._conn.execute(
                select(
                    orders.c.number,
                    orders.c.user_id,
                    orders.c.status,
                    orders.c.uploaded_at,
                    orders.c.accrual,
                ).where(orders.c.number == number.value)
            )
        ).first()
        return _order(row) if row else None

    async def save(self, before: Order, after: Order, next_attempt_at: datetime | None) -> bool:
        result = await self._conn.execute(
            update(orders)
            .where(
                and_(orders.c.number == before.number.value, orders.c.status == before.status.value)
            )
            .values(
                status=after.status.value,
                accrual=after.accrual.cents if after.accrual is not None else None,
                next_attempt_at=None if after.status.is_final else next_attempt_at,
            )
        )
        return result.rowcount == 1

    async def claim_due(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> list[ClaimedOrder]:
        due = (
            select(orders.c.id)
            .where(orders.c.next_attempt_at <= now)
            .order_by(orders.c.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)  # PostgreSQL; SQLite's writers are serial
            .scalar_subquery()
        )
        rows = await self._conn.execute(
            update(orders)
            .where(orders.c.id.in_(due))
            .values(next_attempt_at=lease_until, attempts=orders.c.attempts + 1)
            .returning(orders.c.number, orders.c.status, orders.c.attempts)
        )
        return [
            ClaimedOrder(OrderNumber(r.number), OrderStatus(r.status), r.attempts) for r in rows
        ]

    async def reschedule(self, number: OrderNumber, at: datetime) -> None:
        await self._conn.execute(
            update(orders)
            .where(and_(orders.c.number == number.value, orders.c.next_attempt_at.is_not(None)))
            .values(next_attempt_at=at)
        )


class SqlAccounts:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def open(self, user_id: UserId) -> None:
        await self._conn.execute(insert(accounts).values(user_id=user_id))

    async def get(self, user_id: UserId) -> Account | None:
        row = (
            await self._conn.execute(
                select(accounts.c.balance, accounts.c.withdrawn).where(
                    accounts.c.user_id == user_id
                )
            )
        ).first()
        return Account(user_id, Points(row.balance), Points(row.withdrawn)) if row else None

    async def withdrawal(self, order_number: OrderNumber) -> LedgerEntry | None:
        row = (
            await self._conn.execute(
                select(ledger.c.user_id, ledger.c.amount, ledger.c.created_at).where(
                    and_(
                        ledger.c.kind == EntryKind.WITHDRAWAL.value,
                        ledger.c.order_number == order_number.value,
                    )
                )
            )
        ).first()
        if row is None:
            return None
        return LedgerEntry(
            UserId(row.user_id),
            EntryKind.WITHDRAWAL,
            order_number,
            Points(row.amount),
            row.created_at,
        )

    async def for_withdrawal(
        self, user_id: UserId, order_number: OrderNumber
    ) -> tuple[Account | None, LedgerEntry | None]:
        return await self.get(user_id), await self.withdrawal(order_number)

    async def save(self, account: Account) -> None:
        for entry in account.pending:
            await self._record(entry)
        account.pending.clear()

    async def _record(self, entry: LedgerEntry) -> None:
        cents = entry.amount.cents
        # The entry first: a duplicate (kind, order) then fails before any balance moves.
        try:
            await self._conn.execute(
                insert(ledger).values(
                    user_id=entry.user_id,
                    kind=entry.kind.value,
                    order_number=entry.order_number.value,
                    amount=cents,
                    created_at=entry.at,
                )
            )
        except IntegrityError:
            raise ConcurrentUpdate(f"{entry.kind} for order {entry.order_number} exists") from None
        if entry.is_debit:
            # The rule again, atomically in the database: never below zero.
            result = await self._conn.execute(
                update(accounts)
                .where(and_(accounts.c.user_id == entry.user_id, accounts.c.balance >= cents))
                .values(balance=accounts.c.balance - cents, withdrawn=accounts.c.withdrawn + cents)
            )
            if result.rowcount != 1:
                raise InsufficientPoints("balance changed concurrently")
        else:
            result = await self._conn.execute(
                update(accounts)
                .where(accounts.c.user_id == entry.user_id)
                .values(balance=accounts.c.balance + cents)
            )
            if result.rowcount != 1:
                raise LookupError(f"user {entry.user_id} has no account")


class SqlUnitOfWork:
    """One transaction on one connection; rolls back unless :meth:`commit` was called."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def __aenter__(self) -> Self:
        self._conn = await self._engine.connect()
        try:
            await self._conn.begin()
        except BaseException:
            await self._conn.close()
            raise
        self.users = SqlUsers(self._conn)
        self.orders = SqlOrders(self._conn)
        self.accounts = SqlAccounts(self._conn)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._conn.in_transaction():
                await self._conn.rollback()
        finally:
            await self._conn.close()

    async def commit(self) -> None:
        await self._conn.commit()
