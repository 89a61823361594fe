"""In-memory adapters for the store ports: the ``memory://`` backend.

A real backend for one process (a host's tests, a demo, a shop that keeps nothing):
what it lacks is durability, not rules. The test doubles that *do* bend the rules
(a plain-text "hasher", readable tokens, a scripted accrual system) live in
:mod:`gophermart.testing`, out of production's reach.

The unit of work is serialisable: it holds a lock for its whole life and works on a
copy of the store that replaces the original only on commit, so tests see the same
"all or nothing" behaviour as a database transaction. Unique keys and the conditional
debit are enforced here just as the SQL schema enforces them, and saved ledger entries
are applied when the SQL units of work write them: at commit, or on the unit of work's
next repository call (ports.AccountRepository.save).
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType
from typing import Self

from gophermart.application.errors import ConcurrentUpdate
from gophermart.application.ports import (
    BalanceView,
    ClaimedOrder,
    OrderView,
    QueueDepth,
    WithdrawalView,
)
from gophermart.application.reconcile import ReconcileReport
from gophermart.application.throttling import Counter, ThrottleKeys, ThrottlePolicy
from gophermart.domain.accounts import Account, EntryKind, LedgerEntry
from gophermart.domain.errors import InsufficientPoints, LoginTaken, TooManyAttempts
from gophermart.domain.orders import Order, OrderNumber, OrderStatus
from gophermart.domain.points import Points
from gophermart.domain.users import Login, User, UserId


@dataclass(slots=True)
class _QueuedOrder:
    order: Order
    next_attempt_at: datetime | None
    attempts: int = 0
    seq: int = 0
    open_claims: int = 0  # as the SQL column: claims not yet ended by save/reschedule


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


def _apply(s: MemoryState, entry: LedgerEntry) -> None:
    key = (entry.kind, entry.order_number.value)
    if key in s.ledger:
        raise ConcurrentUpdate(f"{entry.kind} for {entry.order_number} exists")
    balance, withdrawn = s.balances[entry.user_id]
    if entry.is_debit:
        if balance < entry.amount.cents:  # the database's conditional update
            raise InsufficientPoints("balance changed concurrently")
        balance, withdrawn = balance - entry.amount.cents, withdrawn + entry.amount.cents
    else:
        balance += entry.amount.cents
    s.balances[entry.user_id] = (balance, withdrawn)
    s.ledger[key] = entry


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
            raise LoginTaken(f"login {login} is taken")
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
        queued.open_claims = 0
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

    async def reschedule(self, number: OrderNumber, at: datetime) -> None:
        queued = self._s.orders.get(number.value)
        if queued is not None and not queued.order.status.is_final:
            queued.next_attempt_at = at
            queued.open_claims = 0


class MemoryAccounts(_Repository):
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
        """Records the entries only (module docstring)."""
        self._work.pending.extend(account.pending)
        account.pending.clear()


class MemoryUnitOfWork:
    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self._committed = False

    async def __aenter__(self) -> Self:
        await self._store.lock.acquire()
        self._work = _Work(copy.deepcopy(self._store.state))
        self.users = MemoryUsers(self._work)
        self.orders = MemoryOrders(self._work)
        self.accounts = MemoryAccounts(self._work)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._committed and exc_type is None:
                self._store.state = self._work.state
        finally:
            self._store.lock.release()

    async def commit(self) -> None:
        self._work.ready()  # the saved entries: their violations surface here
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

    async def orders(
        self, user_id: UserId, limit: int | None = None, before: str | None = None
    ) -> Sequence[OrderView] | None:
        if user_id not in self._store.state.balances:
            return None
        mine = [q for q in self._store.state.orders.values() if q.order.owner == user_id]
        mine.sort(key=lambda q: (q.order.uploaded_at, q.seq), reverse=True)
        if before is not None:
            cursor = next((q for q in mine if q.order.number.value == before), None)
            after = (cursor.order.uploaded_at, cursor.seq) if cursor is not None else None
            mine = [q for q in mine if after is not None and (q.order.uploaded_at, q.seq) < after]
        if limit is not None:
            mine = mine[:limit]
        return [
            OrderView(q.order.number.value, q.order.status, q.order.accrual, q.order.uploaded_at)
            for q in mine
        ]

    async def withdrawals(self, user_id: UserId) -> Sequence[WithdrawalView] | None:
        if user_id not in self._store.state.balances:
            return None
        mine = [
            e
            for e in self._store.state.ledger.values()
            if e.user_id == user_id and e.kind is EntryKind.WITHDRAWAL
        ]
        # dicts keep insertion order, so the reversed list is newest first on equal times
        mine.reverse()
        mine.sort(key=lambda e: e.at, reverse=True)
        return [WithdrawalView(e.order_number.value, e.amount, e.at) for e in mine]


class MemoryLoginThrottle:
    """The login throttle of one process (:mod:`~gophermart.application.throttling`'s
    policy over a bounded dict): for tests and embedding. A deployment of several
    processes uses the database's (``adapters.sql.throttle``), shared by all of them.
    """

    def __init__(
        self,
        policy: ThrottlePolicy | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        max_keys: int = 100_000,
    ) -> None:
        self.policy = policy or ThrottlePolicy()
        self._clock = clock
        self._sleep = sleep
        self._max_keys = max_keys
        self._counters: OrderedDict[str, Counter] = OrderedDict()

    async def attempt(self, login: str, client: str) -> None:
        keys = ThrottleKeys.of(login, client)
        stored = {k: c for k in keys.all() if (c := self._counters.get(k)) is not None}
        decision = self.policy.attempt(keys, stored, self._clock())
        if decision.retry_after is not None:
            raise TooManyAttempts(decision.retry_after)
        for key, counter in decision.counters.items():
            self._counters[key] = counter
            self._counters.move_to_end(key)
        while len(self._counters) > self._max_keys:
            self._counters.popitem(last=False)
        if decision.delay > 0:
            await self._sleep(decision.delay)

    async def succeeded(self, login: str, client: str) -> None:
        keys = ThrottleKeys.of(login, client)
        self._counters.pop(keys.pair, None)
        self._counters.pop(keys.login, None)
        client_counter = self.policy.succeeded(self._counters.get(keys.client))
        if client_counter is not None:
            self._counters[keys.client] = client_counter


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


class MemoryLedgerAudit:
    """:class:`~gophermart.application.reconcile.LedgerAudit` over the committed state."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    async def reconcile(self) -> ReconcileReport:
        state = self._store.state
        problems: list[str] = []
        for user_id, (balance, withdrawn) in sorted(state.balances.items()):
            mine = [e for e in state.ledger.values() if e.user_id == user_id]
            credits = sum(e.amount.cents for e in mine if not e.is_debit)
            debits = sum(e.amount.cents for e in mine if e.is_debit)
            if balance != credits - debits or withdrawn != debits:
                problems.append(
                    f"user {user_id}: balance {Points(balance)} withdrawn {Points(withdrawn)}, "
                    f"but the ledger says credits {Points(credits)} - debits {Points(debits)}"
                )
        processed = [
            q.order for q in state.orders.values() if q.order.status is OrderStatus.PROCESSED
        ]
        for order in processed:
            if order.credit is None:
                continue
            entry = state.ledger.get((EntryKind.ACCRUAL, order.number.value))
            if entry is None:
                problems.append(f"order {order.number}: PROCESSED with points but never credited")
            elif entry.amount != order.credit or entry.user_id != order.owner:
                problems.append(
                    f"order {order.number}: accrual {order.credit} for user {order.owner}, "
                    f"credit {entry.amount} to user {entry.user_id}"
                )
        for (kind, number), entry in state.ledger.items():
            queued = state.orders.get(number)
            if kind is EntryKind.ACCRUAL and (
                queued is None or queued.order.status is not OrderStatus.PROCESSED
            ):
                problems.append(
                    f"credit for order {number} (user {entry.user_id}) has no PROCESSED order"
                )
        return ReconcileReport(len(state.balances), len(processed), len(state.ledger), problems)


class MemoryQueueProbe:
    """The accrual queue's depth in the in-memory store (the QueueProbe port)."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    async def depth(self, now: datetime, overdue_after: float) -> QueueDepth:
        overdue_before = now - timedelta(seconds=overdue_after)
        queued = [
            (q.next_attempt_at, q.open_claims > 0)
            for q in self._store.state.orders.values()
            if q.next_attempt_at is not None
        ]
        return QueueDepth(
            due=sum(1 for at, _ in queued if at <= now),
            overdue=sum(1 for at, _ in queued if at <= overdue_before),
            scheduled=sum(1 for at, held in queued if at > now and not held),
            leased=sum(1 for at, held in queued if at > now and held),
        )
