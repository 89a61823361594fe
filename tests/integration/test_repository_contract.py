"""One contract for every persistence backend: memory, SQLite and PostgreSQL.

The use cases only know the ports; these tests pin down what the ports promise, so
the in-memory fakes used by the unit tests cannot drift from the real databases.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from gophermart.adapters.stores.sql.engine import Database
from gophermart.adapters.stores.sql.gate import SqlAccrualGate
from gophermart.adapters.stores.sql.schema import metadata
from gophermart.application.errors import ConcurrentUpdate
from gophermart.application.ports import (
    AccrualGate,
    OperatorKeys,
    ReadModel,
    UnitOfWork,
)
from gophermart.bootstrap import build, settle
from gophermart.domain.accounts import Account, EntryKind, Hold, HoldState
from gophermart.domain.errors import InsufficientPoints, LoginTaken
from gophermart.domain.operators import OperatorName
from gophermart.domain.orders import AccrualVerdict, Order, OrderNumber, OrderStatus
from gophermart.domain.points import Points
from gophermart.domain.users import Login, UserId
from gophermart.settings import MEMORY_URI, Settings
from gophermart.testing import TEST_SECRET
from tests.luhn_reference import with_check_digit
from tests.sql_database import database_for

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NUMBERS = ["79927398713", "12345678903", "9278923470", "346436439", "2377225624"]


@dataclass
class Backend:
    name: str
    uow: Callable[[], UnitOfWork]
    read: ReadModel
    gate: AccrualGate
    database: Database | None = None
    operators: OperatorKeys | None = None


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    uri = (
        MEMORY_URI if request.param == "memory" else request.getfixturevalue(f"{request.param}_uri")
    )
    async for store in _store(request.param, uri):
        yield store


@pytest.fixture(params=["sqlite", "postgres"])
async def sql_backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    async for store in _store(request.param, request.getfixturevalue(f"{request.param}_uri")):
        yield store


async def _store(name: str, uri: str) -> AsyncIterator[Backend]:
    """Each store as the service builds it (bootstrap.build): the same containers, so
    PostgreSQL's units of work are PgUnitOfWork with group commit and coalesced reads,
    every port behind the store's guard."""
    container = build(Settings.for_database(uri, secret=TEST_SECRET))
    await settle(container)  # opened and migrated, as at any start
    store = container.store
    try:
        yield Backend(
            name,
            store.uow,
            store.read_model(),
            store.cold.gate(),
            store.database() if name != "memory" else None,
            store.cold.operators(),
        )
    finally:
        shutdown = container.shutdown_resources()
        if shutdown is not None:
            await shutdown


def is_utc(moment: datetime) -> bool:
    """Timezone-aware UTC, as every store must hand datetimes back."""
    return moment.tzinfo is not None and moment.utcoffset() == timedelta(0)


async def new_user(b: Backend, login: str = "alice") -> UserId:
    async with b.uow() as uow:
        user = await uow.users.add(Login(login), "hash$" + login)
        await uow.accounts.open(user.id)
        await uow.commit()
    return user.id


async def new_order(b: Backend, user: UserId, number: str, at: datetime = T0) -> Order:
    order = Order.upload(OrderNumber(number), user, at)
    async with b.uow() as uow:
        assert await uow.orders.add(order)
        await uow.commit()
    return order


async def credit(b: Backend, user: UserId, number: str, cents: int) -> None:
    """Take an order to PROCESSED with an accrual and credit it, as the worker does."""
    async with b.uow() as uow:
        order = await uow.orders.get(OrderNumber(number))
        assert order is not None
        done = order.move_to(OrderStatus.PROCESSED, Points(cents))
        assert await uow.orders.save(order, done, None)
        account = await uow.accounts.get(user)
        assert account is not None
        account.credit(done, T0)
        await uow.accounts.save(account)
        await uow.commit()


# --- users ----------------------------------------------------------------------


async def test_users_are_found_by_login_and_logins_are_unique(backend: Backend) -> None:
    alice = await new_user(backend, "alice")
    async with backend.uow() as uow:
        found = await uow.users.by_login(Login("alice"))
        assert found is not None and found.id == alice and found.password_hash == "hash$alice"
        assert await uow.users.by_login(Login("Alice")) is None  # case-sensitive
    with pytest.raises(LoginTaken):
        await new_user(backend, "alice")


async def test_uncommitted_work_is_rolled_back(backend: Backend) -> None:
    async with backend.uow() as uow:
        await uow.users.add(Login("ghost"), "h")
        # no commit
    async with backend.uow() as uow:
        assert await uow.users.by_login(Login("ghost")) is None


async def test_an_error_inside_the_unit_of_work_rolls_back(backend: Backend) -> None:
    with pytest.raises(RuntimeError):
        async with backend.uow() as uow:
            await uow.users.add(Login("ghost"), "h")
            raise RuntimeError("boom")
    async with backend.uow() as uow:
        assert await uow.users.by_login(Login("ghost")) is None


# --- orders ---------------------------------------------------------------------


async def test_order_numbers_are_unique_across_users(backend: Backend) -> None:
    alice, bob = await new_user(backend, "alice"), await new_user(backend, "bob")
    await new_order(backend, alice, NUMBERS[0])
    async with backend.uow() as uow:
        assert not await uow.orders.add(Order.upload(OrderNumber(NUMBERS[0]), bob, T0))
        stored = await uow.orders.get(OrderNumber(NUMBERS[0]))
    assert stored is not None
    assert stored.owner == alice and stored.status is OrderStatus.NEW
    assert stored.uploaded_at == T0 and is_utc(stored.uploaded_at)


async def test_save_is_conditional_on_the_status_it_started_from(backend: Backend) -> None:
    alice = await new_user(backend)
    order = await new_order(backend, alice, NUMBERS[0])
    processing = order.move_to(OrderStatus.PROCESSING)
    async with backend.uow() as uow:
        assert await uow.orders.save(order, processing, T0 + timedelta(seconds=5))
        await uow.commit()
    # A second worker that still believes the order is NEW loses.
    async with backend.uow() as uow:
        assert not await uow.orders.save(order, order.move_to(OrderStatus.INVALID), None)
    async with backend.uow() as uow:
        stored = await uow.orders.get(order.number)
    assert stored is not None and stored.status is OrderStatus.PROCESSING


async def test_claim_leases_due_orders_oldest_first_and_skips_final_ones(backend: Backend) -> None:
    alice = await new_user(backend)
    for i, number in enumerate(NUMBERS[:3]):
        await new_order(backend, alice, number, T0 + timedelta(seconds=i))
    await credit(backend, alice, NUMBERS[1], 100)  # final: never claimed again
    lease = T0 + timedelta(minutes=1)
    async with backend.uow() as uow:
        claimed = await uow.orders.claim_due(T0 + timedelta(seconds=10), lease, 10)
        await uow.commit()
    assert [c.number.value for c in claimed] == [NUMBERS[0], NUMBERS[2]]
    assert all(c.attempts == 1 for c in claimed)
    assert not any(c.taken_over for c in claimed)
    # Leased: not due again until the lease runs out...
    async with backend.uow() as uow:
        assert await uow.orders.claim_due(T0 + timedelta(seconds=30), lease, 10) == []
        await uow.commit()
    # ...after which a crashed worker's orders come back, with the attempt counted.
    async with backend.uow() as uow:
        again = await uow.orders.claim_due(lease, lease + timedelta(minutes=1), 1)
        await uow.commit()
    assert [(c.number.value, c.attempts) for c in again] == [(NUMBERS[0], 2)]
    assert again[0].taken_over, "its first claim was never ended: a crash pickup"


async def test_a_save_or_a_reschedule_ends_a_claim(backend: Backend) -> None:
    """Only a claim whose lease ran out unended is a takeover; the worker's own retries
    (reschedule) and status moves (save) are not, however many there are."""
    alice = await new_user(backend)
    retried = await new_order(backend, alice, NUMBERS[0], T0)
    moved = await new_order(backend, alice, NUMBERS[1], T0)
    await new_order(backend, alice, NUMBERS[2], T0)  # its worker dies holding it
    t = T0 + timedelta(seconds=1)

    async def claim(at: datetime) -> dict[str, bool]:
        async with backend.uow() as uow:
            claimed = await uow.orders.claim_due(at, at + timedelta(seconds=10), 10)
            await uow.commit()
        return {c.number.value: c.taken_over for c in claimed}

    assert await claim(t) == dict.fromkeys(NUMBERS[:3], False)
    async with backend.uow() as uow:
        await uow.orders.reschedule(retried.number, t)
        processing = moved.apply(AccrualVerdict.PROCESSING, None)
        assert await uow.orders.save(moved, processing, t)
        await uow.commit()
    # The third's lease (10 s) ran out with its claim never ended: a crash pickup.
    assert await claim(t + timedelta(seconds=11)) == {
        NUMBERS[0]: False,
        NUMBERS[1]: False,
        NUMBERS[2]: True,
    }
    # Leases that run out again (a poison order killing every worker) still say so.
    assert await claim(t + timedelta(seconds=22)) == dict.fromkeys(NUMBERS[:3], True)


async def test_reschedule_moves_the_next_attempt(backend: Backend) -> None:
    alice = await new_user(backend)
    order = await new_order(backend, alice, NUMBERS[0])
    async with backend.uow() as uow:
        await uow.orders.reschedule(order.number, T0 + timedelta(hours=1))
        await uow.commit()
    async with backend.uow() as uow:
        assert await uow.orders.claim_due(T0 + timedelta(minutes=59), T0, 10) == []
        due = await uow.orders.claim_due(T0 + timedelta(hours=1), T0 + timedelta(hours=2), 10)
    assert [c.number.value for c in due] == [NUMBERS[0]]


async def test_concurrent_claims_never_hand_out_the_same_order(backend: Backend) -> None:
    alice = await new_user(backend)
    for i in range(20):
        await new_order(backend, alice, with_check_digit(str(1000 + i)), T0)

    async def claim() -> list[str]:
        async with backend.uow() as uow:
            claimed = await uow.orders.claim_due(T0, T0 + timedelta(minutes=1), 7)
            await uow.commit()
        return [c.number.value for c in claimed]

    batches = await asyncio.gather(*(claim() for _ in range(4)))
    everything = [n for batch in batches for n in batch]
    assert len(everything) == len(set(everything)) == 20


# --- accounts and the ledger ----------------------------------------------------


async def test_credit_and_withdraw_move_the_balance_and_the_ledger(backend: Backend) -> None:
    alice = await new_user(backend)
    await new_order(backend, alice, NUMBERS[0])
    await credit(backend, alice, NUMBERS[0], 50_050)
    async with backend.uow() as uow:
        account = await uow.accounts.get(alice)
        assert account is not None
        assert account.withdraw(OrderNumber(NUMBERS[3]), Points(4_200), T0 + timedelta(1))
        await uow.accounts.save(account)
        await uow.commit()
    balance = await backend.read.balance(alice)
    assert balance is not None
    assert (balance.current.cents, balance.withdrawn.cents) == (45_850, 4_200)
    async with backend.uow() as uow:
        entry = await uow.accounts.withdrawal(OrderNumber(NUMBERS[3]))
    assert entry is not None
    assert (entry.user_id, entry.kind, entry.amount) == (alice, EntryKind.WITHDRAWAL, Points(4200))


async def test_the_database_refuses_an_overdraft_even_past_the_domain(backend: Backend) -> None:
    alice = await new_user(backend)
    await new_order(backend, alice, NUMBERS[0])
    await credit(backend, alice, NUMBERS[0], 1_000)
    # A stale view of the account (as a concurrent request would have) passes the domain
    # check; the conditional debit in the store must still refuse it.
    stale = Account(alice, Points(1_000_000), Points(0))
    stale.withdraw(OrderNumber(NUMBERS[3]), Points(5_000), T0)
    with pytest.raises(InsufficientPoints):
        async with backend.uow() as uow:
            await uow.accounts.save(stale)
            await uow.commit()
    balance = await backend.read.balance(alice)
    assert balance is not None and balance.current.cents == 1_000 and balance.withdrawn.cents == 0
    async with backend.uow() as uow:
        assert await uow.accounts.withdrawal(OrderNumber(NUMBERS[3])) is None


async def test_a_withdrawal_reads_the_account_and_any_earlier_use_of_the_number(
    backend: Backend,
) -> None:
    alice, bob = await new_user(backend, "alice"), await new_user(backend, "bob")
    await new_order(backend, alice, NUMBERS[0])
    await credit(backend, alice, NUMBERS[0], 10_000)
    spent, fresh = OrderNumber(NUMBERS[3]), OrderNumber(NUMBERS[4])
    async with backend.uow() as uow:
        account, previous, held = await uow.accounts.for_withdrawal(alice, spent)
        assert account is not None and previous is None and not held
        assert (account.user_id, account.balance.cents, account.withdrawn.cents) == (
            alice,
            10_000,
            0,
        )
        account.withdraw(spent, Points(1_250), T0)
        await uow.accounts.save(account)
        await uow.commit()
    async with backend.uow() as uow:
        seen_by_bob = await uow.accounts.for_withdrawal(bob, spent)
        unknown = await uow.accounts.for_withdrawal(UserId(999_999), fresh)
        alice_again = await uow.accounts.for_withdrawal(alice, fresh)
    account, previous, _ = seen_by_bob
    assert account is not None and (account.user_id, account.balance.cents) == (bob, 0)
    assert previous is not None
    assert (previous.user_id, previous.amount, previous.at) == (alice, Points(1_250), T0)
    assert is_utc(previous.at)
    assert unknown == (None, None, False)
    account, previous, _ = alice_again
    assert account is not None and previous is None
    assert (account.balance.cents, account.withdrawn.cents) == (8_750, 1_250)


async def test_a_unit_of_work_reads_its_own_saved_entries_and_keeps_none_uncommitted(
    backend: Backend,
) -> None:
    alice = await new_user(backend)
    await new_order(backend, alice, NUMBERS[0])
    await credit(backend, alice, NUMBERS[0], 10_000)
    spent = OrderNumber(NUMBERS[3])
    async with backend.uow() as uow:
        account = await uow.accounts.get(alice)
        assert account is not None
        account.withdraw(spent, Points(2_500), T0)
        await uow.accounts.save(account)
        seen = await uow.accounts.get(alice)
        assert seen is not None and (seen.balance.cents, seen.withdrawn.cents) == (7_500, 2_500)
        entry = await uow.accounts.withdrawal(spent)
        assert entry is not None and entry.amount == Points(2_500)
        # no commit: leaving the unit of work must undo all of it
    balance = await backend.read.balance(alice)
    assert balance is not None and (balance.current.cents, balance.withdrawn.cents) == (10_000, 0)
    async with backend.uow() as uow:
        assert await uow.accounts.withdrawal(spent) is None


async def test_an_order_and_its_credit_commit_together(backend: Backend) -> None:
    """The accrual worker's unit of work: the order's final status and the credit, or
    neither (here the credit is refused, so the status must not stick either)."""
    alice = await new_user(backend)
    await new_order(backend, alice, NUMBERS[0])
    await credit(backend, alice, NUMBERS[0], 1_000)  # NUMBERS[0] is credited once already
    await new_order(backend, alice, NUMBERS[1])
    async with backend.uow() as uow:
        before = await uow.orders.get(OrderNumber(NUMBERS[1]))
        credited = await uow.orders.get(OrderNumber(NUMBERS[0]))
        assert before is not None and credited is not None
    after = before.move_to(OrderStatus.PROCESSED, Points(500))
    account = Account(alice, Points(1_000), Points(0))
    account.credit(credited, T0)  # NUMBERS[0] a second time: the ledger refuses it
    with pytest.raises(ConcurrentUpdate):
        async with backend.uow() as uow:
            assert await uow.orders.save(before, after, None)
            await uow.accounts.save(account)
            await uow.commit()
    async with backend.uow() as uow:
        still = await uow.orders.get(OrderNumber(NUMBERS[1]))
    assert still is not None and still.status is OrderStatus.NEW
    balance = await backend.read.balance(alice)
    assert balance is not None and balance.current.cents == 1_000


async def test_a_second_entry_for_the_same_order_is_refused(backend: Backend) -> None:
    alice, bob = await new_user(backend, "alice"), await new_user(backend, "bob")
    await new_order(backend, alice, NUMBERS[0])
    await credit(backend, alice, NUMBERS[0], 10_000)
    await new_order(backend, bob, NUMBERS[1])
    await credit(backend, bob, NUMBERS[1], 10_000)
    for who in (alice, bob):  # the same withdrawal order number, twice
        account = Account(who, Points(10_000), Points(0))
        account.withdraw(OrderNumber(NUMBERS[4]), Points(100), T0)
        if who == alice:
            async with backend.uow() as uow:
                await uow.accounts.save(account)
                await uow.commit()
        else:
            with pytest.raises(ConcurrentUpdate):
                async with backend.uow() as uow:
                    await uow.accounts.save(account)
                    await uow.commit()
    bob_balance = await backend.read.balance(bob)
    assert bob_balance is not None and bob_balance.current.cents == 10_000


# --- when a unit of work's errors surface (ports.AccountRepository.save) ---------


async def _stale_overdraft(backend: Backend, alice: UserId) -> Account:
    """A debit the domain allows on a stale view of the account, but the store refuses."""
    stale = Account(alice, Points(1_000_000), Points(0))
    stale.withdraw(OrderNumber(NUMBERS[3]), Points(5_000), T0)
    return stale


async def _second_credit(backend: Backend, alice: UserId) -> Account:
    """A credit for an order that was credited already: the ledger refuses it."""
    async with backend.uow() as uow:
        credited = await uow.orders.get(OrderNumber(NUMBERS[0]))
    assert credited is not None
    account = Account(alice, Points(1_000), Points(0))
    account.credit(credited, T0)
    return account


REFUSED = [
    pytest.param(_stale_overdraft, InsufficientPoints, id="lost-debit"),
    pytest.param(_second_credit, ConcurrentUpdate, id="duplicate-entry"),
]


async def _nothing_written(backend: Backend, alice: UserId) -> None:
    """Neither the refused entry nor the unit of work's other write (NUMBERS[1] moved
    to PROCESSING) is stored."""
    balance = await backend.read.balance(alice)
    assert balance is not None and (balance.current.cents, balance.withdrawn.cents) == (1_000, 0)
    assert await backend.read.withdrawals(alice) == []
    async with backend.uow() as uow:
        order = await uow.orders.get(OrderNumber(NUMBERS[1]))
    assert order is not None and order.status is OrderStatus.NEW


@pytest.mark.parametrize("written_by", ["commit", "next-call"])
@pytest.mark.parametrize(("refused", "error"), REFUSED)
async def test_saved_entries_are_checked_by_the_call_that_writes_them_and_nothing_is_written(
    backend: Backend,
    refused: Callable[[Backend, UserId], Awaitable[Account]],
    error: type[Exception],
    written_by: str,
) -> None:
    alice = await new_user(backend)
    await new_order(backend, alice, NUMBERS[0])
    await credit(backend, alice, NUMBERS[0], 1_000)
    before = await new_order(backend, alice, NUMBERS[1])
    account = await refused(backend, alice)
    async with backend.uow() as uow:
        assert await uow.orders.save(before, before.move_to(OrderStatus.PROCESSING), T0)
        await uow.accounts.save(account)  # must not raise: nothing is checked yet
        assert account.pending == []
        if written_by == "next-call":
            with pytest.raises(error):  # this read would see the entries: it writes them
                await uow.accounts.get(alice)
            with pytest.raises(error):  # and the unit of work is finished
                await uow.orders.get(before.number)
        with pytest.raises(error):
            await uow.commit()
        with pytest.raises(error):  # it never commits
            await uow.commit()
    await _nothing_written(backend, alice)


# --- the read side --------------------------------------------------------------


async def test_listings_are_newest_first_and_private(backend: Backend) -> None:
    alice, bob = await new_user(backend, "alice"), await new_user(backend, "bob")
    await new_order(backend, alice, NUMBERS[0], T0)
    await new_order(backend, alice, NUMBERS[1], T0 + timedelta(seconds=2))
    await new_order(backend, alice, NUMBERS[2], T0 + timedelta(seconds=1))
    await new_order(backend, bob, NUMBERS[3], T0 + timedelta(seconds=9))
    await credit(backend, alice, NUMBERS[0], 72_998)
    views = await backend.read.orders(alice)
    assert [v.number for v in views] == [NUMBERS[1], NUMBERS[2], NUMBERS[0]]
    assert views[2].status is OrderStatus.PROCESSED and views[2].accrual == Points(72_998)
    assert views[0].accrual is None and views[0].uploaded_at == T0 + timedelta(seconds=2)
    assert all(is_utc(v.uploaded_at) for v in views)
    carol = await new_user(backend, "carol")
    assert await backend.read.orders(carol) == []  # a user without orders: empty
    assert await backend.read.withdrawals(carol) == []
    # no such user (a token outliving its user): None, told apart from "no rows"
    assert await backend.read.orders(UserId(999_999)) is None
    assert await backend.read.withdrawals(UserId(999_999)) is None
    assert await backend.read.balance(UserId(999_999)) is None

    account = Account(alice, Points(72_998), Points(0))
    account.withdraw(OrderNumber(NUMBERS[4]), Points(100), T0 + timedelta(seconds=1))
    account.withdraw(OrderNumber(with_check_digit("555")), Points(200), T0 + timedelta(seconds=5))
    async with backend.uow() as uow:
        await uow.accounts.save(account)
        await uow.commit()
    withdrawals = await backend.read.withdrawals(alice)
    assert [(w.order, w.sum.cents) for w in withdrawals] == [
        (with_check_digit("555"), 200),
        (NUMBERS[4], 100),
    ]
    assert all(is_utc(w.processed_at) for w in withdrawals)
    assert await backend.read.withdrawals(bob) == []


async def test_orders_come_in_pages_after_a_cursor(backend: Backend) -> None:
    """``limit`` and ``before`` (the last number of the previous page) walk the same list
    as the default answer, ties on uploaded_at included, without skipping or repeating."""
    alice, bob = await new_user(backend, "alice"), await new_user(backend, "bob")
    numbers = [with_check_digit(str(1000 + i)) for i in range(7)]
    for i, number in enumerate(numbers):  # pairs of equal upload times
        await new_order(backend, alice, number, T0 + timedelta(seconds=i // 2))
    await new_order(backend, bob, NUMBERS[0], T0 + timedelta(seconds=1))
    everything = [v.number for v in await backend.read.orders(alice) or []]
    assert sorted(everything) == sorted(numbers) and len(everything) == 7
    pages: list[list[str]] = []
    before = None
    while True:
        page = await backend.read.orders(alice, 3, before)
        assert page is not None
        if not page:
            break
        pages.append([v.number for v in page])
        before = page[-1].number
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [n for p in pages for n in p] == everything
    assert [v.number for v in await backend.read.orders(alice, 100) or []] == everything
    rest = await backend.read.orders(alice, None, everything[1])
    assert rest is not None and [v.number for v in rest] == everything[2:]
    # a cursor that is not one of the user's orders lists nothing; no such user is None
    assert await backend.read.orders(alice, 3, NUMBERS[0]) == []
    assert await backend.read.orders(alice, 3, "0") == []
    assert await backend.read.orders(UserId(999_999), 3, None) is None
    assert await backend.read.orders(UserId(999_999), 3, NUMBERS[0]) is None


async def test_withdrawals_come_in_pages_after_a_cursor(backend: Backend) -> None:
    """The same paging for withdrawals: ``before`` names the order a withdrawal paid
    for; ties on the time included; another user's order as a cursor lists nothing."""
    alice, bob = await new_user(backend, "alice"), await new_user(backend, "bob")
    await new_order(backend, alice, NUMBERS[0])
    await credit(backend, alice, NUMBERS[0], 10_000)
    account = Account(alice, Points(10_000), Points(0))
    spent = [with_check_digit(str(2000 + i)) for i in range(7)]
    for i, number in enumerate(spent):  # pairs of equal times
        account.withdraw(OrderNumber(number), Points(10), T0 + timedelta(seconds=i // 2))
    async with backend.uow() as uow:
        await uow.accounts.save(account)
        await uow.commit()
    everything = [w.order for w in await backend.read.withdrawals(alice) or []]
    assert sorted(everything) == sorted(spent)
    pages: list[list[str]] = []
    before = None
    while page := await backend.read.withdrawals(alice, 3, before):
        pages.append([w.order for w in page])
        before = page[-1].order
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [n for p in pages for n in p] == everything
    rest = await backend.read.withdrawals(alice, None, everything[1])
    assert rest is not None and [w.order for w in rest] == everything[2:]
    assert await backend.read.withdrawals(alice, 3, NUMBERS[0]) == []  # an order, not spent
    assert await backend.read.withdrawals(bob, 3, everything[0]) == []  # alice's, not bob's
    assert await backend.read.withdrawals(UserId(999_999), 3, None) is None


async def test_concurrent_reads_each_get_their_own_answer(backend: Backend) -> None:
    """Reads arriving together (coalesced into one query on PostgreSQL) answer exactly
    what each would alone: own balance, own orders, None for no such user."""
    users = [await new_user(backend, f"user{i}") for i in range(5)]
    for i, user in enumerate(users[:3]):
        await new_order(backend, user, NUMBERS[i])
        await credit(backend, user, NUMBERS[i], 1_000 * (i + 1))
    await new_order(backend, users[0], NUMBERS[3], T0 + timedelta(seconds=1))
    asked = [*users, UserId(999_999), users[0], users[4]]
    alone_balances = [await backend.read.balance(u) for u in asked]
    alone_orders = [await backend.read.orders(u) for u in asked]
    together = await asyncio.gather(
        *(backend.read.balance(u) for u in asked), *(backend.read.orders(u) for u in asked)
    )
    assert list(together[: len(asked)]) == alone_balances
    assert list(together[len(asked) :]) == alone_orders
    assert alone_balances[5] is None and alone_orders[5] is None
    assert alone_orders[4] == [] and alone_balances[4] is not None
    assert [v.number for v in alone_orders[0] or []] == [NUMBERS[3], NUMBERS[0]]
    assert alone_balances[2] is not None and alone_balances[2].current.cents == 3_000


# --- the accrual gate -----------------------------------------------------------


async def test_gate_pauses_then_paces(backend: Backend) -> None:
    await _pauses_then_paces(backend.gate)


@pytest.fixture(params=["sqlite", "postgres"])
async def created_all(request: pytest.FixtureRequest) -> AsyncIterator[Database]:
    """A database whose schema a host made with ``metadata.create_all``, not migrations:
    no row is seeded anywhere."""
    database = database_for(request.getfixturevalue(f"{request.param}_uri"))
    async with database.write.begin() as conn:
        await conn.run_sync(metadata.create_all)
    try:
        yield database
    finally:
        await database.dispose()


async def test_a_gate_creates_its_row_on_a_schema_made_by_create_all(
    created_all: Database,
) -> None:
    await _pauses_then_paces(SqlAccrualGate(created_all.write, refresh=0.0))
    # ...and a second gate (another process) finds the row and the pause in it.
    assert await SqlAccrualGate(created_all.write).reserve(T0) >= T0 + timedelta(seconds=30)


async def _pauses_then_paces(gate: AccrualGate) -> None:
    now = T0
    assert await gate.reserve(now) == now  # nothing known: go
    await gate.pause(now + timedelta(seconds=30), 60)
    first = await gate.reserve(now + timedelta(seconds=1))
    second = await gate.reserve(now + timedelta(seconds=1))
    third = await gate.reserve(now + timedelta(seconds=1))
    assert first >= now + timedelta(seconds=30)
    assert (second - first) >= timedelta(seconds=1) and (third - second) >= timedelta(seconds=1)
    assert (third - first) < timedelta(seconds=3)  # paced, not stalled


# --- constraints that hold even for hand-written SQL ----------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE gophermart_accounts SET balance = -1",
        "INSERT INTO gophermart_ledger (user_id, kind, order_number, amount, created_at) "
        "VALUES (:u, 'accrual', '1', 0, CURRENT_TIMESTAMP)",
        "INSERT INTO gophermart_ledger (user_id, kind, order_number, amount, created_at) "
        "VALUES (:u, 'bonus', '1', 5, CURRENT_TIMESTAMP)",
        "UPDATE gophermart_orders SET status = 'PROCESSED', next_attempt_at = NULL, accrual = 0",
        "UPDATE gophermart_orders SET status = 'DONE'",
        "UPDATE gophermart_orders SET next_attempt_at = NULL",
    ],
)
async def test_schema_constraints_refuse_corrupt_rows(sql_backend: Backend, statement: str) -> None:
    backend = sql_backend
    assert backend.database is not None
    alice = await new_user(backend)
    await new_order(backend, alice, NUMBERS[0])
    params: dict[str, Any] = {"u": alice}
    with pytest.raises(IntegrityError):
        async with backend.database.write.begin() as conn:
            await conn.execute(text(statement), params)


# --- operators (issue 17): their keys, and what they read and retry ------------------


async def test_operator_keys_are_kept_by_hash_one_per_name(backend: Backend) -> None:
    keys = backend.operators
    assert keys is not None
    ops, first, second = OperatorName("ops"), "a" * 64, "b" * 64
    assert await keys.by_hash(first) is None
    assert await keys.add(ops, first, T0)
    assert not await keys.add(ops, second, T0)  # the name holds a key: nothing changes
    stored = await keys.by_hash(first)
    assert stored is not None
    assert (stored.name, stored.key_hash, stored.revoked_at) == ("ops", first, None)
    assert stored.created_at == T0 and is_utc(stored.created_at)
    assert await keys.by_hash(second) is None

    assert await keys.revoke(ops, T0 + timedelta(hours=1))
    assert not await keys.revoke(ops, T0 + timedelta(hours=2))  # revoked already
    assert not await keys.revoke(OperatorName("nobody"), T0)
    revoked = await keys.by_hash(first)
    assert revoked is not None and revoked.revoked_at == T0 + timedelta(hours=1)

    assert await keys.add(ops, second, T0 + timedelta(hours=3))  # re-keyed
    rekeyed = await keys.by_hash(second)
    assert rekeyed is not None
    assert (rekeyed.name, rekeyed.revoked_at) == ("ops", None)
    assert rekeyed.created_at == T0 + timedelta(hours=3)
    assert await keys.by_hash(first) is None  # the old key is gone with its row


async def test_one_of_two_operators_added_at_once_under_one_name_gets_it(
    backend: Backend,
) -> None:
    keys = backend.operators
    assert keys is not None
    added = await asyncio.gather(
        *(keys.add(OperatorName("twin"), str(i) * 64, T0) for i in range(4))
    )
    assert sorted(added) == [False, False, False, True]


async def test_an_account_is_read_by_its_exact_login(backend: Backend) -> None:
    alice = await new_user(backend)
    await new_order(backend, alice, NUMBERS[0])
    await credit(backend, alice, NUMBERS[0], 500_50)
    view = await backend.read.user_by_login("alice")
    assert view is not None
    assert (view.id, view.login) == (alice, "alice")
    assert (view.current, view.withdrawn) == (Points(500_50), Points(0))
    assert (view.held, view.owed, tuple(view.holds)) == (Points(0), Points(0), ())
    assert await backend.read.user_by_login("Alice") is None  # exact: folding is the use case's
    assert await backend.read.user_by_login("bob") is None


async def test_an_order_state_shows_its_queue_and_why_it_is_parked(backend: Backend) -> None:
    alice = await new_user(backend)
    order = await new_order(backend, alice, NUMBERS[0], T0)
    state = await backend.read.order_state(NUMBERS[0])
    assert state is not None
    assert (state.number, state.login, state.status) == (NUMBERS[0], "alice", OrderStatus.NEW)
    assert (state.accrual, state.attempts, state.parked) == (None, 0, None)
    assert state.next_attempt_at == T0 and is_utc(state.next_attempt_at)
    assert state.reversed == Points(0)
    assert await backend.read.order_state(NUMBERS[1]) is None

    async def parked_as(why: str | None, at: datetime) -> str | None:
        async with backend.uow() as uow:
            await uow.orders.reschedule(order.number, at, why)
            await uow.commit()
        found = await backend.read.order_state(NUMBERS[0])
        assert found is not None and found.next_attempt_at == at
        return found.parked

    assert await parked_as("its accrual cannot be credited", T0 + timedelta(hours=1)) == (
        "its accrual cannot be credited"
    )
    assert await parked_as(None, T0 + timedelta(seconds=1)) is None  # a plain retry clears it
    await parked_as("parked again", T0 + timedelta(hours=1))
    async with backend.uow() as uow:  # a save (a status move) clears it too
        claimed = await uow.orders.claim_due(T0 + timedelta(hours=1), T0 + timedelta(hours=2), 1)
        processing = order.apply(AccrualVerdict.PROCESSING, None)
        assert await uow.orders.save(order, processing, T0 + timedelta(hours=3))
        await uow.commit()
    state = await backend.read.order_state(NUMBERS[0])
    assert state is not None and [c.attempts for c in claimed] == [1]
    assert (state.status, state.attempts, state.parked) == (OrderStatus.PROCESSING, 1, None)


async def test_a_retry_makes_a_waiting_order_due_and_leaves_held_and_final_ones(
    backend: Backend,
) -> None:
    alice = await new_user(backend)
    waiting, held, final = [await new_order(backend, alice, n, T0) for n in NUMBERS[:3]]
    hour, soon = T0 + timedelta(hours=1), T0 + timedelta(seconds=5)
    async with backend.uow() as uow:
        await uow.orders.reschedule(waiting.number, hour + timedelta(hours=2), "parked")
        await uow.orders.reschedule(held.number, hour)
        done = final.move_to(OrderStatus.INVALID)
        assert await uow.orders.save(final, done, None)
        await uow.commit()
    async with backend.uow() as uow:  # a worker holds `held` (lease to T0 + 2 h)
        await uow.orders.claim_due(hour, T0 + timedelta(hours=2), 1)
        await uow.commit()
    before = {n: await backend.read.order_state(n) for n in NUMBERS[:3]}
    async with backend.uow() as uow:
        for order in (waiting, held, final):
            await uow.orders.retry(order.number, soon)
        await uow.commit()
    after = {n: await backend.read.order_state(n) for n in NUMBERS[:3]}
    assert after[NUMBERS[0]] is not None
    assert (after[NUMBERS[0]].next_attempt_at, after[NUMBERS[0]].parked) == (soon, None)
    assert after[NUMBERS[1]] == before[NUMBERS[1]]  # the worker's poll decides
    assert after[NUMBERS[2]] == before[NUMBERS[2]]  # final is final
    async with backend.uow() as uow:
        due = await uow.orders.claim_due(soon, soon + timedelta(seconds=10), 10)
    assert [c.number.value for c in due] == [NUMBERS[0]]


async def test_a_hold_is_placed_and_captured_at_once_or_not_at_all(backend: Backend) -> None:
    """holds.place and holds.capture, the checkout's two writes (one statement each on
    PostgreSQL): all of it or nothing, on every store."""
    alice = await new_user(backend)
    await new_order(backend, alice, NUMBERS[0])
    await credit(backend, alice, NUMBERS[0], 100_00)
    order, until = OrderNumber(NUMBERS[1]), T0 + timedelta(minutes=15)

    async def figures() -> tuple[int, int, int]:
        async with backend.uow() as uow:
            account = await uow.accounts.get(alice)
        assert account is not None
        return account.balance.cents, account.withdrawn.cents, account.held.cents

    async def place(cents: int, number: OrderNumber = order) -> Hold | None:
        async with backend.uow() as uow:
            placed = await uow.holds.place(alice, number, Points(cents), T0, until)
            await uow.commit()
        return placed

    assert await place(100_01) is None  # more than the balance: nothing written
    assert await figures() == (100_00, 0, 0)
    hold = await place(40_00)
    assert hold is not None and hold.state is HoldState.OPEN and hold.id > 0
    assert await figures() == (60_00, 0, 40_00)
    assert await place(10_00) is None  # the order has an open hold
    async with backend.uow() as uow:
        assert await uow.holds.capture(alice, hold.id, until) is None  # expired by then
        assert await uow.holds.capture(UserId(alice + 1), hold.id, T0) is None  # not theirs
        captured = await uow.holds.capture(alice, hold.id, T0)
        await uow.commit()
    assert captured == hold.closed(HoldState.CAPTURED, T0)
    assert await figures() == (60_00, 40_00, 0)
    async with backend.uow() as uow:
        assert await uow.holds.capture(alice, hold.id, T0) is None  # captured once
        assert (await uow.holds.get(hold.id)).state is HoldState.CAPTURED  # type: ignore[union-attr]
        assert await uow.accounts.withdrawal(order) is not None
    assert await place(10_00) is None  # the order was paid with points
    assert await place(10_00, OrderNumber(NUMBERS[2])) is not None
    history = await backend.read.history(alice, 10, None)
    assert history is not None
    assert [e.kind for e in history] == [
        EntryKind.HOLD,
        EntryKind.WITHDRAWAL,  # the capture: its release first, then the withdrawal
        EntryKind.HOLD_RELEASE,
        EntryKind.HOLD,
        EntryKind.ACCRUAL,
    ]
    assert [e.balance_after.cents for e in history] == [50_00, 60_00, 100_00, 60_00, 100_00]
    assert history[2].hold_id == hold.id and history[2].reason == "captured"
