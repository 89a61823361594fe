"""Uploading orders and withdrawing points through the use cases (memory adapters).

Proves the ``Orders.upload`` outcomes (ACCEPTED, ALREADY_YOURS, another user's order,
invalid numbers) and that the worker is woken only for a newly accepted order; and the
``Accounts.withdraw`` rules: success, insufficient points change nothing, an identical replay is
charged once, a different sum is a conflict, and concurrent withdrawals (identical or
competing for the same balance) never double-charge or overdraw.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Self

import pytest

from gophermart.adapters.stores.memory import MemoryDatabase
from gophermart.adapters.stores.memory.reads import MemoryReadModel
from gophermart.adapters.stores.memory.unit_of_work import MemoryUnitOfWork
from gophermart.application.accounts import Accounts
from gophermart.application.orders import UploadOutcome
from gophermart.bootstrap import Container
from gophermart.domain.accounts import Account, EntryKind, LedgerEntry
from gophermart.domain.errors import (
    InsufficientPoints,
    InvalidAmount,
    InvalidOrderNumber,
    OrderOwnedByAnotherUser,
    UnknownUser,
    WithdrawalConflict,
)
from gophermart.domain.orders import OrderNumber, OrderStatus
from gophermart.domain.points import Points
from gophermart.domain.users import UserId
from gophermart.testing import EventCounter, FrozenClock

StaleView = tuple[Account | None, LedgerEntry | None, bool]

ORDER = "12345678903"
OTHER_ORDER = "9278923470"
SPEND_ON = "2377225624"
SPEND_ON_2 = "346436439"


@dataclass
class World:
    store: MemoryDatabase
    clock: FrozenClock
    events: EventCounter
    upload: Callable[..., Awaitable[UploadOutcome]]
    withdraw: Callable[..., Awaitable[bool]]
    read: MemoryReadModel
    register: Callable[..., Awaitable[Any]]

    async def user(self, login: str, cents: int = 0) -> UserId:
        auth = await self.register(login, "pw")
        user_id = UserId(auth.user_id)
        # seed a balance directly in the committed state (as if accruals were credited)
        self.store.state.balances[user_id] = (cents, 0)
        return user_id

    async def balance(self, user_id: UserId) -> tuple[int, int]:
        view = await self.read.balance(user_id)
        assert view is not None
        return view.current.cents, view.withdrawn.cents


@pytest.fixture
def world(container: Container) -> World:
    return World(
        container.store.database(),
        container.clock(),
        container.wakeup(),
        container.orders().upload,
        container.accounts().withdraw,
        container.store.read_model(),
        container.users().register,
    )


# --- Orders.upload -----------------------------------------------------------------


async def test_new_number_is_accepted_and_wakes_the_worker(world: World) -> None:
    alice = await world.user("alice")
    assert await world.upload(alice, ORDER) is UploadOutcome.ACCEPTED
    assert world.events.count == 1 and world.events.event.is_set()
    [view] = await world.read.orders(alice)
    assert (view.number, view.status, view.accrual) == (ORDER, OrderStatus.NEW, None)
    assert view.uploaded_at == world.clock.now()


async def test_same_user_again_is_already_yours(world: World) -> None:
    alice = await world.user("alice")
    await world.upload(alice, ORDER)
    world.clock.advance(60)
    assert await world.upload(alice, ORDER) is UploadOutcome.ALREADY_YOURS
    assert await world.upload(alice, f"  {ORDER}\n") is UploadOutcome.ALREADY_YOURS
    assert world.events.count == 1  # only the first upload woke the worker
    [view] = await world.read.orders(alice)
    assert view.uploaded_at == world.clock.now() - timedelta(seconds=60)


async def test_another_users_number_is_refused(world: World) -> None:
    alice = await world.user("alice")
    bob = await world.user("bob")
    await world.upload(alice, ORDER)
    with pytest.raises(OrderOwnedByAnotherUser):
        await world.upload(bob, ORDER)
    assert world.events.count == 1
    assert await world.read.orders(bob) == []
    assert [v.number for v in await world.read.orders(alice)] == [ORDER]


@pytest.mark.parametrize("raw", ["", "   ", "12345678900", "1234567890a", "１２３", "-1"])
async def test_invalid_numbers_are_refused(world: World, raw: str) -> None:
    alice = await world.user("alice")
    with pytest.raises(InvalidOrderNumber):
        await world.upload(alice, raw)
    assert world.events.count == 0
    assert world.store.state.orders == {}


async def test_failed_commit_stores_nothing_and_wakes_nobody(world: World) -> None:
    alice = await world.user("alice")
    world.store.fail_next_commit = True
    with pytest.raises(ConnectionError):
        await world.upload(alice, ORDER)
    assert world.events.count == 0
    assert world.store.state.orders == {}
    assert await world.upload(alice, ORDER) is UploadOutcome.ACCEPTED


async def test_orders_listed_newest_first(world: World) -> None:
    alice = await world.user("alice")
    await world.upload(alice, ORDER)
    world.clock.advance(1)
    await world.upload(alice, OTHER_ORDER)
    assert [v.number for v in await world.read.orders(alice)] == [OTHER_ORDER, ORDER]


async def test_concurrent_uploads_of_one_number_accept_once(world: World) -> None:
    alice = await world.user("alice")
    bob = await world.user("bob")
    results = await asyncio.gather(
        world.upload(alice, ORDER), world.upload(bob, ORDER), return_exceptions=True
    )
    assert results[0] is UploadOutcome.ACCEPTED
    assert isinstance(results[1], OrderOwnedByAnotherUser)
    assert world.events.count == 1


# --- Accounts.withdraw --------------------------------------------------------------


async def test_withdraw_success(world: World) -> None:
    alice = await world.user("alice", cents=100_00)
    assert await world.withdraw(alice, SPEND_ON, Points(75_10)) is True
    assert await world.balance(alice) == (24_90, 75_10)
    [w] = await world.read.withdrawals(alice)
    assert (w.order, w.sum, w.processed_at) == (SPEND_ON, Points(75_10), world.clock.now())


async def test_withdraw_everything(world: World) -> None:
    alice = await world.user("alice", cents=5_00)
    assert await world.withdraw(alice, SPEND_ON, Points(5_00))
    assert await world.balance(alice) == (0, 5_00)


async def test_insufficient_points_change_nothing(world: World) -> None:
    alice = await world.user("alice", cents=10_00)
    with pytest.raises(InsufficientPoints):
        await world.withdraw(alice, SPEND_ON, Points(10_01))
    assert await world.balance(alice) == (10_00, 0)
    assert await world.read.withdrawals(alice) == []
    # the number was not consumed by the refused attempt
    assert await world.withdraw(alice, SPEND_ON, Points(10_00)) is True


async def test_identical_replay_is_charged_once(world: World) -> None:
    alice = await world.user("alice", cents=100_00)
    assert await world.withdraw(alice, SPEND_ON, Points(30_00)) is True
    world.clock.advance(5)
    assert await world.withdraw(alice, SPEND_ON, Points(30_00)) is False
    assert await world.withdraw(alice, f"{SPEND_ON}\n", Points(30_00)) is False
    assert await world.balance(alice) == (70_00, 30_00)
    assert len(await world.read.withdrawals(alice)) == 1


async def test_replay_is_answered_even_when_the_balance_is_now_too_low(world: World) -> None:
    alice = await world.user("alice", cents=30_00)
    assert await world.withdraw(alice, SPEND_ON, Points(30_00)) is True
    assert await world.withdraw(alice, SPEND_ON, Points(30_00)) is False
    assert await world.balance(alice) == (0, 30_00)


async def test_different_sum_is_a_conflict(world: World) -> None:
    alice = await world.user("alice", cents=100_00)
    await world.withdraw(alice, SPEND_ON, Points(30_00))
    with pytest.raises(WithdrawalConflict):
        await world.withdraw(alice, SPEND_ON, Points(30_01))
    assert await world.balance(alice) == (70_00, 30_00)


async def test_same_number_by_another_user_is_a_conflict(world: World) -> None:
    alice = await world.user("alice", cents=100_00)
    bob = await world.user("bob", cents=100_00)
    await world.withdraw(alice, SPEND_ON, Points(30_00))
    with pytest.raises(WithdrawalConflict):
        await world.withdraw(bob, SPEND_ON, Points(30_00))
    assert await world.balance(bob) == (100_00, 0)


async def test_zero_and_invalid_number_are_refused(world: World) -> None:
    alice = await world.user("alice", cents=100_00)
    with pytest.raises(InvalidAmount):
        await world.withdraw(alice, SPEND_ON, Points(0))
    with pytest.raises(InvalidOrderNumber):
        await world.withdraw(alice, "2377225625", Points(1_00))
    assert await world.balance(alice) == (100_00, 0)


async def test_unknown_user(world: World) -> None:
    with pytest.raises(UnknownUser):
        await world.withdraw(UserId(999), SPEND_ON, Points(1))


async def test_failed_commit_charges_nothing(world: World) -> None:
    alice = await world.user("alice", cents=100_00)
    world.store.fail_next_commit = True
    with pytest.raises(ConnectionError):
        await world.withdraw(alice, SPEND_ON, Points(40_00))
    assert await world.balance(alice) == (100_00, 0)
    assert await world.withdraw(alice, SPEND_ON, Points(40_00)) is True  # a real retry


async def test_concurrent_identical_withdrawals_charge_once(world: World) -> None:
    alice = await world.user("alice", cents=100_00)
    results = await asyncio.gather(
        *(world.withdraw(alice, SPEND_ON, Points(60_00)) for _ in range(2))
    )
    assert sorted(results) == [False, True]
    assert await world.balance(alice) == (40_00, 60_00)
    ledger = [e for e in world.store.state.ledger.values() if e.kind is EntryKind.WITHDRAWAL]
    assert len(ledger) == 1


async def test_a_lost_race_reported_by_commit_is_retried_as_a_replay(world: World) -> None:
    """Two identical requests at once on a database: both read no earlier withdrawal, and
    the loser learns of the winner only from ``commit()`` (ports.AccountRepository.save).
    ``Accounts.withdraw`` retries, sees the winner's entry and answers as a replay."""
    alice = await world.user("alice", cents=100_00)
    assert await world.withdraw(alice, SPEND_ON, Points(60_00)) is True  # the winner

    class ReadBeforeTheWinner(MemoryUnitOfWork):
        async def __aenter__(self) -> Self:
            await super().__aenter__()

            async def stale(user_id: UserId, number: OrderNumber) -> StaleView:
                return Account(user_id, Points(100_00), Points(0)), None, False

            self.accounts.for_withdrawal = stale  # type: ignore[method-assign]
            return self

    attempts: list[type[MemoryUnitOfWork]] = [ReadBeforeTheWinner, MemoryUnitOfWork]
    loser = Accounts(lambda _within=None: attempts.pop(0)(world.store), world.clock).withdraw
    assert await loser(alice, SPEND_ON, Points(60_00)) is False
    assert attempts == []  # it did retry
    assert await world.balance(alice) == (40_00, 60_00)


async def test_concurrent_withdrawals_never_overdraw(world: World) -> None:
    alice = await world.user("alice", cents=100_00)
    results = await asyncio.gather(
        world.withdraw(alice, SPEND_ON, Points(60_00)),
        world.withdraw(alice, SPEND_ON_2, Points(60_00)),
        return_exceptions=True,
    )
    assert sum(r is True for r in results) == 1
    assert sum(isinstance(r, InsufficientPoints) for r in results) == 1
    assert await world.balance(alice) == (40_00, 60_00)
