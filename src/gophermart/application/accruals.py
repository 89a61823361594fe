"""Recording what an order earned: the accrual system's verdict, or the host's own.

The accrual worker (:mod:`.accrual_sync`) learns verdicts by polling the accrual
system; a shop that computes its rewards itself (or receives them by webhook) records
them through :class:`RecordAccrual`. Both apply a verdict the same way: one unit of
work re-reads the order, moves its status if it is still where it was, and for
PROCESSED writes the status and the ledger credit together, so a verdict is credited
exactly once however often it is recorded.
"""

from __future__ import annotations

from datetime import datetime

from gophermart.application.errors import ConcurrentUpdate
from gophermart.application.ports import Clock, UnitOfWork, UnitOfWorkFactory
from gophermart.domain.errors import IllegalStatusTransition, UnknownOrder
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
        raise UnknownOrder(f"order {number} was never uploaded")
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


class RecordAccrual:
    """Record a verdict the host computed itself (a webhook, its own reward rules).

    Idempotent: recording the same final verdict again changes nothing and returns the
    stored order; a *different* verdict for an order that is already final is
    :class:`~gophermart.domain.errors.IllegalStatusTransition` (final is final).
    """

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def __call__(
        self, raw_number: str, verdict: AccrualVerdict, accrual: Points | None = None
    ) -> Order:
        number = OrderNumber.parse(raw_number)
        if accrual is not None and verdict is not AccrualVerdict.PROCESSED:
            raise IllegalStatusTransition(f"only a PROCESSED verdict carries points ({verdict})")
        now = self._clock.now()
        try:
            async with self._uow() as uow:
                moved = await apply_verdict(uow, number, verdict, accrual, now, now)
                if moved is not None:
                    await uow.commit()
                    return moved[1]
        except ConcurrentUpdate:
            pass  # another writer credited it first: report what is stored now
        async with self._uow() as uow:
            stored = await uow.orders.get(number)
        assert stored is not None  # orders are never deleted
        if stored.status.is_final and (
            stored.status is not verdict.to_status()
            or (stored.accrual or Points(0)) != (accrual or Points(0))
        ):
            raise IllegalStatusTransition(f"order {number} is already {stored.status}")
        return stored
