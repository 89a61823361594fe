"""The ledger a shop runs on (SPEC "The ledger a shop runs on"): the history, holds
(two-phase spending), and the shop's corrections: accrual reversals, withdrawal refunds
and operators' adjustments. Every movement is a ledger entry; none edits an earlier one.

A correction decides on its account's figures with the account's row locked
(``AccountRepository.locked``: a reversal takes what the balance has), the order's row
first when it has one. Holds only read the account: placing one, capturing or releasing
it moves the figures by the entries' writes, whose statements check the balance on the
row's latest version, so the account's row is locked only while they are written (a
hot checkout is not held up by round trips made under its lock). The stores' locks are
always taken in one order (the order's or the hold's row, then the account's), so two
movements never deadlock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TypeVar

from gophermart.application.errors import ConcurrentUpdate
from gophermart.application.periodic import repeat_until
from gophermart.application.ports import (
    Clock,
    EventMetrics,
    HostConnection,
    NoEventMetrics,
    ReadModel,
    UnitOfWork,
    UnitOfWorkFactory,
)
from gophermart.domain.accounts import Account, Hold, HoldState, LedgerEntry
from gophermart.domain.errors import (
    ExceedsOriginal,
    HoldConflict,
    InsufficientPoints,
    InvalidAmount,
    InvalidInput,
    UnknownHold,
    UnknownOrder,
    UnknownUser,
)
from gophermart.domain.orders import OrderNumber, OrderStatus
from gophermart.domain.points import Points
from gophermart.domain.users import UserId, valid_user_id

log = logging.getLogger("gophermart.ledger")
T = TypeVar("T")

Amount = Points | Decimal | int | str

#: A hold's life when none is asked for, and the longest (SPEC: 1 to 86,400 seconds).
DEFAULT_TTL, MAX_TTL = 900, 86_400
#: The longest reason an entry keeps.
MAX_REASON = 500
#: The largest id a row can have (a BIGINT).
MAX_ID = 2**63 - 1


@dataclass(frozen=True, slots=True)
class HoldOutcome:
    """A hold, and whether this call made it (``False``: the same hold again)."""

    hold: Hold
    created: bool


@dataclass(frozen=True, slots=True)
class Movement:
    """What a correction wrote: its entry (``change`` signed, in hundredths) and the
    balance after it; ``owed_change`` what it added to (or paid off) the owed points."""

    kind: str
    order: str | None
    change: int
    balance_after: Points
    owed_change: int
    reason: str | None
    operator: str | None
    created_at: datetime

    @property
    def amount(self) -> Decimal:
        return Decimal(self.change).scaleb(-2)


class Holds:
    """Two-phase spending: points reserved for an order being paid, then captured into
    its withdrawal, released, or expired by the service."""

    #: A lost race (the same hold closed by two writers at once) is retried once.
    ATTEMPTS = 2

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        read_model: ReadModel,
        clock: Clock,
        metrics: EventMetrics | None = None,
    ) -> None:
        self._uow = uow
        self._read = read_model
        self._clock = clock
        self._metrics = metrics or NoEventMetrics()

    async def open_holds(self, user_id: UserId) -> Sequence[Hold]:
        """The user's open holds, oldest first."""
        user_id = valid_user_id(user_id)
        found = await self._read.holds(user_id)
        if found is None:
            raise UnknownUser(user_id)
        return found

    # --- holds --------------------------------------------------------------------

    async def hold(
        self,
        user_id: UserId,
        order: str,
        amount: Amount,
        ttl: int = DEFAULT_TTL,
        *,
        connection: HostConnection | None = None,
    ) -> HoldOutcome:
        """Reserve ``amount`` points for ``order`` (being paid) for ``ttl`` seconds.
        The same order and amount again answers the same open hold; another amount, or
        an order already paid with points, is :class:`HoldConflict`; a balance short of
        it :class:`InsufficientPoints`."""
        user_id = valid_user_id(user_id)
        number = OrderNumber.parse(order)
        points = _positive(amount)
        if type(ttl) is not int or not 1 <= ttl <= MAX_TTL:
            raise InvalidInput(f"ttl is whole seconds from 1 to {MAX_TTL}")
        return await self._retried(lambda: self._hold(user_id, number, points, ttl, connection))

    async def _hold(
        self,
        user_id: UserId,
        number: OrderNumber,
        amount: Points,
        ttl: int,
        connection: HostConnection | None,
    ) -> HoldOutcome:
        async with self._uow(connection) as uow:
            now = self._clock.now()
            until = now + timedelta(seconds=ttl)
            placed = await uow.holds.place(user_id, number, amount, now, until)
            if placed is None:  # raced, or refused: again with the account's row locked,
                await _locked(uow, user_id)  # so that what follows is decided for good
                placed = await uow.holds.place(user_id, number, amount, now, until)
            if placed is not None:  # the common case: one statement on PostgreSQL
                await uow.commit()
                return HoldOutcome(placed, created=True)
            # Nothing written: why? The same hold again, a conflict, or a short balance.
            held = await uow.holds.open_for(number)
            if held is not None:
                if held.user_id == user_id and held.amount == amount:
                    return HoldOutcome(held, created=False)
                raise HoldConflict(number.value, "has an open hold", held.id, held.state)
            if await uow.accounts.withdrawal(number) is not None:
                raise HoldConflict(number.value, "was already paid with points")
            account = await _account(uow, user_id)
            if amount > account.balance:
                raise InsufficientPoints(amount, account.balance)
            raise ConcurrentUpdate(f"order {number}: its hold raced another change")

    async def capture(
        self, user_id: UserId, hold_id: int, *, connection: HostConnection | None = None
    ) -> Hold:
        """Turn an open hold into its order's withdrawal. A capture that already
        happened answers the hold again; a released or expired hold (its expiry passed
        even if not swept yet) is :class:`HoldConflict`."""
        return await self._close(user_id, hold_id, HoldState.CAPTURED, connection)

    async def release(
        self, user_id: UserId, hold_id: int, *, connection: HostConnection | None = None
    ) -> Hold:
        """Give an open hold's points back. A hold already released, or expired (its
        points already back), answers the hold again; a captured one is
        :class:`HoldConflict`."""
        return await self._close(user_id, hold_id, HoldState.RELEASED, connection)

    async def _close(
        self, user_id: UserId, hold_id: int, to: HoldState, connection: HostConnection | None
    ) -> Hold:
        user_id = valid_user_id(user_id)
        if type(hold_id) is not int or not 1 <= hold_id <= MAX_ID:
            raise UnknownHold(hold_id)
        hold, expired = await self._retried(
            lambda: self._close_once(user_id, hold_id, to, connection)
        )
        if expired:
            raise HoldConflict(hold.order_number.value, "hold expired", hold.id, hold.state)
        return hold

    async def _close_once(
        self, user_id: UserId, hold_id: int, to: HoldState, connection: HostConnection | None
    ) -> tuple[Hold, bool]:
        async with self._uow(connection) as uow:
            now = self._clock.now()
            if to is HoldState.CAPTURED:  # the common case: one statement on PostgreSQL
                captured = await uow.holds.capture(user_id, hold_id, now)
                if captured is not None:
                    await uow.commit()
                    return captured, False
            # Not captured (or a release): why? Not the user's, closed already, expired.
            hold = await uow.holds.get(hold_id)
            if hold is None or hold.user_id != user_id:
                raise UnknownHold(hold_id)
            if hold.state is not HoldState.OPEN:
                return _replayed(hold, to), False
            expired = to is HoldState.CAPTURED and hold.expires_at <= now
            if to is HoldState.CAPTURED and not expired:
                raise ConcurrentUpdate(f"hold {hold.id} changed meanwhile")
            closed = await _closed(uow, hold, HoldState.EXPIRED if expired else to, now)
            await uow.commit()
            return closed, expired

    async def expire_holds(self, limit: int = 100) -> int:
        """Release every open hold past its ``expires_at`` (at most ``limit``, 1 to
        10,000, now); returns how many. Any number of processes may sweep at once: a
        hold is closed exactly once, by whichever gets it first."""
        if type(limit) is not int or not 1 <= limit <= 10_000:
            raise InvalidInput("limit must be a whole number between 1 and 10000")
        now = self._clock.now()
        async with self._uow() as uow:
            due = await uow.holds.due(now, limit)
        expired = 0
        for hold in due:
            try:
                async with self._uow() as uow:
                    await _closed(uow, hold, HoldState.EXPIRED, now)
                    await uow.commit()
                expired += 1
            except ConcurrentUpdate:
                continue  # captured, released or expired by someone else meanwhile
        if expired:
            self._metrics.holds_expired(expired)
        return expired

    async def sweep_until(self, stop: asyncio.Event, every: float = 1.0) -> None:
        """:meth:`expire_holds` every ``every`` seconds until ``stop`` (the worker)."""
        await repeat_until(stop, every, self.expire_holds, log, "expiring holds")

    async def _retried(self, attempt: Callable[[], Awaitable[T]]) -> T:
        for n in range(self.ATTEMPTS):
            try:
                return await attempt()
            except ConcurrentUpdate:
                if n + 1 == self.ATTEMPTS:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover


class Corrections:
    """The shop's corrections of a balance: accrual reversals, withdrawal refunds and
    operators' adjustments."""

    def __init__(
        self, uow: UnitOfWorkFactory, clock: Clock, metrics: EventMetrics | None = None
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._metrics = metrics or NoEventMetrics()

    async def reverse(
        self,
        order: str,
        amount: Amount | None = None,
        reason: str | None = None,
        *,
        operator: str | None = None,
        connection: HostConnection | None = None,
    ) -> Movement:
        """The shop took a PROCESSED order back: reverse ``amount`` of its accrual (all
        that is left without one). What the balance has is taken, the rest is owed.
        Reversals of an order never exceed its accrual (:class:`ExceedsOriginal`)."""
        number = OrderNumber.parse(order)
        points = _positive(amount) if amount is not None else None
        reason, operator = _reason(reason), _operator(operator)
        async with self._uow(connection) as uow:
            found = await uow.orders.get(number)
            if found is None:
                raise UnknownOrder(number.value)
            accrual = found.accrual if found.status is OrderStatus.PROCESSED else None
            left = Points(0) if accrual is None else accrual - await uow.orders.reversed(number)
            asked = points if points is not None else left
            if asked.is_zero or asked > left:
                raise ExceedsOriginal(number.value, asked, left)
            if await uow.orders.reverse(number, asked) is None:
                raise ConcurrentUpdate(f"order {number} was reversed meanwhile")
            account = await _locked(uow, found.owner)
            now = self._clock.now()
            moved = await _moved(
                uow, account, lambda: account.reverse(number, asked, now, reason, operator)
            )
        self._metrics.reversed(asked, Points(moved.owed_change))
        return moved

    async def refund(
        self,
        order: str,
        amount: Amount | None = None,
        reason: str | None = None,
        *,
        operator: str | None = None,
        connection: HostConnection | None = None,
    ) -> Movement:
        """The order paid with points was cancelled: give back ``amount`` of its
        withdrawal (all that is left without one); ``withdrawn`` goes down by it.
        Refunds never exceed the withdrawal (:class:`ExceedsOriginal`)."""
        number = OrderNumber.parse(order)
        points = _positive(amount) if amount is not None else None
        reason, operator = _reason(reason), _operator(operator)
        async with self._uow(connection) as uow:
            spent = await uow.accounts.withdrawal(number)
            if spent is None:
                raise UnknownOrder(number.value, "was never paid with points")
            account = await _locked(uow, spent.user_id)  # refunds of one order in turn
            left = spent.amount - await uow.accounts.refunded(number)
            asked = points if points is not None else left
            if asked.is_zero or asked > left:
                raise ExceedsOriginal(number.value, asked, left)
            now = self._clock.now()
            return await _moved(
                uow, account, lambda: account.refund(number, asked, now, reason, operator)
            )

    async def adjust(
        self,
        user_id: UserId,
        amount: Amount,
        reason: str | None = None,
        *,
        operator: str | None = None,
        connection: HostConnection | None = None,
    ) -> Movement:
        """An operator's correction of a balance, signed (``"-5"`` takes 5 points): never
        below zero (:class:`InsufficientPoints`)."""
        user_id = valid_user_id(user_id)
        negative, points = _signed(amount)
        reason, operator = _reason(reason), _operator(operator)
        async with self._uow(connection) as uow:
            account = await _locked(uow, user_id)
            now = self._clock.now()
            return await _moved(
                uow, account, lambda: account.adjust(points, negative, now, reason, operator)
            )


async def _account(uow: UnitOfWork, user_id: UserId) -> Account:
    account = await uow.accounts.get(user_id)
    if account is None:
        raise UnknownUser(user_id)
    return account


async def _locked(uow: UnitOfWork, user_id: UserId) -> Account:
    account = await uow.accounts.locked(user_id)
    if account is None:
        raise UnknownUser(user_id)
    return account


async def _closed(uow: UnitOfWork, hold: Hold, state: HoldState, at: datetime) -> Hold:
    """Close ``hold`` in ``uow``: the hold moved from open (once: a hold someone else
    closed is :class:`ConcurrentUpdate`), then its entries. The account is read, not
    locked: closing a hold never needs more than the points it holds (a capture's
    release gives back what its withdrawal spends), and the entries' writes lock the
    account's row only while they are written."""
    if not await uow.holds.close(hold, state, at):
        raise ConcurrentUpdate(f"hold {hold.id} was closed meanwhile")
    account = await _account(uow, hold.user_id)
    account.close_hold(hold, state, at)
    await uow.accounts.save(account)
    return hold.closed(state, at)


def _replayed(hold: Hold, to: HoldState) -> Hold:
    """A hold already closed, asked to close again: the same answer when it ended the
    way asked (a release finds an expired hold's points back too), else a conflict."""
    if hold.state is to or (to is HoldState.RELEASED and hold.state is HoldState.EXPIRED):
        return hold
    raise HoldConflict(hold.order_number.value, f"hold is {hold.state}", hold.id, hold.state)


async def _moved(uow: UnitOfWork, account: Account, move: Callable[[], LedgerEntry]) -> Movement:
    """Make the movement on ``account`` and commit it: its entry, as its owner sees it."""
    before = account.balance.cents
    entry = move()
    await uow.accounts.save(account)
    await uow.commit()
    return Movement(
        entry.kind.value,
        entry.order_number.value if entry.order_number else None,
        entry.change,
        Points(before + entry.change),
        entry.owed_change,
        entry.reason,
        entry.operator,
        entry.at,
    )


def _positive(amount: Amount) -> Points:
    points = amount if isinstance(amount, Points) else Points.exact(amount)
    if points.is_zero:
        raise InvalidAmount("the amount must be positive")
    return points


def _signed(amount: Amount) -> tuple[bool, Points]:
    """An adjustment's amount: (negative, magnitude); zero moves nothing."""
    if isinstance(amount, Points):
        return False, _positive(amount)
    if isinstance(amount, bool) or not isinstance(amount, Decimal | int | str):
        raise InvalidAmount("an amount must be a decimal number")
    try:
        value = Decimal(amount.strip() if isinstance(amount, str) else amount)
    except InvalidOperation:
        raise InvalidAmount("an amount must be a decimal number") from None
    if not value.is_finite():
        raise InvalidAmount("an amount must be a decimal number")
    return value < 0, _positive(abs(value))


def _operator(name: str | None) -> str | None:
    """The operator key's name an entry records (a host's own name for who did it)."""
    if name is not None and (
        type(name) is not str or not 1 <= len(name) <= 64 or not name.isprintable()
    ):
        raise InvalidInput("operator is a name of 1 to 64 printable characters")
    return name


def _reason(reason: str | None) -> str | None:
    if reason is None:
        return None
    if type(reason) is not str or len(reason) > MAX_REASON or not reason.isprintable():
        raise InvalidInput(f"reason is printable text of at most {MAX_REASON} characters")
    return reason.strip() or None
