"""The in-memory unit of work and its repositories.

The unit of work is serialisable: it holds the database's lock for its whole life and
works on a copy of the data that replaces the original only on commit, so tests see the
same "all or nothing" behaviour as a database transaction. Unique keys and the
conditional debit are enforced here just as the SQL schema enforces them, and saved
ledger entries are applied when the SQL units of work write them: at commit, or on the
unit of work's next repository call (ports.AccountRepository.save).
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Self

from gophermart.adapters.stores.memory.events import ledger_event, order_events
from gophermart.adapters.stores.memory.state import MemoryDatabase, MemoryState, QueuedOrder
from gophermart.application.errors import ConcurrentUpdate
from gophermart.application.ports import ClaimedOrder, HostConnection
from gophermart.domain.accounts import Account, EntryKind, Hold, HoldState, LedgerEntry
from gophermart.domain.errors import InsufficientPoints, InvalidInput, LoginTaken
from gophermart.domain.orders import Order, OrderNumber, OrderStatus
from gophermart.domain.points import Points
from gophermart.domain.users import Login, User, UserId


class _Work:
    """One unit of work's copy of the state, and the ledger entries saved into it but
    not applied yet."""

    def __init__(self, state: MemoryState) -> None:
        self.state = state
        self.pending: list[LedgerEntry] = []
        self.failed: Exception | None = None

    def ready(self) -> MemoryState:
        """The copy with the saved entries applied first (read-your-writes). A rule
        violation among them is raised here, and by every later call."""
        if self.failed is not None:
            raise self.failed
        while self.pending:
            try:
                _apply(self.state, self.pending.pop(0))
            except Exception as exc:
                self.failed = exc
                raise
        return self.state


#: The kinds that happen once per order, ever (the SQL ledger's unique indexes).
ONCE_PER_ORDER = (EntryKind.ACCRUAL, EntryKind.WITHDRAWAL)


def _apply(s: MemoryState, entry: LedgerEntry) -> None:
    key = (entry.kind, entry.order_number.value if entry.order_number else "")
    if entry.kind in ONCE_PER_ORDER and key in s.once:
        raise ConcurrentUpdate(f"{entry.kind} for {entry.order_number} exists")
    if entry.user_id not in s.balances:
        raise LookupError(f"user {entry.user_id} has no account")
    balance, withdrawn = s.balances[entry.user_id]
    held, owed = s.held_owed.get(entry.user_id, (0, 0))
    if balance + entry.change < 0:  # the database's conditional update
        raise InsufficientPoints(entry.amount)
    s.balances[entry.user_id] = (balance + entry.change, withdrawn + entry.withdrawn_change)
    s.held_owed[entry.user_id] = (held + entry.held_change, owed + entry.owed_change)
    s.ledger[s.next_entry_id] = entry
    s.new_events.append(ledger_event(s.next_entry_id, entry))
    s.next_entry_id += 1
    if entry.kind in ONCE_PER_ORDER:
        s.once[key] = entry


class _Repository:
    def __init__(self, work: _Work) -> None:
        self._work = work

    @property
    def _s(self) -> MemoryState:
        """Every repository call starts here, as every SQL statement starts by writing
        the saved entries."""
        return self._work.ready()


class MemoryUsers(_Repository):
    async def add(self, login: Login, password_hash: str) -> User:
        if login.value in self._s.logins:
            raise LoginTaken(login.value)
        user = User(UserId(self._s.next_id), login, password_hash)
        self._s.next_id += 1
        self._s.users[user.id] = user
        self._s.logins[login.value] = user.id
        return user

    async def by_login(self, login: Login) -> User | None:
        user_id = self._s.logins.get(login.value)
        return self._s.users[user_id] if user_id is not None else None


class MemoryOrders(_Repository):
    async def add(self, order: Order) -> bool:
        if order.number.value in self._s.orders:
            return False
        seq = len(self._s.orders) + 1
        self._s.orders[order.number.value] = QueuedOrder(order, order.uploaded_at, 0, seq)
        self._s.new_events.extend(order_events(order))
        return True

    async def get(self, number: OrderNumber) -> Order | None:
        queued = self._s.orders.get(number.value)
        return queued.order if queued else None

    async def save(self, before: Order, after: Order, next_attempt_at: datetime | None) -> bool:
        queued = self._s.orders.get(before.number.value)
        if queued is None or queued.order.status is not before.status:
            return False
        queued.order = after
        if after.status is not before.status:
            self._s.new_events.extend(order_events(after))
        queued.next_attempt_at = None if after.status.is_final else next_attempt_at
        queued.open_claims = 0
        queued.parked = None
        return True

    async def claim_due(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> list[ClaimedOrder]:
        due = sorted(
            (q for q in self._s.orders.values() if q.next_attempt_at and q.next_attempt_at <= now),
            key=lambda q: (q.next_attempt_at, q.seq),
        )[:limit]
        claimed = []
        for q in due:
            q.next_attempt_at = lease_until
            q.attempts += 1
            q.open_claims += 1
            claimed.append(
                ClaimedOrder(
                    q.order.number, q.order.status, q.attempts, taken_over=q.open_claims > 1
                )
            )
        return claimed

    async def reschedule(
        self, number: OrderNumber, at: datetime, parked: str | None = None
    ) -> None:
        queued = self._s.orders.get(number.value)
        if queued is not None and not queued.order.status.is_final:
            queued.next_attempt_at = at
            queued.open_claims = 0
            queued.parked = parked

    async def retry(self, number: OrderNumber, at: datetime) -> None:
        queued = self._s.orders.get(number.value)
        if queued is not None and queued.next_attempt_at is not None and not queued.open_claims:
            queued.next_attempt_at = at
            queued.parked = None

    async def reverse(self, number: OrderNumber, amount: Points) -> Points | None:
        queued = self._s.orders.get(number.value)
        if queued is None or queued.order.status is not OrderStatus.PROCESSED:
            return None
        accrual = queued.order.accrual.cents if queued.order.accrual else 0
        if queued.reversed + amount.cents > accrual:
            return None
        queued.reversed += amount.cents
        return Points(accrual - queued.reversed)

    async def reversed(self, number: OrderNumber) -> Points:
        queued = self._s.orders.get(number.value)
        return Points(queued.reversed if queued else 0)


def _open_hold(s: MemoryState, order: OrderNumber) -> Hold | None:
    return next(
        (h for h in s.holds.values() if h.order_number == order and h.state is HoldState.OPEN),
        None,
    )


class MemoryHolds(_Repository):
    async def add(
        self, user_id: UserId, order: OrderNumber, amount: Points, at: datetime, until: datetime
    ) -> Hold:
        if _open_hold(self._s, order) is not None:
            raise ConcurrentUpdate(f"order {order} has an open hold")
        hold = Hold(len(self._s.holds) + 1, user_id, order, amount, HoldState.OPEN, at, until)
        self._s.holds[hold.id] = hold
        return hold

    async def place(
        self, user_id: UserId, order: OrderNumber, amount: Points, at: datetime, until: datetime
    ) -> Hold | None:
        accounts = MemoryAccounts(self._work)
        account = await accounts.get(user_id)
        taken = _open_hold(self._s, order) or await accounts.withdrawal(order)
        if taken or account is None or amount > account.balance:
            return None
        hold = await self.add(user_id, order, amount, at, until)
        account.hold(hold)
        await accounts.save(account)
        return hold

    async def capture(self, user_id: UserId, hold_id: int, at: datetime) -> Hold | None:
        hold = self._s.holds.get(hold_id)
        if hold is None or hold.user_id != user_id or hold.expires_at <= at:
            return None
        if not await self.close(hold, HoldState.CAPTURED, at):
            return None
        accounts = MemoryAccounts(self._work)
        account = await accounts.get(hold.user_id)
        assert account is not None  # a hold's user has an account (a foreign key in SQL)
        account.close_hold(hold, HoldState.CAPTURED, at)
        await accounts.save(account)
        return hold.closed(HoldState.CAPTURED, at)

    async def get(self, hold_id: int) -> Hold | None:
        return self._s.holds.get(hold_id)

    async def open_for(self, order: OrderNumber) -> Hold | None:
        return _open_hold(self._s, order)

    async def close(self, hold: Hold, state: HoldState, at: datetime) -> bool:
        current = self._s.holds.get(hold.id)
        if current is None or current.state is not HoldState.OPEN:
            return False
        self._s.holds[hold.id] = current.closed(state, at)
        return True

    async def due(self, now: datetime, limit: int) -> list[Hold]:
        due = [
            h for h in self._s.holds.values() if h.state is HoldState.OPEN and h.expires_at <= now
        ]
        return sorted(due, key=lambda h: (h.expires_at, h.id))[:limit]


class MemoryAccounts(_Repository):
    async def open(self, user_id: UserId) -> None:
        self._s.balances.setdefault(user_id, (0, 0))

    async def get(self, user_id: UserId) -> Account | None:
        figures = self._s.balances.get(user_id)
        if figures is None:
            return None
        held, owed = self._s.held_owed.get(user_id, (0, 0))
        return Account(user_id, Points(figures[0]), Points(figures[1]), Points(held), Points(owed))

    async def locked(self, user_id: UserId) -> Account | None:
        return await self.get(user_id)  # the unit of work holds the store's lock

    async def withdrawal(self, order_number: OrderNumber) -> LedgerEntry | None:
        return self._s.once.get((EntryKind.WITHDRAWAL, order_number.value))

    async def refunded(self, order_number: OrderNumber) -> Points:
        return Points(
            sum(
                e.amount.cents
                for e in self._s.ledger.values()
                if e.kind is EntryKind.WITHDRAWAL_REFUND and e.order_number == order_number
            )
        )

    async def for_withdrawal(
        self, user_id: UserId, order_number: OrderNumber
    ) -> tuple[Account | None, LedgerEntry | None, bool]:
        held = _open_hold(self._s, order_number) is not None
        return await self.get(user_id), await self.withdrawal(order_number), held

    async def save(self, account: Account) -> None:
        """Records the entries only (module docstring)."""
        self._work.pending.extend(account.pending)
        account.pending.clear()


class MemoryUnitOfWork:
    def __init__(self, store: MemoryDatabase) -> None:
        self._store = store
        self._committed = False

    async def __aenter__(self) -> Self:
        await self._store.lock.acquire()
        self._work = _Work(copy.deepcopy(self._store.state))
        self.users = MemoryUsers(self._work)
        self.orders = MemoryOrders(self._work)
        self.accounts = MemoryAccounts(self._work)
        self.holds = MemoryHolds(self._work)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        try:
            if self._committed and exc_type is None:
                self._store.publish(self._work.state)
        finally:
            self._store.lock.release()

    async def commit(self) -> None:
        self._work.ready()  # the saved entries: their violations surface here
        if self._store.fail_next_commit:
            self._store.fail_next_commit = False
            raise ConnectionError("simulated failure at commit")
        self._committed = True


def memory_unit_of_work(
    database: MemoryDatabase, within: HostConnection | None = None
) -> MemoryUnitOfWork:
    """The memory store's unit of work; it has no host transaction to join."""
    if within is not None:
        raise InvalidInput("connection= joins a host's SQL transaction; this store is memory://")
    return MemoryUnitOfWork(database)
