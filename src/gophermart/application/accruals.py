"""Recording what an order earned: the accrual system's verdict, or the host's own.

The accrual worker (:mod:`.accrual_sync`) learns verdicts by polling the accrual
system; a shop that computes its rewards itself (or receives them by webhook) records
them through :meth:`.orders.Orders.record_accrual`. Both apply a verdict the same way: one unit of
work re-reads the order, moves its status if it is still where it was, and for
PROCESSED writes the status and the ledger credit together, so a verdict is credited
exactly once however often it is recorded.
"""

from __future__ import annotations

from datetime import datetime

from gophermart.application.ports import UnitOfWork
from gophermart.domain.errors import UnknownOrder
from gophermart.domain.orders import AccrualVerdict, Order, OrderNumber
from gophermart.domain.points import Points


async def apply_verdict(
    uow: UnitOfWork,
    number: OrderNumber,
    verdict: AccrualVerdict,
    accrual: Points | None,
    now: datetime,
    next_attempt_at: datetime | None,
) -> tuple[Order, Order] | None:
    """Move ``number`` by ``verdict`` inside ``uow`` (the caller commits).

    Returns ``(before, after)``, or ``None`` when the order is already final or another
    writer moved it first (then that writer's transaction does the crediting).
    ``next_attempt_at`` is when a still-open order is polled again.
    """
    order = await uow.orders.get(number)
    if order is None:
        raise UnknownOrder(number.value)
    if order.status.is_final:
        return None
    updated = order.apply(verdict, accrual)
    if not await uow.orders.save(
        order, updated, None if updated.status.is_final else next_attempt_at
    ):
        return None
    if updated.credit is not None:
        account = await uow.accounts.get(updated.owner)
        if account is None:
            raise LookupError(f"order {updated.number}: owner has no account")
        account.credit(updated, now)
        await uow.accounts.save(account)
    return order, updated
