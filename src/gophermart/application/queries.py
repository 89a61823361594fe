"""The read side as use cases: balance and the two listings.

They skip the domain model (a :class:`~gophermart.application.ports.ReadModel` reads
the tables straight into views), but a credential naming no user is the same error
everywhere: :class:`~gophermart.domain.errors.UnknownUser`.
"""

from __future__ import annotations

from collections.abc import Sequence

from gophermart.application.ports import BalanceView, OrderView, ReadModel, WithdrawalView
from gophermart.domain.errors import UnknownUser
from gophermart.domain.users import UserId


class ShowBalance:
    def __init__(self, read_model: ReadModel) -> None:
        self._read = read_model

    async def __call__(self, user_id: UserId) -> BalanceView:
        view = await self._read.balance(user_id)
        if view is None:
            raise UnknownUser(f"user {user_id} has no account")
        return view


class ListOrders:
    """The user's uploads, newest first."""

    def __init__(self, read_model: ReadModel) -> None:
        self._read = read_model

    async def __call__(self, user_id: UserId) -> Sequence[OrderView]:
        views = await self._read.orders(user_id)
        if views is None:  # not "no orders": a credential naming no user
            raise UnknownUser(f"user {user_id} has no account")
        return views


class ListWithdrawals:
    """The user's withdrawals, newest first."""

    def __init__(self, read_model: ReadModel) -> None:
        self._read = read_model

    async def __call__(self, user_id: UserId) -> Sequence[WithdrawalView]:
        views = await self._read.withdrawals(user_id)
        if views is None:
            raise UnknownUser(f"user {user_id} has no account")
        return views
