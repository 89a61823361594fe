"""The read side as use cases: balance and the two listings.

They skip the domain model (a :class:`~gophermart.application.ports.ReadModel` reads
the tables straight into views), but a credential naming no user is the same error
everywhere: :class:`~gophermart.domain.errors.UnknownUser`.
"""

from __future__ import annotations

from collections.abc import Sequence

from gophermart.application.ports import BalanceView, OrderView, ReadModel, WithdrawalView
from gophermart.domain.errors import InvalidInput, UnknownUser
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
    """The user's uploads, newest first: all of them, or a page.

    A page is at most ``limit`` orders (1 to :attr:`MAX_LIMIT`) and, with ``before``,
    starts after the user's order of that number: the next page's ``before`` is the
    number of the last order of this one. Orders never leave the list and new ones
    come first, so paging this way neither skips nor repeats an order.
    """

    MAX_LIMIT = 10_000

    def __init__(self, read_model: ReadModel) -> None:
        self._read = read_model

    async def __call__(
        self, user_id: UserId, limit: int | None = None, before: str | None = None
    ) -> Sequence[OrderView]:
        if limit is not None and not 1 <= limit <= self.MAX_LIMIT:
            raise InvalidInput(f"limit must be between 1 and {self.MAX_LIMIT}")
        if before is not None and not (before.isascii() and before.isdigit()):
            raise InvalidInput("before must be an order number (digits)")
        views = await self._read.orders(user_id, limit, before)
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
