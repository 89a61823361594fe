"""The in-memory store's read side: balance and listings, reconcile, the queue's depth."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TypeVar

from gophermart.adapters.stores.memory.state import MemoryDatabase, MemoryState
from gophermart.application.ports import (
    BalanceView,
    HistoryView,
    LedgerGauges,
    OrderState,
    OrderView,
    QueueDepth,
    UserAccountView,
    WithdrawalView,
)
from gophermart.application.reconcile import ReconcileReport, figures_differ
from gophermart.domain.accounts import EntryKind, Hold, HoldState
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
        held, owed = self._store.state.held_owed.get(user_id, (0, 0))
        return BalanceView(Points(figures[0]), Points(figures[1]), Points(held), Points(owed))

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
        views = [WithdrawalView(e.number, e.amount, e.at) for e in mine]
        return _page(views, [v.order for v in views], limit, before)

    async def history(
        self, user_id: UserId, limit: int, before: int | None = None
    ) -> Sequence[HistoryView] | None:
        if user_id not in self._store.state.balances:
            return None
        views = _history(self._store.state, user_id)
        if before is not None:
            views = [v for v in views if int(v.id) < before]
        return views[:limit]

    async def holds(self, user_id: UserId) -> Sequence[Hold] | None:
        state = self._store.state
        if user_id not in state.balances:
            return None
        mine = [h for h in state.holds.values() if h.user_id == user_id]
        return [h for h in sorted(mine, key=lambda h: h.id) if h.state is HoldState.OPEN]

    async def user_by_login(self, login: str) -> UserAccountView | None:
        state = self._store.state
        user_id = state.logins.get(login)
        if user_id is None:
            return None
        balance, withdrawn = state.balances[user_id]
        held, owed = state.held_owed.get(user_id, (0, 0))
        figures = (Points(balance), Points(withdrawn), Points(held), Points(owed))
        return UserAccountView(user_id, login, *figures)

    async def order_state(self, number: str) -> OrderState | None:
        queued = self._store.state.orders.get(number)
        if queued is None:
            return None
        order = queued.order
        return OrderState(
            order.number.value,
            self._store.state.users[order.owner].login.value,
            order.status,
            order.accrual,
            queued.attempts,
            queued.next_attempt_at,
            queued.parked,
            Points(queued.reversed),
        )


def _history(state: MemoryState, user_id: UserId) -> list[HistoryView]:
    """The user's entries newest first, each with the balance after it (the running
    sum up to it, as the SQL stores derive it)."""
    views, balance = [], 0
    for entry_id, e in state.ledger.items():
        if e.user_id != user_id:
            continue
        balance += e.change
        views.append(
            HistoryView(
                str(entry_id),
                e.kind,
                e.order_number.value if e.order_number else None,
                e.change,
                Points(balance),
                e.owed_change,
                e.reason,
                e.operator,
                e.hold_id,
                e.at,
            )
        )
    return views[::-1]


def _page(views: list[V], numbers: list[str], limit: int | None, before: str | None) -> list[V]:
    """The page of ``views`` (newest first) after the one numbered ``before`` (none if
    no view is), of at most ``limit``."""
    if before is not None:
        views = views[numbers.index(before) + 1 :] if before in numbers else []
    return views[:limit] if limit is not None else views


class MemoryLedgerAudit:
    """:class:`~gophermart.application.reconcile.LedgerAudit` over the committed state:
    the same checks as the SQL stores' (sql/audit.py), from the same definitions."""

    def __init__(self, database: MemoryDatabase) -> None:
        self._store = database

    async def reconcile(self) -> ReconcileReport:
        state = self._store.state
        problems = [*_figures(state), *_credits(state), *_corrections(state), *_holds(state)]
        processed = sum(1 for q in state.orders.values() if q.order.status is OrderStatus.PROCESSED)
        return ReconcileReport(len(state.balances), processed, len(state.ledger), problems)


def _figures(state: MemoryState) -> list[str]:
    problems = []
    for user_id, (balance, withdrawn) in sorted(state.balances.items()):
        held, owed = state.held_owed.get(user_id, (0, 0))
        mine = [e for e in state.ledger.values() if e.user_id == user_id]
        summed = (
            sum(e.change for e in mine),
            sum(e.withdrawn_change for e in mine),
            sum(e.held_change for e in mine),
            sum(e.owed_change for e in mine),
        )
        in_holds = sum(
            h.amount.cents
            for h in state.holds.values()
            if h.user_id == user_id and h.state is HoldState.OPEN
        )
        stored = (balance, withdrawn, held, owed)
        if stored != summed or held != in_holds:
            problems.append(figures_differ(user_id, stored, summed, in_holds))
    return problems


def _credits(state: MemoryState) -> list[str]:
    problems = []
    for queued in state.orders.values():
        order = queued.order
        if order.status is not OrderStatus.PROCESSED or order.credit is None:
            continue
        entry = state.once.get((EntryKind.ACCRUAL, order.number.value))
        if entry is None:
            problems.append(f"order {order.number}: PROCESSED with points but never credited")
        elif entry.amount != order.credit or entry.user_id != order.owner:
            problems.append(
                f"order {order.number}: accrual {order.credit} for user {order.owner}, "
                f"credit {entry.amount} to user {entry.user_id}"
            )
    for (kind, number), entry in state.once.items():
        credited = state.orders.get(number)
        if kind is EntryKind.ACCRUAL and (
            credited is None or credited.order.status is not OrderStatus.PROCESSED
        ):
            problems.append(
                f"credit for order {number} (user {entry.user_id}) has no PROCESSED order"
            )
    return problems


def _corrections(state: MemoryState) -> list[str]:
    problems = []
    entries = list(state.ledger.values())
    for number, queued in state.orders.items():
        reversed_ = sum(
            e.amount.cents + e.owed_change
            for e in entries
            if e.kind is EntryKind.ACCRUAL_REVERSAL
            and e.order_number is not None
            and e.order_number.value == number
        )
        if reversed_ != queued.reversed:
            problems.append(
                f"order {number}: reversed {queued.reversed}, its reversals say {reversed_}"
            )
    for (kind, number), spent in state.once.items():
        if kind is not EntryKind.WITHDRAWAL:
            continue
        refunded = sum(
            e.amount.cents
            for e in entries
            if e.kind is EntryKind.WITHDRAWAL_REFUND and e.order_number == spent.order_number
        )
        if refunded > spent.amount.cents:
            problems.append(f"withdrawal for order {number}: {spent.amount}, refunded {refunded}")
    return problems


def _holds(state: MemoryState) -> list[str]:
    problems = []
    for hold in state.holds.values():
        entries = [e for e in state.ledger.values() if e.hold_id == hold.id]
        taken = sum(1 for e in entries if e.kind is EntryKind.HOLD)
        released = sum(1 for e in entries if e.kind is EntryKind.HOLD_RELEASE)
        if taken != 1 or released != (0 if hold.state is HoldState.OPEN else 1):
            problems.append(
                f"hold {hold.id} is {hold.state} with {taken} hold and {released} release entries"
            )
    return problems


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

    async def ledger_gauges(self) -> LedgerGauges:
        state = self._store.state
        open_holds = [h.amount.cents for h in state.holds.values() if h.state is HoldState.OPEN]
        owed = [owed for _, owed in state.held_owed.values() if owed > 0]
        return LedgerGauges(len(open_holds), Points(sum(open_holds)), len(owed), Points(sum(owed)))
