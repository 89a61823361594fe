"""The in-memory store's read side: balance and listings, reconcile, the queue's depth."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TypeVar

from gophermart.adapters.stores.memory.state import MemoryDatabase
from gophermart.application.ports import BalanceView, OrderView, QueueDepth, WithdrawalView
from gophermart.application.reconcile import ReconcileReport
from gophermart.domain.accounts import EntryKind
from gophermart.domain.orders import OrderStatus
from gophermart.domain.points import Points
from gophermart.domain.users import UserId

V = TypeVar("V")


class MemoryReadModel:
    def __init__(self, database: MemoryDatabase) -> None:
        self._store = database

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
        views = [
            OrderView(q.order.number.value, q.order.status, q.order.accrual, q.order.uploaded_at)
            for q in mine
        ]
        return _page(views, [v.number for v in views], limit, before)

    async def withdrawals(
        self, user_id: UserId, limit: int | None = None, before: str | None = None
    ) -> Sequence[WithdrawalView] | None:
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
        views = [WithdrawalView(e.order_number.value, e.amount, e.at) for e in mine]
        return _page(views, [v.order for v in views], limit, before)


def _page(views: list[V], numbers: list[str], limit: int | None, before: str | None) -> list[V]:
    """The page of ``views`` (newest first) after the one numbered ``before`` (none if
    no view is), of at most ``limit``."""
    if before is not None:
        views = views[numbers.index(before) + 1 :] if before in numbers else []
    return views[:limit] if limit is not None else views


class MemoryLedgerAudit:
    """:class:`~gophermart.application.reconcile.LedgerAudit` over the committed state."""

    def __init__(self, database: MemoryDatabase) -> None:
        self._store = database

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

    def __init__(self, database: MemoryDatabase) -> None:
        self._store = database

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
