"""Uploading orders."""

from __future__ import annotations

import enum

from gophermart.application.errors import ConcurrentUpdate
from gophermart.application.ports import Clock, OrderEvents, UnitOfWorkFactory
from gophermart.domain.errors import OrderOwnedByAnotherUser
from gophermart.domain.orders import Order, OrderNumber
from gophermart.domain.users import UserId


class UploadOutcome(enum.Enum):
    ACCEPTED = "accepted"  # new number, queued for the accrual system (HTTP 202)
    ALREADY_YOURS = "already_yours"  # this user uploaded it before (HTTP 200)


class UploadOrder:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, events: OrderEvents) -> None:
        self._uow = uow
        self._clock = clock
        self._events = events

    async def __call__(self, user_id: UserId, raw_number: str) -> UploadOutcome:
        number = OrderNumber.parse(raw_number)
        order = Order.upload(number, user_id, self._clock.now())
        async with self._uow() as uow:
            # Insert first, ask questions later: one round trip on the common path, and
            # the unique key settles a race between two uploads of the same number.
            if await uow.orders.add(order):
                await uow.commit()
                self._events.order_uploaded()
                return UploadOutcome.ACCEPTED
            existing = await uow.orders.get(number)
        if existing is None:  # pragma: no cover - orders are never deleted
            raise ConcurrentUpdate(f"order {number} vanished while uploading")
        if existing.owner == user_id:
            return UploadOutcome.ALREADY_YOURS
        raise OrderOwnedByAnotherUser(f"order {number} was uploaded by another user")
