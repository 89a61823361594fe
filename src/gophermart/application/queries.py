"""The read side: balance and the listings.

They skip the domain model (a :class:`~gophermart.application.ports.ReadModel` reads
the tables straight into views), but a credential naming no user is the same error
everywhere: :class:`~gophermart.domain.errors.UnknownUser`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from gophermart.application.ports import BalanceView, OrderView, ReadModel, WithdrawalView
from gophermart.domain.errors import InvalidInput, UnknownUser
from gophermart.domain.users import UserId, valid_user_id

V = TypeVar("V")


def _of_a_user(user_id: UserId, view: V | None) -> V:
    if view is None:  # not "nothing to show": a credential naming no user
        raise UnknownUser(user_id)
    return view


class Queries:
    #: The largest page of a listing.
    MAX_LIMIT = 10_000
    #: How many rows of a long listing are read, and rendered, at a time: the stores
    #: read a whole list by chunks of this many, and the HTTP API streams it so.
    CHUNK = 1_000

    def __init__(self, read_model: ReadModel) -> None:
        self._read = read_model

    async def balance(self, user_id: UserId) -> BalanceView:
        user_id = valid_user_id(user_id)
        return _of_a_user(user_id, await self._read.balance(user_id))

    async def orders(
        self, user_id: UserId, limit: int | None = None, before: str | None = None
    ) -> Sequence[OrderView]:
        """The user's uploads, newest first: all of them, or a page of at most ``limit``
        (1 to :attr:`MAX_LIMIT`) that starts after the order numbered ``before`` (the
        last one of the page before). Orders never leave the list and new ones come
        first, so paging this way neither skips nor repeats an order.
        :class:`gophermart.InvalidInput` for a limit out of range or a ``before`` that
        is not digits."""
        user_id = valid_user_id(user_id)
        self._check_page(limit, before)
        return _of_a_user(user_id, await self._read.orders(user_id, limit, before))

    async def withdrawals(
        self, user_id: UserId, limit: int | None = None, before: str | None = None
    ) -> Sequence[WithdrawalView]:
        """The user's withdrawals, newest first: all of them, or pages as :meth:`orders`
        gives them (``before``: the order number of the last withdrawal of the page
        before)."""
        user_id = valid_user_id(user_id)
        self._check_page(limit, before)
        return _of_a_user(user_id, await self._read.withdrawals(user_id, limit, before))

    def _check_page(self, limit: object, before: object) -> None:
        if limit is not None and (type(limit) is not int or not 1 <= limit <= self.MAX_LIMIT):
            raise InvalidInput(f"limit must be a whole number between 1 and {self.MAX_LIMIT}")
        if before is not None and not (
            isinstance(before, str) and before.isascii() and before.isdigit()
        ):
            raise InvalidInput("before must be an order number (digits)")
