"""In-memory adapters for every port: fast fakes for unit tests, and a way to embed.

The unit of work is serialisable: it holds a lock for its whole life and works on a
copy of the store that replaces the original only on commit, so tests see the same
"all or nothing" behaviour as a database transaction. Unique keys and the conditional
debit are enforced here just as the SQL schema enforces them.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType
from typing import Self

from gophermart.application.errors import ConcurrentUpdate, Unauthenticated
from gophermart.application.ports import (
    AccrualAnswer,
    AccrualReply,
    BalanceView,
    ClaimedOrder,
    OrderView,
    WithdrawalView,
)
from gophermart.domain.accounts import Account, EntryKind, LedgerEntry
from gophermart.domain.errors import InsufficientPoints, LoginTaken
from gophermart.domain.orders import AccrualVerdict, Order, OrderNumber
from gophermart.domain.points import Points
from gophermart.domain.users import Login, Password, User, UserId


@dataclass(slots=True)
class _QueuedOrder:
    order: Order
    next_attempt_at: datetime | None
    attempts: int = 0
    seq: int = 0


@dataclass(slots=True)
class MemoryState:
    users: dict[UserId, User] = field(default_factory=dict)
    logins: dict[str, UserId] = field(default_factory=dict)
    orders: dict[str, _QueuedOrder] = field(default_factory=dict)
    balances: dict[UserId, tuple[int, int]] = field(default_factory=dict)  # (balance, withdrawn)
    ledger: dict[tuple[EntryKind, str], LedgerEntry] = field(default_factory=dict)
    next_id: int = 1


class MemoryStore:
    """The committed state plus the lock that serialises units of work."""

    def __init__(self) -> None:
        self.state = MemoryState()
        self.lock = asyncio.Lock()
        #: Set by tests to make the next commit fail, as a crash or lost connection would.
        self.fail_next_commit = False


class MemoryUsers:
    def __init__(self, state: MemoryState) -> None:
        self._s = state

    async def add(self, login: Login, password_hash: str) -> User:
        if login.value in self._s.logins:
            raise LoginTaken(f"login {login} is taken")
        user = User(UserId(self._s.next_id), login, password_hash)
        self._s.next_id += 1
        self._s.users[user.id] = user
        self._s.logins[login.value] = user.id
        return user

    async def by_login(self, login: Login) -> User | None:
        user_id = self._s.logins.get(login.value)
        return self._s.users[user_id] if user_id is not None else None


class MemoryOrders:
    def __init__(self, state: MemoryState) -> None:
        self._s = state

    async def add(self, order: Order) -> bool:
        if order.number.value in self._s.orders:
            return False
        seq = len(self._s.orders) + 1
        self._s.orders[order.number.value] = _QueuedOrder(order, order.uploaded_at, 0, seq)
        return True

    async def get(self, number: OrderNumber) -> Order | None:
        queued = self._s.orders.get(number.value)
        return queued.order if queued else None

    async def save(self, before: Order, after: Order, next_attempt_at: datetime | None) -> bool:
        queued = self._s.orders.get(before.number.value)
        if queued is None or queued.order.status is not before.status:
            return False
        queued.order = after
        queued.next_attempt_at = None if after.status.is_final else next_attempt_at
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
            claimed.append(ClaimedOrder(q.order.number, q.order.status, q.attempts))
        return claimed

    async def reschedule(self, number: OrderNumber, at: datetime) -> None:
        queued = self._s.orders.get(number.value)
        if queued is not None and not queued.order.status.is_final:
            queued.next_attempt_at = at


class MemoryAccounts:
    def __init__(self, state: MemoryState) -> None:
        self._s = state

    async def open(self, user_id: UserId) -> None:
        self._s.balances.setdefault(user_id, (0, 0))

    async def get(self, user_id: UserId) -> Account | None:
        figures = self._s.balances.get(user_id)
        if figures is None:
            return None
        return Account(user_id, Points(figures[0]), Points(figures[1]))

    async def withdrawal(self, order_number: OrderNumber) -> LedgerEntry | None:
        return self._s.ledger.get((EntryKind.WITHDRAWAL, order_number.value))

    async def for_withdrawal(
        self, user_id: UserId, order_number: OrderNumber
    ) -> tuple[Account | None, LedgerEntry | None]:
        return await self.get(user_id), await self.withdrawal(order_number)

    async def save(self, account: Account) -> None:
        for entry in account.pending:
            key = (entry.kind, entry.order_number.value)
            if key in self._s.ledger:
                raise ConcurrentUpdate(f"{entry.kind} for {entry.order_number} exists")
            balance, withdrawn = self._s.balances[entry.user_id]
            if entry.is_debit:
                if balance < entry.amount.cents:  # the database's conditional update
                    raise InsufficientPoints("balance changed concurrently")
                balance, withdrawn = balance - entry.amount.cents, withdrawn + entry.amount.cents
            else:
                balance += entry.amount.cents
            self._s.balances[entry.user_id] = (balance, withdrawn)
            self._s.ledger[key] = entry
        account.pending.clear()


class MemoryUnitOfWork:
    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self._committed = False

    async def __aenter__(self) -> Self:
        await self._store.lock.acquire()
        self._state = copy.deepcopy(self._store.state)
        self.users = MemoryUsers(self._state)
        self.orders = MemoryOrders(self._state)
        self.accounts = MemoryAccounts(self._state)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._committed and exc_type is None:
                self._store.state = self._state
        finally:
            self._store.lock.release()

    async def commit(self) -> None:
        if self._store.fail_next_commit:
            self._store.fail_next_commit = False
            raise ConnectionError("simulated failure at commit")
        self._committed = True


class MemoryReadModel:
    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    async def balance(self, user_id: UserId) -> BalanceView | None:
        figures = self._store.state.balances.get(user_id)
        if figures is None:
            return None
        return BalanceView(Points(figures[0]), Points(figures[1]))

    async def orders(self, user_id: UserId) -> Sequence[OrderView]:
        mine = [q for q in self._store.state.orders.values() if q.order.owner == user_id]
        mine.sort(key=lambda q: (q.order.uploaded_at, q.seq), reverse=True)
        return [
            OrderView(q.order.number.value, q.order.status, q.order.accrual, q.order.uploaded_at)
            for q in mine
        ]

    async def withdrawals(self, user_id: UserId) -> Sequence[WithdrawalView]:
        mine = [
            e
            for e in self._store.state.ledger.values()
            if e.user_id == user_id and e.kind is EntryKind.WITHDRAWAL
        ]
        # dicts keep insertion order, so the reversed list is newest first on equal times
        mine.reverse()
        mine.sort(key=lambda e: e.at, reverse=True)
        return [WithdrawalView(e.order_number.value, e.amount, e.at) for e in mine]


class PlainPasswordHasher:
    """A transparent 'hash' for unit tests, where argon2's cost would only slow them."""

    async def hash(self, password: Password) -> str:
        return "plain$" + password.value

    async def verify(self, password_hash: str | None, password: Password) -> bool:
        return password_hash == "plain$" + password.value


class CountingTokens:
    """Opaque tokens ``t<user_id>`` for unit tests."""

    def issue(self, user_id: UserId) -> str:
        return f"t{user_id}"

    def verify(self, token: str) -> UserId:
        if not token.startswith("t") or not token[1:].isdigit():
            raise Unauthenticated("bad token")
        return UserId(int(token[1:]))


class NoThrottle:
    def check(self, login: str, client: str) -> None:
        return None

    def failed(self, login: str, client: str) -> None:
        return None

    def succeeded(self, login: str, client: str) -> None:
        return None


class MemoryGate:
    """The fleet-wide accrual gate of one process: pause, then pace to N per minute.

    Like the SQL gate, a learnt rate is forgotten ``rate_ttl`` seconds after the pause it
    came with ends (each further 429 pushes that on).
    """

    def __init__(self, margin: float = 1.02, rate_ttl: float = 60.0) -> None:
        self.paused_until: datetime | None = None
        self.per_minute: int | None = None
        self.rate_expires_at: datetime | None = None
        self._next_slot: datetime | None = None
        self._margin = margin
        self._rate_ttl = timedelta(seconds=rate_ttl)

    async def pause(self, until: datetime, per_minute: int | None) -> None:
        if self.paused_until is None or until > self.paused_until:
            self.paused_until = until
        live = self.rate_expires_at is not None and self.rate_expires_at > self.paused_until
        self.per_minute = per_minute or (self.per_minute if live else None)
        self.rate_expires_at = self.paused_until + self._rate_ttl if self.per_minute else None
        if self._next_slot is None or self._next_slot < self.paused_until:
            self._next_slot = self.paused_until

    def rate(self) -> int | None:
        return self.per_minute

    async def reserve(self, now: datetime) -> datetime:
        if self.rate_expires_at is not None and self.rate_expires_at <= now:
            self.per_minute = self.rate_expires_at = self._next_slot = None
        start = now
        if self.paused_until is not None and self.paused_until > start:
            start = self.paused_until
        if self.per_minute:
            if self._next_slot is not None and self._next_slot > start:
                start = self._next_slot
            if self.rate_expires_at is not None and start >= self.rate_expires_at:
                return max(now, self.rate_expires_at)  # forgotten before this slot comes
            self._next_slot = start + timedelta(seconds=60.0 * self._margin / self.per_minute)
        return start


class ScriptedAccrual:
    """A fake accrual client: answers from a script per order, defaulting to 204."""

    def __init__(self) -> None:
        self.script: dict[str, list[AccrualAnswer]] = {}
        self.calls: list[str] = []

    def will_answer(self, number: str, *answers: AccrualAnswer) -> None:
        self.script.setdefault(number, []).extend(answers)

    async def fetch(self, number: OrderNumber) -> AccrualAnswer:
        self.calls.append(number.value)
        queue = self.script.get(number.value)
        if queue:
            return queue.pop(0) if len(queue) > 1 else queue[0]
        return AccrualReply(AccrualVerdict.UNKNOWN)


class EventCounter:
    def __init__(self) -> None:
        self.count = 0
        self.event = asyncio.Event()

    def order_uploaded(self) -> None:
        self.count += 1
        self.event.set()
