"""Group commit of withdrawals on real PostgreSQL (adapters/sql/pg_group_commit.py).

Concurrent withdrawals of one process share one transaction and one flush; each must
still get its own exact answer, the database must still refuse every overdraft, and
the ledger must still explain every balance.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from gophermart import Gophermart
from gophermart.adapters.stores.postgres.group_commit import PgGroupCommit
from gophermart.adapters.stores.postgres.pool import PgPool
from gophermart.adapters.stores.sql.runners import Conflict
from gophermart.domain.accounts import EntryKind, LedgerEntry
from gophermart.domain.errors import InsufficientPoints, WithdrawalConflict
from gophermart.domain.orders import OrderNumber
from gophermart.domain.points import Points
from gophermart.domain.users import UserId
from gophermart.testing import loyalty_for_tests
from tests.integration.test_events import assert_the_feed_tells_the_history
from tests.luhn_reference import with_check_digit

pytestmark = pytest.mark.postgres

_numbers = iter(range(10**6, 10**7))


def fresh_number() -> str:
    return with_check_digit(str(next(_numbers)))


@pytest.fixture
async def loyalty(postgres_uri: str) -> AsyncIterator[Gophermart]:
    async with loyalty_for_tests(database_uri=postgres_uri) as service:
        yield service


async def funded(loyalty: Gophermart, login: str, points: int) -> UserId:
    user = await loyalty.register(login, "pw")
    number = fresh_number()
    await loyalty.upload_order(user.user_id, number)
    await loyalty.record_accrual(number, points)
    return user.user_id


def entry(user: UserId, cents: int, number: str | None = None) -> LedgerEntry:
    return LedgerEntry(
        user,
        EntryKind.WITHDRAWAL,
        OrderNumber(number or fresh_number()),
        Points(cents),
        datetime.now(UTC),
    )


async def answer(group: PgGroupCommit, debit: LedgerEntry) -> str:
    try:
        return "written" if await group.debit(debit) else "refused"
    except Conflict:
        return "conflict"


async def test_one_batch_answers_each_debit_as_if_one_after_the_other(
    loyalty: Gophermart,
) -> None:
    """Debits arriving together on one account are decided in arrival order on the
    locked balance: a refusal does not spend, a later smaller debit still fits."""
    alice = await funded(loyalty, "alice", 10)  # 1,000 cents
    bob = await funded(loyalty, "bob", 1)
    group: PgGroupCommit = loyalty.container.store.group_commit()
    amounts = [500, 300, 700, 100, 150, 100, 1]
    debits = [entry(alice, cents) for cents in amounts]
    taken = entry(bob, 10)
    assert await group.debit(taken)
    answers = await asyncio.gather(
        *(answer(group, d) for d in debits),
        answer(group, entry(bob, 100)),  # bob has 90 left: refused, alice unaffected
        answer(group, entry(UserId(999_999), 1)),  # no such account: refused
        answer(group, entry(bob, 1, taken.order_number.value)),  # number taken: conflict
    )
    assert answers == [
        *["written", "written", "refused", "written", "refused", "written", "refused"],
        "refused",
        "refused",
        "conflict",
    ]
    balance = await loyalty.balance(alice)
    assert (balance.current, balance.withdrawn) == (Points(0), Points(1_000))
    assert len(await loyalty.withdrawals(alice)) == 4
    assert (await loyalty.reconcile()).ok
    # The batch wrote its entries' events with them, none for a refusal or a conflict.
    for user in (alice, bob):
        await assert_the_feed_tells_the_history(loyalty, user)


async def test_the_same_number_twice_in_one_batch_is_written_once(loyalty: Gophermart) -> None:
    alice = await funded(loyalty, "alice", 10)
    group: PgGroupCommit = loyalty.container.store.group_commit()
    number = fresh_number()
    answers = await asyncio.gather(*(answer(group, entry(alice, 100, number)) for _ in range(3)))
    assert answers == ["written", "conflict", "conflict"]
    assert (await loyalty.balance(alice)).current == Points(900)


async def test_a_failed_batch_is_written_one_by_one_with_each_answer_its_own(
    loyalty: Gophermart, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await funded(loyalty, "alice", 10)
    group: PgGroupCommit = loyalty.container.store.group_commit()
    real = PgGroupCommit._in_one_statement
    calls = 0

    async def fail_once(self: PgGroupCommit, batch: list[object]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a batch that fails as a whole")
        await real(self, batch)  # type: ignore[arg-type]

    monkeypatch.setattr(PgGroupCommit, "_in_one_statement", fail_once)
    answers = await asyncio.gather(*(answer(group, entry(alice, c)) for c in [600, 600, 300]))
    assert answers == ["written", "refused", "written"]
    assert (await loyalty.balance(alice)).current == Points(100)
    assert (await loyalty.reconcile()).ok
    await assert_the_feed_tells_the_history(loyalty, alice)  # none lost, none invented


async def test_concurrent_withdrawals_on_one_hot_account_match_a_sequential_model(
    loyalty: Gophermart,
) -> None:
    """Through the facade (use case, unit of work, group commit): many withdrawals at
    once, with replays and conflicting reuses of numbers. No overdraft; each number
    charged at most once; a replay charges nothing; every refusal is one that no order
    of the requests could have granted; the ledger explains the balance."""
    start = 500
    alice = await funded(loyalty, "alice", start)
    rng = random.Random(11)
    requests: list[tuple[str, int]] = []
    for _ in range(120):
        roll = rng.random()
        if requests and roll < 0.15:
            requests.append(rng.choice(requests))  # the identical request again
        elif requests and roll < 0.25:
            number, amount = rng.choice(requests)
            requests.append((number, amount + 1))  # the number, another amount
        else:
            requests.append((fresh_number(), rng.randint(1, 12)))

    async def withdraw(number: str, amount: int) -> str:
        try:
            return "charged" if await loyalty.withdraw(alice, number, amount) else "replay"
        except InsufficientPoints:
            return "402"
        except WithdrawalConflict:
            return "409"

    answers = await asyncio.gather(*(withdraw(n, a) for n, a in requests))
    balance = await loyalty.balance(alice)
    charged = [(n, a) for (n, a), r in zip(requests, answers, strict=True) if r == "charged"]
    assert len({n for n, _ in charged}) == len(charged)  # each number charged once
    spent = sum(a for _, a in charged)
    assert balance.current == Points((start - spent) * 100)
    assert balance.withdrawn == Points(spent * 100)
    for (number, amount), result in zip(requests, answers, strict=True):
        if result == "402":  # the balance only falls: refusable only above the final one
            assert Points(amount * 100) > balance.current
        if result == "replay":
            assert (number, amount) in charged
        if result == "409":
            assert any(n == number and a != amount for n, a in charged)
    assert "charged" in answers
    listed = {(w.order, w.sum.cents // 100) for w in await loyalty.withdrawals(alice)}
    assert listed == set(charged)
    assert (await loyalty.reconcile()).ok
    await assert_the_feed_tells_the_history(loyalty, alice)  # one event per charge


async def test_two_processes_batching_on_one_account_never_overdraw(
    loyalty: Gophermart,
) -> None:
    """Two group committers (as two server processes have), each with its own
    connections, on the same hot account: the row lock orders their batches."""
    alice = await funded(loyalty, "alice", 50)  # 5,000 cents
    dsn = loyalty.settings.database.location
    pools = [PgPool(dsn, max_size=2), PgPool(dsn, max_size=2)]
    try:
        groups = [PgGroupCommit(pool) for pool in pools]
        answers = await asyncio.gather(
            *(answer(groups[i % 2], entry(alice, 70)) for i in range(100))
        )
    finally:
        for pool in pools:
            await pool.close()
    assert answers.count("written") == 5_000 // 70
    assert set(answers) == {"written", "refused"}
    balance = await loyalty.balance(alice)
    assert balance.current == Points(5_000 % 70) and balance.withdrawn == Points(5_000 // 70 * 70)
    assert (await loyalty.reconcile()).ok


async def test_a_row_locked_elsewhere_holds_up_only_its_own_withdrawals(
    loyalty: Gophermart, postgres_uri: str
) -> None:
    """SPEC, "One slow thing stays one slow thing": an operator's psql holds alice's
    account row; withdrawals of other users batched with hers are written at once, hers
    waits for the lock (within the statement timeout), and goes through once it is free."""
    alice = await funded(loyalty, "alice", 10)
    bob = await funded(loyalty, "bob", 10)
    group: PgGroupCommit = loyalty.container.store.group_commit()
    holder = await asyncpg.connect(postgres_uri)
    try:
        locking = holder.transaction()
        await locking.start()
        await holder.execute(
            "SELECT 1 FROM gophermart_accounts WHERE user_id = $1 FOR UPDATE", alice
        )
        hers = asyncio.create_task(answer(group, entry(alice, 100)))
        started = time.monotonic()
        others = await asyncio.gather(*(answer(group, entry(bob, 100)) for _ in range(3)))
        assert others == ["written"] * 3
        assert time.monotonic() - started < 1.0  # not held up by alice's row
        await asyncio.sleep(0.3)
        assert not hers.done()  # hers waits for the lock
        await locking.rollback()
        assert await asyncio.wait_for(hers, 5) == "written"
    finally:
        await holder.close()
    assert (await loyalty.balance(alice)).current == Points(900)
    assert (await loyalty.balance(bob)).current == Points(700)
    assert (await loyalty.reconcile()).ok
