"""The read side: balance and the listings.

They skip the domain model (a :class:`~gophermart.application.ports.ReadModel` reads
the tables straight into views), but a credential naming no user is the same error
everywhere: :class:`~gophermart.domain.errors.UnknownUser`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TypeVar

from gophermart.application.ports import (
    BalanceView,
    HistoryView,
    OrderState,
    OrderView,
    ReadModel,
    UserAccountView,
    WithdrawalView,
)
from gophermart.domain.errors import InvalidInput, UnknownLogin, UnknownOrder, UnknownUser
from gophermart.domain.orders import OrderNumber
from gophermart.domain.users import Login, UserId, valid_user_id

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

    async def history(
        self, user_id: UserId, limit: int | None = None, before: str | None = None
    ) -> Sequence[HistoryView]:
        """The user's ledger entries, newest first, each with the balance after it:
        all of them, or pages as :meth:`orders` gives them (``before``: the ``id`` of
        the last entry of the page before)."""
        user_id = valid_user_id(user_id)
        self._check_page(limit, before)
        if before is not None and (len(before) > 19 or int(before) >= 2**63):
            raise InvalidInput("before must be an entry id")
        cursor = int(before) if before is not None else None
        if limit is not None:
            return _of_a_user(user_id, await self._read.history(user_id, limit, cursor))
        listed = list(_of_a_user(user_id, await self._read.history(user_id, self.CHUNK, cursor)))
        chunk: Sequence[HistoryView] = listed
        while len(chunk) == self.CHUNK:  # a long history: a chunk at a time
            chunk = await self._read.history(user_id, self.CHUNK, int(chunk[-1].id)) or []
            listed.extend(chunk)
        return listed

    async def user_by_login(self, login: str) -> UserAccountView:
        """A user's account as an operator sees it, found by login as log-in finds it
        (``login`` typed as the user would type it at log-in: the same folding).
        :class:`gophermart.UnknownLogin` if no user has it."""
        for candidate in Login.candidates(login):
            found = await self._read.user_by_login(candidate.value)
            if found is not None:
                held = await self._read.holds(found.id)
                return replace(found, holds=tuple(held or ()))
        raise UnknownLogin(login)

    async def order_state(self, number: str) -> OrderState:
        """An order as an operator sees it, whoever uploaded it: its status and where it
        stands in the accrual queue (attempts, next poll, why it is parked).
        :class:`gophermart.InvalidInput` for anything but digits,
        :class:`gophermart.InvalidOrderNumber` for digits failing the Luhn check,
        :class:`gophermart.UnknownOrder` if nobody uploaded it."""
        valid = OrderNumber.named(number)
        found = await self._read.order_state(valid.value)
        if found is None:
            raise UnknownOrder(valid.value)
        return found

    def _check_page(self, limit: object, before: object) -> None:
        if limit is not None and (type(limit) is not int or not 1 <= limit <= self.MAX_LIMIT):
            raise InvalidInput(f"limit must be a whole number between 1 and {self.MAX_LIMIT}")
        if before is not None and not (
            isinstance(before, str) and before.isascii() and before.isdigit()
        ):
            raise InvalidInput("before must be an order number or an entry id (digits)")
