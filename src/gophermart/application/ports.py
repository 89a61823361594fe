"""The ports: what the use cases need from the outside world.

Adapters implement them (SQL, in-memory, argon2, JWT, httpx); the use cases depend on
these protocols only, so the core is tested with in-memory fakes.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, Final, NamedTuple, Protocol, Self

from gophermart.domain.accounts import Account, EntryKind, Hold, HoldState, LedgerEntry
from gophermart.domain.events import Event
from gophermart.domain.operators import OperatorName
from gophermart.domain.orders import AccrualVerdict, Order, OrderNumber, OrderStatus
from gophermart.domain.points import Points
from gophermart.domain.users import Login, Password, User, UserId
from gophermart.domain.webhooks import Attempt, DeliveryState


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


#: What :meth:`PasswordHasher.verify` awaits when a check gets its turn on the hasher.
Admitted = Callable[[], Awaitable[None]] | None


class PasswordHasher(Protocol):
    """Slow, salted password hashes. Both verbs wait their turn in a bounded line and
    raise :class:`~gophermart.application.errors.Overloaded` at once when it is full;
    a caller cancelled while waiting leaves the line, and its hash is never computed."""

    async def hash(self, password: Password) -> str: ...

    async def verify(
        self, password_hash: str | None, password: Password, admitted: Admitted = None
    ) -> bool:
        """Check ``password`` against ``password_hash``.

        ``None`` (no such user) must cost the same as a wrong password, so the answer
        time does not reveal which logins exist. ``admitted`` is awaited when the check
        gets its turn, just before it runs (the login throttle counts the attempt
        there); if it raises, nothing is hashed.
        """
        ...


class TokenIssuer(Protocol):
    def issue(self, user_id: UserId) -> str: ...

    def verify(self, token: str) -> UserId:
        """The user a token speaks for; :class:`~.errors.Unauthenticated` otherwise."""
        ...


class LoginThrottle(Protocol):
    """Slows down password guessing (the policy: :mod:`gophermart.application.throttling`).

    Production keeps the counters in the database, so every process of a deployment
    counts the same guesses. ``client`` is the caller's address, ``device`` the token
    its device cookie carries (``None`` without one).
    """

    async def check(self, login: str, client: str, device: str | None = None) -> None:
        """Before the attempt queues for its password check; counts nothing.

        Raises :class:`~gophermart.domain.errors.TooManyAttempts` when the login, or
        this address's attempts on it, is locked out (the login's lock spares the
        addresses and devices that logged in to it before); may wait a little first
        when the address has failed a lot (slowed, never locked).
        """
        ...

    async def attempt(self, login: str, client: str, device: str | None = None) -> None:
        """Count the attempt, as a failure, just before its password is checked;
        :class:`~gophermart.domain.errors.TooManyAttempts` (nothing counted) if a lock
        began since :meth:`check`."""
        ...

    async def succeeded(self, login: str, client: str, device: str | None = None) -> str | None:
        """The password was right: clear the pair's failures, un-count the attempt,
        remember the address and the device; the device token to hand back."""
        ...

    async def remember(self, login: str, client: str, device: str | None = None) -> str | None:
        """A new account: remember its address and device; the device token."""
        ...


class UserRepository(Protocol):
    async def add(self, login: Login, password_hash: str) -> User:
        """Insert a user; :class:`~gophermart.domain.errors.LoginTaken` if the login exists."""
        ...

    async def by_login(self, login: Login) -> User | None: ...


@dataclass(frozen=True, slots=True)
class ClaimedOrder:
    """An order the worker leased for one poll; ``attempts`` counts polls so far.

    ``taken_over``: the order's previous claim was never ended by a save or a reschedule;
    its lease ran out (the worker holding it died, or failed) and this claim took over.
    """

    number: OrderNumber
    status: OrderStatus
    attempts: int
    taken_over: bool = False


class OrderRepository(Protocol):
    async def add(self, order: Order) -> bool:
        """Insert a new order, due for polling at once; ``False`` if the number exists."""
        ...

    async def reverse(self, number: OrderNumber, amount: Points) -> Points | None:
        """Count ``amount`` more as reversed of a PROCESSED order's accrual, if that
        keeps every reversal of it within the accrual: what is left of it after this
        one; ``None`` (nothing changed) if it would not."""
        ...

    async def reversed(self, number: OrderNumber) -> Points:
        """What reversals took of the order's accrual so far."""
        ...

    async def get(self, number: OrderNumber) -> Order | None: ...

    async def save(self, before: Order, after: Order, next_attempt_at: datetime | None) -> bool:
        """Store ``after`` if the stored status is still ``before.status``.

        ``False`` means another worker moved the order first: the caller must not go on
        (no credit). ``next_attempt_at`` is ``None`` once the order is final.
        """
        ...

    async def claim_due(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> list[ClaimedOrder]:
        """Lease up to ``limit`` due, non-final orders until ``lease_until``.

        Safe with any number of concurrent workers (``FOR UPDATE SKIP LOCKED`` on
        PostgreSQL); a crashed worker's lease simply runs out and the order is due again.
        A claim stays open until :meth:`save` or :meth:`reschedule` ends it; an order
        claimed while its previous claim is still open comes back ``taken_over``.
        """
        ...

    async def reschedule(
        self, number: OrderNumber, at: datetime, parked: str | None = None
    ) -> None:
        """Set when a non-final order is next polled (no effect on final orders).

        ``parked``: why the order is parked (a credit that cannot be applied), shown to
        operators until the order is saved, rescheduled without a reason, or retried.
        """
        ...

    async def retry(self, number: OrderNumber, at: datetime) -> None:
        """An operator's retry: a non-final order that no worker holds now is due at
        ``at`` and no longer parked (an order being polled, or final, is left alone)."""
        ...


class AccountRepository(Protocol):
    async def open(self, user_id: UserId) -> None:
        """Create the empty account of a new user."""
        ...

    async def get(self, user_id: UserId) -> Account | None: ...

    async def withdrawal(self, order_number: OrderNumber) -> LedgerEntry | None:
        """The withdrawal already recorded for ``order_number``, if any."""
        ...

    async def for_withdrawal(
        self, user_id: UserId, order_number: OrderNumber
    ) -> tuple[Account | None, LedgerEntry | None, bool]:
        """``get(user_id)``, ``withdrawal(order_number)`` and whether an open hold
        reserves points for the order: what deciding a withdrawal needs, which a store
        may read in one round trip."""
        ...

    async def locked(self, user_id: UserId) -> Account | None:
        """``get(user_id)``, the account's row locked until the unit of work ends (a
        store with row locks): what a movement decided on its figures needs."""
        ...

    async def refunded(self, order_number: OrderNumber) -> Points:
        """What refunds have given back of the order's withdrawal so far."""
        ...

    async def save(self, account: Account) -> None:
        """Record ``account.pending`` entries (and clear them); nothing is checked or
        written yet, and this never raises their rule violations.

        The unit of work writes each entry with its balance effect, atomically, at
        :meth:`UnitOfWork.commit`, or earlier if the unit of work makes another
        repository call first (which then sees them: read-your-writes). The store
        enforces the rules again as it writes: a debit is a conditional update
        (``balance >= amount``) raising :class:`InsufficientPoints` if it lost a race;
        a duplicate (kind, order) raises :class:`~.errors.ConcurrentUpdate`.

        The one rule for every store: such an error comes from the call that writes the
        entries, which is :meth:`UnitOfWork.commit` when ``save`` is followed by the
        commit (as in every use case). The unit of work is then finished: any later
        call raises the same error, and nothing of it is written.
        """
        ...


class HoldRepository(Protocol):
    async def add(
        self, user_id: UserId, order: OrderNumber, amount: Points, at: datetime, until: datetime
    ) -> Hold:
        """A new open hold (its id given by the store); :class:`ConcurrentUpdate` if the
        order has an open hold already (the store's unique index says so)."""
        ...

    async def place(
        self, user_id: UserId, order: OrderNumber, amount: Points, at: datetime, until: datetime
    ) -> Hold | None:
        """A new open hold, its entry and the account's change at once, if the order has
        no open hold and no withdrawal and the balance covers ``amount``; ``None`` and
        nothing written otherwise (the caller reads why). :class:`ConcurrentUpdate` if
        another hold of the order got in first."""
        ...

    async def capture(self, user_id: UserId, hold_id: int, at: datetime) -> Hold | None:
        """Capture the user's open hold not past its expiry at once: closed, its release
        and its order's withdrawal written, the account's held points spent; the hold as
        it is now. ``None`` and nothing written if it is not the user's, not open or has
        expired (the caller reads why); :class:`ConcurrentUpdate` if the order was paid
        with points meanwhile."""
        ...

    async def get(self, hold_id: int) -> Hold | None: ...

    async def open_for(self, order: OrderNumber) -> Hold | None:
        """The order's open hold, if it has one."""
        ...

    async def close(self, hold: Hold, state: HoldState, at: datetime) -> bool:
        """Move an open hold to ``state``; ``False`` if it was not open any more (another
        writer closed it first: a hold is closed exactly once)."""
        ...

    async def due(self, now: datetime, limit: int) -> list[Hold]:
        """Open holds past their ``expires_at``, oldest first, at most ``limit``."""
        ...


class UnitOfWork(Protocol):
    """One database transaction. Rolls back on exit unless :meth:`commit` was called."""

    users: UserRepository
    orders: OrderRepository
    accounts: AccountRepository
    holds: HoldRepository

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None:
        """Write the ledger entries saved and not written yet, then commit.

        Raises their rule violations (:meth:`AccountRepository.save`), or one raised
        earlier in this unit of work, and then commits nothing.
        """
        ...


class HostConnection(Protocol):
    """A host's own database connection, inside a transaction the host controls (what
    SQLAlchemy's ``AsyncConnection`` is): a unit of work opened *within* it writes in a
    savepoint of that transaction, so its writes commit or roll back with the host's."""

    @property
    def dialect(self) -> Any: ...

    def begin_nested(self) -> Any: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self, within: HostConnection | None = None) -> UnitOfWork:
        """A new unit of work: its own transaction, or ``within`` a host's."""
        ...


# --- the read side: listings skip the domain model --------------------------------


NO_POINTS: Final = Points(0)


@dataclass(frozen=True, slots=True)
class BalanceView:
    """``current``: what can still be spent or held; ``held``: what open holds keep;
    ``owed``: reversed points that had already been spent, paid off from later credits."""

    current: Points
    withdrawn: Points
    held: Points = NO_POINTS
    owed: Points = NO_POINTS


@dataclass(frozen=True, slots=True)
class OrderView:
    number: str
    status: OrderStatus
    accrual: Points | None
    uploaded_at: datetime


@dataclass(frozen=True, slots=True)
class WithdrawalView:
    order: str
    sum: Points
    processed_at: datetime


@dataclass(frozen=True, slots=True)
class HistoryView:
    """One ledger entry as its owner sees it: ``change`` and ``owed_change`` are signed
    hundredths (what it did to the balance and to the owed points), ``balance_after`` the
    balance once it was written. ``id`` is opaque (a page's cursor)."""

    id: str
    kind: EntryKind
    order: str | None
    change: int
    balance_after: Points
    owed_change: int
    reason: str | None
    operator: str | None
    hold_id: int | None
    created_at: datetime

    @property
    def amount(self) -> Decimal:
        """``change`` in points, exactly (negative for a debit)."""
        return Decimal(self.change).scaleb(-2)


@dataclass(frozen=True, slots=True)
class UserAccountView:
    """A user's account as an operator sees it (``GET /api/admin/users/{login}``)."""

    id: UserId
    login: str
    current: Points
    withdrawn: Points
    held: Points
    owed: Points
    #: The open holds, oldest first.
    holds: Sequence[Hold] = ()


@dataclass(frozen=True, slots=True)
class OrderState:
    """An order as an operator sees it (``GET /api/admin/orders/{number}``): where it
    stands in the accrual queue as well as its status."""

    number: str
    login: str
    status: OrderStatus
    accrual: Points | None
    #: Polls so far.
    attempts: int
    #: When it is next polled (or its lease ends, while a worker polls it); ``None``
    #: once final.
    next_attempt_at: datetime | None
    #: Why the order is parked (its credit cannot be applied), or ``None``.
    parked: str | None
    #: What reversals took back of the accrual.
    reversed: Points


class ReadModel(Protocol):
    """The listings. Each answers ``None`` for a user that does not exist (any more), so
    a credential naming one is refused rather than shown an empty list: a store should
    tell "no such user" from "no rows" in the same round trip (e.g. by reading from
    the account with an outer join)."""

    async def balance(self, user_id: UserId) -> BalanceView | None: ...

    async def orders(
        self, user_id: UserId, limit: int | None = None, before: str | None = None
    ) -> Sequence[OrderView] | None:
        """Newest upload first; ``None`` if there is no such user.

        A page: at most ``limit`` orders (all without it), and with ``before`` (an
        order number) only those listed after the user's order of that number; none
        if it is not one of the user's orders. Without either, the whole list.
        """
        ...

    async def withdrawals(
        self, user_id: UserId, limit: int | None = None, before: str | None = None
    ) -> Sequence[WithdrawalView] | None:
        """Newest first; ``None`` if there is no such user. Pages as :meth:`orders`
        does, ``before`` naming the withdrawal's order number."""
        ...

    async def history(
        self, user_id: UserId, limit: int, before: int | None = None
    ) -> Sequence[HistoryView] | None:
        """The user's ledger entries, newest first, at most ``limit``, those before the
        entry ``before`` (an id) when given; ``None`` if there is no such user."""
        ...

    async def holds(self, user_id: UserId) -> Sequence[Hold] | None:
        """The user's open holds, oldest first; ``None`` if there is no such user."""
        ...

    async def user_by_login(self, login: str) -> UserAccountView | None:
        """The account of the user registered under exactly ``login``; ``None`` if none."""
        ...

    async def order_state(self, number: str) -> OrderState | None:
        """The order numbered ``number``, whoever uploaded it; ``None`` if none."""
        ...


# --- operators' keys ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredOperator:
    """An operator as the store keeps it: the name, the hash of the key (never the
    key), and whether the key was revoked."""

    name: OperatorName
    key_hash: str
    created_at: datetime
    revoked_at: datetime | None = None


class OperatorKeys(Protocol):
    """Operators' names and the hashes of their keys (a cold path: no shopper's request
    touches it). Names are unique; a revoked name may be given a new key."""

    async def add(self, name: OperatorName, key_hash: str, at: datetime) -> bool:
        """Keep ``key_hash`` as ``name``'s key; ``False`` (nothing changed) if ``name``
        holds an unrevoked key already. A revoked name gets the new key."""
        ...

    async def revoke(self, name: OperatorName, at: datetime) -> bool:
        """Revoke ``name``'s key; ``False`` if it holds none (unknown, or revoked)."""
        ...

    async def by_hash(self, key_hash: str) -> StoredOperator | None:
        """The operator whose key hashes to ``key_hash``, revoked or not."""
        ...


# --- idempotency keys ---------------------------------------------------------------


class ClaimOutcome(enum.Enum):
    """What :meth:`IdempotencyKeys.claim` found."""

    #: The key was free: the caller runs the request, then completes or abandons it.
    NEW = "new"
    #: The same request ran already: its answer is in the claim.
    REPLAY = "replay"
    #: The same request is still running (or its process died before storing the answer).
    IN_PROGRESS = "in_progress"
    #: The key was used with another request.
    MISMATCH = "mismatch"


@dataclass(frozen=True, slots=True)
class Claim:
    """A claim of an idempotency key; a :attr:`~ClaimOutcome.REPLAY` carries the stored
    answer (status, body, content type)."""

    outcome: ClaimOutcome
    status: int | None = None
    body: bytes = b""
    content_type: str | None = None


class IdempotencyKeys(Protocol):
    """The answers of the writes that carried an ``Idempotency-Key``, by caller (``user:42``,
    ``operator:ops``) and key. ``fingerprint`` tells one request from another (the HTTP
    layer hashes its method, path and body); a key is the caller's, never shared."""

    async def claim(self, caller: str, key: str, fingerprint: str, now: datetime) -> Claim:
        """Take the key for a new request (``NEW``: kept as in progress, from ``now``), or
        say what holds it: the stored answer of the same request, the same request in
        progress, or another request. Safe under any concurrency: one claim wins."""
        ...

    async def complete(
        self, caller: str, key: str, status: int, body: bytes, content_type: str
    ) -> None:
        """Store the answer of the request that claimed the key."""
        ...

    async def abandon(self, caller: str, key: str) -> None:
        """Forget a key still in progress (its request failed, nothing changed): a retry
        with it runs again. A completed key is left alone."""
        ...

    async def prune(self, older_than: datetime, limit: int) -> int:
        """Delete up to ``limit`` keys claimed before ``older_than``, oldest first;
        how many were deleted."""
        ...


# --- the accrual system ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccrualReply:
    """A definite answer about one order (HTTP 200 or 204)."""

    verdict: AccrualVerdict
    accrual: Points | None = None


@dataclass(frozen=True, slots=True)
class RateLimited:
    """HTTP 429: pause everything for ``retry_after`` seconds, then pace to the limit."""

    retry_after: float
    per_minute: int | None


@dataclass(frozen=True, slots=True)
class Unavailable:
    """5xx, timeout, network error or a garbled answer: try again later. Never final."""

    reason: str
    #: What went wrong, for metrics: ``5xx``, ``http_other`` (another unexpected status),
    #: ``timeout``, ``network`` or ``bad_answer`` (unreadable, unknown status, another
    #: order's answer, an accrual that cannot be credited); ``error`` when unknown.
    kind: str = "error"
    #: The system itself could not be reached (connection refused, DNS, connect
    #: timeout): an outage of every poll, not this order's trouble.
    unreachable: bool = False


AccrualAnswer = AccrualReply | RateLimited | Unavailable


class AccrualClient(Protocol):
    async def fetch(self, number: OrderNumber) -> AccrualAnswer: ...


class AccrualGate(Protocol):
    """Fleet-wide state of our conversation with the accrual system.

    Shared by every worker process (a database row in production) so that a 429 seen by
    one pauses all, and the announced rate is kept by all together.
    """

    async def pause(self, until: datetime, per_minute: int | None) -> None: ...

    def rate(self) -> int | None:
        """The announced requests-per-minute limit, once one is known and until it
        expires (a learnt rate is a hint: it is forgotten a while after the last 429)."""
        ...

    async def reserve(self, now: datetime) -> datetime:
        """The instant at which the caller may send its next request (``now`` if free)."""
        ...


class OrderEvents(Protocol):
    """Tells the worker that a new order was committed, so it polls at once."""

    def order_uploaded(self) -> None: ...


# --- events: the feed of what happened (SPEC "Events") ------------------------------


class EventFeed(Protocol):
    """The committed events, in id order (ids increase in commit order: an event
    committed after another was read has a larger id, so a reader never misses one by
    reading on from its last id). Provided by every store."""

    async def after(self, cursor: int, limit: int) -> Sequence[Event]:
        """Up to ``limit`` events with ``id > cursor``, in id order; only committed ones,
        and never one that a later call could find *before* an id already answered.
        Raises :class:`~gophermart.domain.events.EventsPruned` when events after
        ``cursor`` were pruned (retention)."""
        ...

    async def last_id(self) -> int:
        """The newest event's id (0 when none was ever written): "from now on"."""
        ...

    async def wait(self, cursor: int, seconds: float) -> None:
        """Return once an event after ``cursor`` may be there, or after ``seconds``
        (whichever is first; never raises for the timeout). A hint: read :meth:`after`
        then."""
        ...


class EventUpkeep(Protocol):
    """The worker's chores on the feed (each store's own)."""

    async def sequence(self) -> int:
        """Make committed events readable, if the store needs to (PostgreSQL numbers
        its outbox's rows in commit order); how many events were written since the
        last call (for the events-written metric)."""
        ...

    async def prune(self, older_than: datetime, keep_from: int | None, limit: int) -> int:
        """Delete up to ``limit`` of the oldest events whose ``at`` is before
        ``older_than``, never one with ``id >= keep_from``, and never one after an
        event that is kept (what is kept is always every event after some id). Returns
        how many were deleted; the feed then answers a cursor before them with
        :class:`~gophermart.domain.events.EventsPruned`."""
        ...


class RetentionFloor(Protocol):
    """Who still needs old events (the webhooks: the oldest undelivered one): retention
    never prunes an event with ``id >=`` the floor. ``None``: nobody needs any."""

    async def keep_from(self) -> int | None: ...


class NoRetentionFloor:
    async def keep_from(self) -> int | None:
        return None


# --- what the worker reports (metrics) -------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueDepth:
    """The accrual queue at one instant: non-final orders by where they stand."""

    due: int  # next_attempt_at has passed: waiting for a worker to claim them
    overdue: int  # due for longer than the threshold: no worker is keeping up
    scheduled: int  # not due yet and held by no worker: backing off, or paused
    leased: int = 0  # claimed by a worker whose lease has not run out: being polled


@dataclass(frozen=True, slots=True)
class LedgerGauges:
    """The ledger's open positions at one instant: open holds and what they keep,
    accounts that owe points and how many."""

    holds_open: int
    held: Points
    accounts_owing: int
    owed: Points


class QueueProbe(Protocol):
    """What the metrics scrape reads from the store: aggregates over partial indexes."""

    async def depth(self, now: datetime, overdue_after: float) -> QueueDepth: ...

    async def ledger_gauges(self) -> LedgerGauges: ...


class EventMetrics(Protocol):
    """Events of the accrual worker and of the ledger, for an operator's metrics. Every
    method must be cheap and must never raise (the default, :class:`NoEventMetrics`,
    does nothing)."""

    def polled(self, outcome: str) -> None:
        """One answer from the accrual system. ``outcome``: ``200_registered``,
        ``200_processing``, ``200_invalid``, ``200_processed``, ``204``, ``429``, or an
        :attr:`Unavailable.kind` (``5xx``, ``timeout``, ``bad_answer``, ...)."""

    def credited(self, points: Points) -> None:
        """A PROCESSED order's accrual was committed to its owner's balance."""

    def rate_limited(self, until: datetime, per_minute: int | None) -> None:
        """The fleet pauses until ``until`` (may be past), then keeps to ``per_minute``;
        also called when a learnt rate is forgotten (``per_minute`` None)."""

    def lease_expired(self, count: int) -> None:
        """``count`` orders were claimed whose previous lease had run out: a worker
        died (or stalled) holding them. Crash pickups."""

    def parked(self) -> None:
        """A credit could not be applied (past what a balance holds): the order is parked."""

    def holds_expired(self, count: int) -> None:
        """``count`` holds passed their ``expires_at`` and were released by the service."""

    def reversed(self, points: Points, owed: Points) -> None:
        """An accrual reversal of ``points`` was made, ``owed`` of them beyond the
        balance (counted when our unit of work commits; inside a host's transaction
        that is before the host's own commit)."""

    def events_written(self, count: int) -> None:
        """``count`` events became readable in the feed (the worker's count: on
        PostgreSQL the sequencer's moves, elsewhere the feed's growth)."""


class NoEventMetrics:
    """The default: metrics are off, or the host collects none."""

    def polled(self, outcome: str) -> None:
        pass

    def credited(self, points: Points) -> None:
        pass

    def rate_limited(self, until: datetime, per_minute: int | None) -> None:
        pass

    def lease_expired(self, count: int) -> None:
        pass

    def parked(self) -> None:
        pass

    def holds_expired(self, count: int) -> None:
        pass

    def reversed(self, points: Points, owed: Points) -> None:
        pass

    def events_written(self, count: int) -> None:
        pass


# --- a store's life (what the composition root needs of every store) ---------------


@dataclass(frozen=True, slots=True)
class PoolStats:
    """One connection pool of a store, as the metrics show it."""

    name: str
    in_use: int
    idle: int
    size_max: int
    #: Callers waiting for a connection, where the pool tells.
    waiting: int | None = None


@dataclass(frozen=True, slots=True)
class SchemaState:
    """Where a store's schema stands: its revision (``None``: never migrated) and the
    revision this release needs."""

    current: str | None
    head: str | None

    @property
    def is_current(self) -> bool:
        return self.current == self.head

    def __str__(self) -> str:
        if self.is_current:
            return f"at {self.current}, this release's"
        found = f"at {self.current}" if self.current else "not migrated"
        return f"{found}; this release needs {self.head}"


class StoreLifecycle(Protocol):
    """Opening, migrating and closing a store, and the values kept in it."""

    async def open(self) -> None:
        """Check the store answers; :class:`~.errors.StoreUnavailable` with the reason
        otherwise."""
        ...

    async def migrate(self) -> None:
        """Bring the schema to this release's (idempotent, safe from many processes)."""
        ...

    async def schema(self) -> SchemaState: ...

    async def stored_secret(self) -> str:
        """The token secret kept in the store (created by the first process to ask)."""
        ...

    async def stored_database_id(self) -> str:
        """The store's random identity (created by the first process to ask)."""
        ...

    def pool_stats(self) -> Sequence[PoolStats]: ...

    async def close(self) -> None:
        """Release what the store opened (a host's borrowed engine or pool excepted)."""
        ...


# --- webhooks (SPEC "Events"; application/webhooks.py, application/webhook_delivery.py) ---


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    """An endpoint as operators see it: never its secret."""

    id: int
    url: str
    events: tuple[str, ...]
    created_at: datetime
    deleted_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DeliveryTarget:
    """A live endpoint as the delivery worker needs it: with its signing secret (its
    cursor comes with its stream: :meth:`WebhookStore.stream`)."""

    id: int
    url: str
    events: tuple[str, ...]
    secret: str


_PENDING = DeliveryState.PENDING.value
_DELIVERED = DeliveryState.DELIVERED.value


@dataclass(frozen=True, slots=True)
class FirstTry:
    """The stream's POST of an event, made before its delivery was recorded: when the
    answer came (or the deadline passed), what it was, and when to try again (``None``:
    delivered)."""

    at: datetime
    status: int | None
    error: str | None
    retry_at: datetime | None


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """One event to deliver to one endpoint, with the bytes to POST (kept with the
    delivery, so pruning the events never loses what is still to be sent), and the
    stream's first try at it (``None``: not tried, queued behind its user's earlier
    event or an endpoint that is failing)."""

    event_id: int
    user_id: int
    event_type: str
    event_at: datetime
    body: bytes
    tried: FirstTry | None = None

    @property
    def recorded_pending(self) -> bool:
        """Whether it goes into the queue (untried, or its first try failed)."""
        return self.tried is None or self.tried.retry_at is not None

    def recorded(self, at: datetime) -> RecordedState:
        """The delivery's queue columns as it is recorded at ``at`` (one definition for
        every store): delivered; pending and due again at the retry (a failed first
        try); or pending and due at once (untried)."""
        t = self.tried
        if t is None:
            return RecordedState(_PENDING, 0, 0, at, None, None, None, None)
        if t.retry_at is None:
            return RecordedState(_DELIVERED, 1, 0, None, t.at, t.status, None, t.at)
        return RecordedState(_PENDING, 1, 1, t.retry_at, t.at, t.status, t.error, None)


class RecordedState(NamedTuple):
    """A new delivery's queue columns (:meth:`NewDelivery.recorded`); ``tried_at`` is
    both its first and its last attempt's time."""

    state: str
    attempts: int
    failures: int
    next_attempt_at: datetime | None
    tried_at: datetime | None
    last_status: int | None
    last_error: str | None
    delivered_at: datetime | None


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """A delivery leased to this worker: ``attempts`` counts this one (and guards its
    outcome: a delivery taken over since is not written over), ``failures`` the failed
    tries of its current window (the backoff's exponent), ``first_at`` when the window
    began."""

    id: int
    endpoint_id: int
    event_id: int
    user_id: int
    body: bytes
    attempts: int
    failures: int
    first_at: datetime


@dataclass(frozen=True, slots=True)
class DeliveryView:
    """A delivery as the operators' listing shows it."""

    event_id: int
    event_type: str
    user_id: int
    state: str
    attempts: int
    created_at: datetime
    last_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None


@dataclass(frozen=True, slots=True)
class WebhookLag:
    """A live endpoint's backlog: deliveries still pending (the events after its
    ``cursor``, not yet streamed, included) and the time of the oldest one's event
    (``None``: caught up)."""

    endpoint_id: int
    pending: int
    oldest_event_at: datetime | None
    cursor: int = 0


class WebhookStore(Protocol):
    """Endpoints and their deliveries. Every method is safe with any number of worker
    processes: one holds an endpoint's stream at a time and moves its cursor by
    compare-and-set, claims lease."""

    async def add(
        self, url: str, events: tuple[str, ...], secret: str, cursor: int, at: datetime
    ) -> WebhookEndpoint:
        """A new endpoint, delivered the events after ``cursor``."""
        ...

    async def endpoints(self) -> list[WebhookEndpoint]:
        """Every endpoint, deleted ones included, by id."""
        ...

    async def endpoint(self, endpoint_id: int) -> WebhookEndpoint | None: ...

    async def delete(self, endpoint_id: int, at: datetime) -> bool:
        """Stop delivering to it (its deliveries are kept); False if it was unknown."""
        ...

    async def targets(self) -> list[DeliveryTarget]:
        """The live endpoints, with their secrets and cursors."""
        ...

    async def stream(
        self, endpoint_id: int, owner: str, now: datetime, until: datetime
    ) -> int | None:
        """Take or keep the endpoint's *stream*: the lease to POST its events straight
        from the feed, held by one worker process (``owner``) at a time, until ``until``
        unless kept. Back: the endpoint's cursor, or ``None`` when another process holds
        it or the endpoint is gone. ``until <= now`` gives it up."""
        ...

    async def queued(self, endpoint_id: int, user_ids: Collection[int]) -> set[int]:
        """Those of ``user_ids`` with a pending delivery to the endpoint: their later
        events queue behind it."""
        ...

    async def settle(
        self,
        endpoint_id: int,
        owner: str,
        seen: int,
        upto: int,
        deliveries: Sequence[NewDelivery],
        at: datetime,
        until: datetime,
    ) -> bool:
        """In one transaction, if ``owner`` still holds the stream and the cursor is
        ``seen``: record ``deliveries`` (as their first try left them:
        :meth:`NewDelivery.recorded`), move the cursor to ``upto`` and keep the stream
        until ``until`` (``until <= at``: given up, as a worker does when it stops).
        False (nothing written): the stream was lost (another process took it over
        after its lease ran out). An endpoint deleted meanwhile still has what was sent
        to it recorded (nobody takes its stream again)."""
        ...

    async def claim(
        self, endpoint_id: int, now: datetime, lease_until: datetime, limit: int
    ) -> list[ClaimedDelivery]:
        """Lease up to ``limit`` due deliveries of the endpoint, in event order, each the
        oldest pending one of its user (a user's later event waits for the earlier)."""
        ...

    async def record(
        self,
        claimed: ClaimedDelivery,
        state: str,
        at: datetime,
        next_at: datetime | None,
        status: int | None,
        error: str | None,
        lease_until: datetime | None = None,
    ) -> ClaimedDelivery | None:
        """The outcome of a claimed delivery's attempt, unless it was claimed again since.
        With ``lease_until``, when the outcome is final (delivered, failed), the same
        transaction also claims the user's next delivery to the endpoint if it is now the
        user's oldest pending one and due (``at``), and returns it: a user's events go
        out one after the other without a claim's round trip between them."""
        ...

    async def deliveries(
        self, endpoint_id: int, limit: int, before: int | None
    ) -> list[DeliveryView]:
        """The endpoint's deliveries, newest event first, before event id ``before``."""
        ...

    async def redeliver(self, event_id: int, now: datetime) -> int:
        """Make the event's delivered or failed deliveries to live endpoints pending and
        due now (a new retry window); how many. One in flight is left to its attempt."""
        ...

    async def lag(self) -> list[WebhookLag]:
        """Each live endpoint's recorded backlog (one aggregate over the pending
        deliveries), with its cursor."""
        ...

    async def prune(self, older_than: datetime, limit: int) -> int:
        """Delete up to ``limit`` deliveries that are done with: delivered before
        ``older_than``, and every delivery of an endpoint deleted before it; how many.
        A failed delivery of a live endpoint is kept (an operator may replay it)."""
        ...

    async def retained_after(self) -> int | None:
        """The lowest cursor of the live endpoints: the events after it have not been
        recorded for some endpoint yet, so they must not be pruned (``None``: none)."""
        ...


class WebhookSender(Protocol):
    """POSTs one delivery. Never raises for what the endpoint does: every outcome is an
    :class:`~gophermart.domain.webhooks.Attempt`."""

    async def post(
        self, endpoint_id: int, url: str, body: bytes, headers: dict[str, str]
    ) -> Attempt: ...

    async def forget(self, endpoint_id: int) -> None:
        """Close what is held for an endpoint that is no longer delivered to."""
        ...


class WebhookMetrics(Protocol):
    """What the delivery worker reports (Prometheus in the server, nothing by default)."""

    def attempted(self, outcome: str) -> None:
        """One POST, by outcome: ``2xx``, ``http_3xx``, ``http_4xx``, ``http_5xx``,
        ``timeout``, ``network``."""
        ...

    def failed(self) -> None:
        """A delivery given up after its retry window (kept as failed, replayable)."""
        ...


class NoWebhookMetrics:
    def attempted(self, outcome: str) -> None:
        return None

    def failed(self) -> None:
        return None
