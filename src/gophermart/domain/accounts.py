"""Accounts and the ledger.

Every balance change is a :class:`LedgerEntry` tied to an order number: an accrual
credit for an uploaded order, or a withdrawal debit for the order it paid for. The
account's figures are a cache of the ledger: ``balance = credits - debits >= 0`` and
``withdrawn = debits``; ``gophermart reconcile`` checks the cache against the ledger.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from gophermart.domain.errors import (
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


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One balance change. (kind, order_number) is unique: once per order, ever."""

    user_id: UserId
    kind: EntryKind
    order_number: OrderNumber
    amount: Points
    at: datetime

    @property
    def is_debit(self) -> bool:
        return self.kind is EntryKind.WITHDRAWAL


@dataclass(slots=True)
class Account:
    """A shopper's points. ``pending`` holds the entries made since it was loaded."""

    user_id: UserId
    balance: Points = field(default_factory=lambda: Points(0))
    withdrawn: Points = field(default_factory=lambda: Points(0))
    pending: list[LedgerEntry] = field(default_factory=list)

    def credit(self, order: Order, at: datetime) -> LedgerEntry | None:
        """Credit a PROCESSED order's accrual. Orders without points credit nothing.

        The order's status machine makes PROCESSED reachable once; the ledger's unique
        (kind, order_number) makes a second credit impossible even across processes.
        A balance may grow up to what the ledger's column holds; a credit that would
        pass it raises :class:`BalanceOverflow` and changes nothing.
        """
        if order.owner != self.user_id:
            raise ValueError(f"order {order.number} does not belong to user {self.user_id}")
        amount = order.credit
        if amount is None:
            return None
        entry = LedgerEntry(self.user_id, EntryKind.ACCRUAL, order.number, amount, at)
        self.balance = self.balance + amount
        self.pending.append(entry)
        return entry

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
        entry = LedgerEntry(self.user_id, EntryKind.WITHDRAWAL, order_number, amount, at)
        # Both figures first: an overflow of ``withdrawn`` must leave the account as it was.
        balance, withdrawn = self.balance - amount, self.withdrawn + amount
        self.balance, self.withdrawn = balance, withdrawn
        self.pending.append(entry)
        return entry
