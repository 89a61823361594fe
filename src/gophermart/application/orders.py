"""Orders: uploading their numbers, and recording what they earned."""

from __future__ import annotations

import enum
from decimal import Decimal

from gophermart.application.accruals import apply_verdict
from gophermart.application.errors import ConcurrentUpdate
from gophermart.application.ports import Clock, HostConnection, OrderEvents, UnitOfWorkFactory
from gophermart.domain.errors import (
    IllegalStatusTransition,
    InvalidInput,
    OrderIsFinal,
    OrderOwnedByAnotherUser,
    UnknownOrder,
)
from gophermart.domain.orders import AccrualVerdict, Order, OrderNumber
from gophermart.domain.points import Points
from gophermart.domain.users import UserId, valid_user_id


class UploadOutcome(enum.Enum):
    ACCEPTED = "accepted"  # new number, queued for the accrual system (HTTP 202)
    ALREADY_YOURS = "already_yours"  # this user uploaded it before (HTTP 200)


class Orders:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, events: OrderEvents) -> None:
        self._uow = uow
        self._clock = clock
        self._events = events

    async def upload(
        self, user_id: UserId, number: str, *, connection: HostConnection | None = None
    ) -> UploadOutcome:
        """Hand in an order number (digits, Luhn) for the accrual system to value.
        ``connection``: the host's open transaction, which the upload joins."""
        user_id = valid_user_id(user_id)
        order = Order.upload(OrderNumber.parse(number), user_id, self._clock.now())
        async with self._uow(connection) as uow:
            # Insert first, ask questions later: one round trip on the common path, and
            # the unique key settles a race between two uploads of the same number.
            if await uow.orders.add(order):
                await uow.commit()
                self._events.order_uploaded()
                return UploadOutcome.ACCEPTED
            existing = await uow.orders.get(order.number)
        if existing is None:  # pragma: no cover - orders are never deleted
            raise ConcurrentUpdate(f"order {number} vanished while uploading")
        if existing.owner == user_id:
            return UploadOutcome.ALREADY_YOURS
        raise OrderOwnedByAnotherUser(order.number.value)

    async def record_accrual(
        self,
        order: str,
        accrual: Points | Decimal | int | str | None = None,
        *,
        verdict: AccrualVerdict = AccrualVerdict.PROCESSED,
        connection: HostConnection | None = None,
    ) -> Order:
        """Record what an order earned when the host computes rewards itself (or
        receives them by webhook) instead of running the accrual worker. PROCESSED
        credits ``accrual`` (rounded half up to hundredths) exactly once, however often
        it is recorded; INVALID ends the order with nothing; REGISTERED/PROCESSING mark
        it in progress. A *different* verdict for an order that is already final is
        :class:`~gophermart.domain.errors.IllegalStatusTransition` (final is final).
        ``connection``: the host's open transaction, which the credit joins."""
        number = OrderNumber.parse(order)
        if not isinstance(verdict, AccrualVerdict):
            raise InvalidInput(f"verdict is an AccrualVerdict, not {verdict!r:.40}")
        points = None
        if accrual is not None:
            points = accrual if isinstance(accrual, Points) else Points.rounded(accrual)
        if points is not None and verdict is not AccrualVerdict.PROCESSED:
            raise IllegalStatusTransition(f"only a PROCESSED verdict carries points ({verdict})")
        now = self._clock.now()
        try:
            async with self._uow(connection) as uow:
                moved = await apply_verdict(uow, number, verdict, points, now, now)
                if moved is not None:
                    await uow.commit()
                    return moved[1]
        except ConcurrentUpdate:
            pass  # another writer credited it first: report what is stored now
        async with self._uow(connection) as uow:
            stored = await uow.orders.get(number)
        assert stored is not None  # orders are never deleted
        if stored.status.is_final and (
            stored.status is not verdict.to_status()
            or (stored.accrual or Points(0)) != (points or Points(0))
        ):
            raise IllegalStatusTransition(f"order {number} is already {stored.status}")
        return stored

    async def retry(self, number: str, *, connection: HostConnection | None = None) -> None:
        """An operator's retry: a parked order, or one whose polls keep failing, is
        polled again within moments instead of at its next backoff (and is no longer
        parked; if its credit still cannot be applied it is parked again). An order a
        worker is polling right now is left to it. :class:`gophermart.OrderIsFinal` for
        a PROCESSED or INVALID order (nothing is changed), :class:`gophermart.UnknownOrder`
        if nobody uploaded it; :class:`gophermart.InvalidInput` for anything but digits,
        :class:`gophermart.InvalidOrderNumber` for digits failing the Luhn check.
        ``connection``: the host's open transaction, which the retry joins."""
        valid = OrderNumber.named(number)
        async with self._uow(connection) as uow:
            order = await uow.orders.get(valid)
            if order is None:
                raise UnknownOrder(valid.value)
            if order.status.is_final:
                raise OrderIsFinal(valid.value, order.status.value)
            await uow.orders.retry(valid, self._clock.now())
            await uow.commit()
        self._events.order_uploaded()  # wakes this process's worker, if it runs one
