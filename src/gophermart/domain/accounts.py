"""Accounts and the ledger.

Every change of an account's figures is a :class:`LedgerEntry`, appended, never edited:
an accrual credited, a withdrawal, a hold and its release, an accrual reversal, a
withdrawal refund, an operator's adjustment. The account's figures are a cache of the
ledger: ``balance`` = the sum of the entries' changes (never negative), ``withdrawn`` =
withdrawals less refunds, ``held`` = holds less their releases, ``owed`` = the sum of
the owed changes; ``gophermart reconcile`` checks the cache against the ledger, and
an entry's ``balance_after`` is that sum up to it (read from the ledger, not stored).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from gophermart.domain.errors import (
    HoldConflict,
    InsufficientPoints,
    InvalidAmount,
    WithdrawalConflict,
)
from gophermart.domain.orders import Order, OrderNumber
from gophermart.domain.points import Points
from gophermart.domain.users import UserId


class EntryKind(enum.StrEnum):
    ACCRUAL = "accrual"  # a credit: a PROCESSED order's points
    WITHDRAWAL = "withdrawal"  # a debit: points spent on an order
    ACCRUAL_REVERSAL = "accrual_reversal"  # the shop took an order back (or owed paid off)
    WITHDRAWAL_REFUND = "withdrawal_refund"  # an order paid with points was cancelled
    ADJUSTMENT = "adjustment"  # an operator's correction, either way
    HOLD = "hold"  # points reserved for an order being paid
    HOLD_RELEASE = "hold_release"  # reserved points back (released, expired or captured)


#: What an entry of each kind does to the figures (balance, withdrawn, held), per unit
#: of its stored amount: the one definition of each movement, which the stores' SQL
#: (sums, audits, history) is built from. An adjustment's stored amount is signed.
EFFECTS: dict[EntryKind, tuple[int, int, int]] = {
    EntryKind.ACCRUAL: (1, 0, 0),
    EntryKind.WITHDRAWAL: (-1, 1, 0),
    EntryKind.ACCRUAL_REVERSAL: (-1, 0, 0),
    EntryKind.WITHDRAWAL_REFUND: (1, -1, 0),
    EntryKind.ADJUSTMENT: (1, 0, 0),
    EntryKind.HOLD: (-1, 0, 1),
    EntryKind.HOLD_RELEASE: (1, 0, -1),
}
BALANCE, WITHDRAWN, HELD = 0, 1, 2


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One balance change. An order is credited once and paid with points once, ever
    (the ledger's unique indexes); the other kinds may repeat for an order.

    ``amount`` is a magnitude: its direction is the kind's (``EFFECTS``), or for an
    adjustment ``negative``. ``owed_change`` is what the entry added to (positive) or
    paid off (negative) the account's owed points, in hundredths."""

    user_id: UserId
    kind: EntryKind
    order_number: OrderNumber | None
    amount: Points
    at: datetime
    negative: bool = False
    owed_change: int = 0
    reason: str | None = None
    operator: str | None = None
    hold_id: int | None = None

    @property
    def number(self) -> str:
        """The order number, of an entry that has one (an accrual, a withdrawal, a hold)."""
        if self.order_number is None:
            raise ValueError(f"this {self.kind} entry names no order")
        return self.order_number.value

    @property
    def is_debit(self) -> bool:
        """A withdrawal: the one debit with its own hot path in every store."""
        return self.kind is EntryKind.WITHDRAWAL

    @property
    def stored_amount(self) -> int:
        """The ledger column's value: the magnitude, signed only for an adjustment."""
        return -self.amount.cents if self.negative else self.amount.cents

    @property
    def change(self) -> int:
        """What the entry does to the balance ("current"), signed, in hundredths."""
        return EFFECTS[self.kind][BALANCE] * self.stored_amount

    @property
    def withdrawn_change(self) -> int:
        return EFFECTS[self.kind][WITHDRAWN] * self.stored_amount

    @property
    def held_change(self) -> int:
        return EFFECTS[self.kind][HELD] * self.stored_amount


class HoldState(enum.StrEnum):
    OPEN = "open"
    CAPTURED = "captured"
    RELEASED = "released"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class Hold:
    """Points reserved for an order being paid (two-phase spending): captured into the
    order's withdrawal, released, or expired at ``expires_at``; closed exactly once."""

    id: int
    user_id: UserId
    order_number: OrderNumber
    amount: Points
    state: HoldState
    created_at: datetime
    expires_at: datetime
    closed_at: datetime | None = None

    def closed(self, state: HoldState, at: datetime) -> Hold:
        return replace(self, state=state, closed_at=at)


#: Why a hold's points came back, as its release entry says.
RELEASE_REASONS = {
    HoldState.CAPTURED: "captured",
    HoldState.RELEASED: "released",
    HoldState.EXPIRED: "expired",
}
#: The reason on the entry that pays owed points off from a credit.
OWED_PAID = "owed points paid off"


@dataclass(slots=True)
class Account:
    """A shopper's points: ``balance`` ("current": what can still be spent or held),
    ``withdrawn``, ``held`` (open holds) and ``owed`` (reversed points that had already
    been spent, paid off first from later credits). ``pending`` holds the entries made
    since it was loaded; every change of a figure is one of them (:meth:`_record`)."""

    user_id: UserId
    balance: Points = field(default_factory=lambda: Points(0))
    withdrawn: Points = field(default_factory=lambda: Points(0))
    held: Points = field(default_factory=lambda: Points(0))
    owed: Points = field(default_factory=lambda: Points(0))
    pending: list[LedgerEntry] = field(default_factory=list)

    def _new(self, kind: EntryKind, *args: Any, **more: Any) -> LedgerEntry:
        return LedgerEntry(self.user_id, kind, *args, **more)

    def _record(self, entry: LedgerEntry) -> LedgerEntry:
        """Apply ``entry`` to the figures (all of them or none: an overdraft raises
        :class:`InsufficientPoints`, an overflow :class:`BalanceOverflow`) and keep it."""
        if self.balance.cents + entry.change < 0:
            raise InsufficientPoints(entry.amount, self.balance)
        balance = Points(self.balance.cents + entry.change)
        withdrawn = Points(self.withdrawn.cents + entry.withdrawn_change)
        held = Points(self.held.cents + entry.held_change)
        owed = Points(self.owed.cents + entry.owed_change)
        self.balance, self.withdrawn, self.held, self.owed = balance, withdrawn, held, owed
        self.pending.append(entry)
        return entry

    def _gain(self, entry: LedgerEntry) -> LedgerEntry:
        """A credit (an accrual, a refund, an adjustment up), then the owed points it
        pays off: owed is paid first from later credits, so none of the credit reaches
        the balance while anything is owed."""
        self._record(entry)
        settled = min(self.owed.cents, entry.amount.cents)
        if settled:
            self._record(
                self._new(
                    EntryKind.ACCRUAL_REVERSAL,
                    None,
                    Points(settled),
                    entry.at,
                    owed_change=-settled,
                    reason=OWED_PAID,
                    operator=entry.operator,
                )
            )
        return entry

    def credit(self, order: Order, at: datetime) -> LedgerEntry | None:
        """Credit a PROCESSED order's accrual. Orders without points credit nothing.

        The order's status machine makes PROCESSED reachable once; the ledger's unique
        index on accruals makes a second credit impossible even across processes. A
        balance may grow up to what the ledger's column holds; a credit that would pass
        it raises :class:`BalanceOverflow` and changes nothing.
        """
        if order.owner != self.user_id:
            raise ValueError(f"order {order.number} does not belong to user {self.user_id}")
        amount = order.credit
        if amount is None:
            return None
        return self._gain(self._new(EntryKind.ACCRUAL, order.number, amount, at))

    def withdraw(
        self,
        order_number: OrderNumber,
        amount: Points,
        at: datetime,
        previous: LedgerEntry | None = None,
    ) -> LedgerEntry | None:
        """Spend ``amount`` on ``order_number``.

        ``previous`` is the withdrawal already recorded for that order number, if any.
        The identical request (same user, same amount) is a replay: it returns ``None``
        and charges nothing. Any other use of the number is :class:`WithdrawalConflict`.
        """
        if amount.is_zero:
            raise InvalidAmount("a withdrawal must be positive")
        if previous is not None:
            if previous.user_id == self.user_id and previous.amount == amount:
                return None
            raise WithdrawalConflict(order_number.value)
        if amount > self.balance:
            raise InsufficientPoints(amount, self.balance)
        entry = self._new(EntryKind.WITHDRAWAL, order_number, amount, at)
        return self._record(entry)

    # --- holds -----------------------------------------------------------------------

    def hold(self, hold: Hold) -> LedgerEntry:
        """Reserve ``hold``'s points: they leave the balance for ``held``."""
        if hold.amount.is_zero:
            raise InvalidAmount("a hold must be positive")
        if hold.amount > self.balance:
            raise InsufficientPoints(hold.amount, self.balance)
        return self._record(
            self._new(
                EntryKind.HOLD,
                hold.order_number,
                hold.amount,
                hold.created_at,
                hold_id=hold.id,
            )
        )

    def close_hold(self, hold: Hold, state: HoldState, at: datetime) -> list[LedgerEntry]:
        """The hold's points back from ``held`` (released or expired), or, captured,
        back and spent at once as the order's withdrawal: the history shows both."""
        if hold.state is not HoldState.OPEN:
            raise HoldConflict(
                hold.order_number.value, f"hold is {hold.state}", hold.id, hold.state
            )
        release = self._new(
            EntryKind.HOLD_RELEASE,
            hold.order_number,
            hold.amount,
            at,
            reason=RELEASE_REASONS[state],
            hold_id=hold.id,
        )
        entries = [self._record(release)]
        if state is HoldState.CAPTURED:
            entries.append(
                self._record(
                    LedgerEntry(
                        self.user_id, EntryKind.WITHDRAWAL, hold.order_number, hold.amount, at
                    )
                )
            )
        return entries

    # --- the shop's corrections ------------------------------------------------------

    def reverse(
        self,
        order_number: OrderNumber,
        amount: Points,
        at: datetime,
        reason: str | None = None,
        operator: str | None = None,
    ) -> LedgerEntry:
        """Take ``amount`` of an order's accrual back: what the balance has, and the rest
        as owed (points already spent: the balance never goes below zero)."""
        taken = min(amount.cents, self.balance.cents)
        return self._record(
            self._new(
                EntryKind.ACCRUAL_REVERSAL,
                order_number,
                Points(taken),
                at,
                owed_change=amount.cents - taken,
                reason=reason,
                operator=operator,
            )
        )

    def refund(
        self,
        order_number: OrderNumber,
        amount: Points,
        at: datetime,
        reason: str | None = None,
        operator: str | None = None,
    ) -> LedgerEntry:
        """Give back ``amount`` of a withdrawal (the order it paid was cancelled):
        ``withdrawn`` goes down by it, the balance up (owed paid off first)."""
        entry = self._new(
            EntryKind.WITHDRAWAL_REFUND,
            order_number,
            amount,
            at,
            reason=reason,
            operator=operator,
        )
        return self._gain(entry)

    def adjust(
        self,
        amount: Points,
        negative: bool,
        at: datetime,
        reason: str | None = None,
        operator: str | None = None,
    ) -> LedgerEntry:
        """An operator's correction: up (owed paid off first) or down (never below zero:
        :class:`InsufficientPoints`)."""
        if amount.is_zero:
            raise InvalidAmount("an adjustment moves something")
        entry = self._new(
            EntryKind.ADJUSTMENT,
            None,
            amount,
            at,
            negative=negative,
            reason=reason,
            operator=operator,
        )
        return self._record(entry) if negative else self._gain(entry)
