"""Spending points."""

from __future__ import annotations

from decimal import Decimal

from gophermart.application.errors import ConcurrentUpdate
from gophermart.application.ports import Clock, HostConnection, UnitOfWorkFactory
from gophermart.domain.errors import HoldConflict, UnknownUser
from gophermart.domain.orders import OrderNumber
from gophermart.domain.points import Points
from gophermart.domain.users import UserId, valid_user_id


class Accounts:
    #: A lost race (two identical requests at once) is retried once: the second attempt
    #: sees the winner's withdrawal and answers as a replay.
    ATTEMPTS = 2

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def withdraw(
        self,
        user_id: UserId,
        order: str,
        amount: Points | Decimal | int | str,
        *,
        connection: HostConnection | None = None,
    ) -> bool:
        """Spend ``amount`` points on ``order``. ``True`` if charged now, ``False`` for
        a replay of the identical earlier withdrawal (charged once, never twice).

        ``connection``: the host's open transaction (a SQLAlchemy ``AsyncConnection`` on
        this store's database): the points move inside it, and commit or roll back with
        the host's own rows."""
        user_id = valid_user_id(user_id)
        number = OrderNumber.parse(order)
        points = amount if isinstance(amount, Points) else Points.exact(amount)
        for attempt in range(self.ATTEMPTS):
            try:
                return await self._withdraw_once(user_id, number, points, connection)
            except ConcurrentUpdate:
                if attempt + 1 == self.ATTEMPTS:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _withdraw_once(
        self,
        user_id: UserId,
        number: OrderNumber,
        amount: Points,
        connection: HostConnection | None,
    ) -> bool:
        async with self._uow(connection) as uow:
            account, previous, held = await uow.accounts.for_withdrawal(user_id, number)
            if account is None:
                raise UnknownUser(user_id)
            if held:  # the order is being paid through a hold: capture it instead
                raise HoldConflict(number.value, "has an open hold")
            entry = account.withdraw(number, amount, self._clock.now(), previous)
            if entry is None:
                return False
            await uow.accounts.save(account)
            await uow.commit()
            return True
