"""Accounts and the ledger: the balance is the sum of entries, never negative.

First the ``Account`` rules on their own (credit only PROCESSED points of one's own
order; withdraw: insufficient, replay charges nothing, conflicts, zero refused). Then a
hypothesis state machine drives the *use cases* (Register, UploadOrder, AccrualSync with
a scripted accrual system, Withdraw) against the memory adapters with random command
sequences, exact replays, reused numbers and injected commit failures, and after every
step checks the committed state against an independent model: balance = credits -
debits >= 0, withdrawn = debits, each order credited at most once and only when
PROCESSED, each withdrawal number used once, and a failed operation changes nothing.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime

import pytest
from dependency_injector import providers
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from gophermart.adapters.stores import memory
from gophermart.adapters.stores.memory import MemoryDatabase
from gophermart.adapters.stores.memory.gate import MemoryGate
from gophermart.adapters.stores.memory.reads import MemoryReadModel
from gophermart.application.accrual_sync import AccrualSync
from gophermart.application.orders import UploadOutcome
from gophermart.application.ports import AccrualAnswer, AccrualReply, RateLimited, Unavailable
from gophermart.bootstrap import Container
from gophermart.domain.accounts import Account, EntryKind, LedgerEntry
from gophermart.domain.errors import (
    BalanceOverflow,
    InsufficientPoints,
    InvalidAmount,
    LoginTaken,
    OrderOwnedByAnotherUser,
    WithdrawalConflict,
)
from gophermart.domain.orders import AccrualVerdict, Order, OrderNumber, OrderStatus
from gophermart.domain.points import MAX_AMOUNT_CENTS, MAX_CENTS, Points
from gophermart.domain.users import UserId
from gophermart.settings import MEMORY_URI, Settings
from gophermart.testing import (
    TEST_SECRET,
    EventCounter,
    FrozenClock,
    ScriptedAccrual,
    use_test_doubles,
)
from tests.luhn_reference import with_check_digit

AT = datetime(2026, 1, 1, tzinfo=UTC)
ALICE, BOB = UserId(1), UserId(2)
N1 = OrderNumber.parse("12345678903")
N2 = OrderNumber.parse("9278923470")


def processed(owner: UserId, cents: int | None, number: OrderNumber = N1) -> Order:
    order = Order.upload(number, owner, AT)
    return order.move_to(OrderStatus.PROCESSED, Points(cents) if cents is not None else None)


def account(cents: int = 0, withdrawn: int = 0, user: UserId = ALICE) -> Account:
    return Account(user, Points(cents), Points(withdrawn))


# --- Account on its own ----------------------------------------------------------


def test_credit_adds_the_accrual_and_records_an_entry() -> None:
    acc = account(1_00)
    entry = acc.credit(processed(ALICE, 500_50), AT)
    assert entry == LedgerEntry(ALICE, EntryKind.ACCRUAL, N1, Points(500_50), AT)
    assert not entry.is_debit
    assert (acc.balance, acc.withdrawn) == (Points(501_50), Points(0))
    assert acc.pending == [entry]


@pytest.mark.parametrize("cents", [None, 0])
def test_credit_of_an_order_without_points_changes_nothing(cents: int | None) -> None:
    acc = account(1_00)
    assert acc.credit(processed(ALICE, cents), AT) is None
    assert acc.balance == Points(1_00) and acc.pending == []


@pytest.mark.parametrize("status", [OrderStatus.NEW, OrderStatus.PROCESSING, OrderStatus.INVALID])
def test_credit_of_an_unfinished_or_invalid_order_changes_nothing(status: OrderStatus) -> None:
    acc = account()
    order = Order(N1, ALICE, status, AT, Points(100))  # hand-built: accrual not yet earned
    assert acc.credit(order, AT) is None
    assert acc.balance == Points(0)


def test_credit_of_someone_elses_order_is_refused() -> None:
    acc = account()
    with pytest.raises(ValueError, match="does not belong"):
        acc.credit(processed(BOB, 100), AT)
    assert acc.balance == Points(0) and acc.pending == []


def test_withdraw_moves_points_to_withdrawn() -> None:
    acc = account(100_00, 5_00)
    entry = acc.withdraw(N2, Points(30_00), AT)
    assert entry == LedgerEntry(ALICE, EntryKind.WITHDRAWAL, N2, Points(30_00), AT)
    assert entry.is_debit
    assert (acc.balance, acc.withdrawn) == (Points(70_00), Points(35_00))


def test_withdraw_exact_balance() -> None:
    acc = account(30_00)
    assert acc.withdraw(N2, Points(30_00), AT) is not None
    assert acc.balance == Points(0)


def test_insufficient_points() -> None:
    acc = account(29_99)
    with pytest.raises(InsufficientPoints):
        acc.withdraw(N2, Points(30_00), AT)
    assert (acc.balance, acc.withdrawn, acc.pending) == (Points(29_99), Points(0), [])


def test_zero_withdrawal_refused() -> None:
    acc = account(10_00)
    with pytest.raises(InvalidAmount):
        acc.withdraw(N2, Points(0), AT)
    assert acc.pending == []


def test_identical_replay_returns_none_and_charges_nothing() -> None:
    previous = LedgerEntry(ALICE, EntryKind.WITHDRAWAL, N2, Points(30_00), AT)
    acc = account(0, 30_00)  # even with nothing left, the replay is answered
    assert acc.withdraw(N2, Points(30_00), AT, previous) is None
    assert (acc.balance, acc.withdrawn, acc.pending) == (Points(0), Points(30_00), [])


@pytest.mark.parametrize(
    ("user", "cents"), [(ALICE, 30_01), (ALICE, 29_99), (BOB, 30_00), (BOB, 1_00)]
)
def test_reused_number_with_another_sum_or_user_conflicts(user: UserId, cents: int) -> None:
    previous = LedgerEntry(ALICE, EntryKind.WITHDRAWAL, N2, Points(30_00), AT)
    acc = account(100_00, user=user)
    with pytest.raises(WithdrawalConflict):
        acc.withdraw(N2, Points(cents), AT, previous)
    assert (acc.balance, acc.pending) == (Points(100_00), [])


def test_credits_after_a_record_accrual_keep_landing() -> None:
    """Issue 9, finding 7: one accrual of 10^13 points made every later credit raise."""
    acc = account()
    acc.credit(processed(ALICE, MAX_AMOUNT_CENTS, N1), AT)
    acc.credit(processed(ALICE, 1_00, N2), AT)
    assert acc.balance == Points(MAX_AMOUNT_CENTS + 1_00)
    assert len(acc.pending) == 2


def test_a_credit_past_the_column_raises_and_changes_nothing() -> None:
    acc = account(MAX_CENTS - 99)
    with pytest.raises(BalanceOverflow):
        acc.credit(processed(ALICE, 1_00), AT)
    assert (acc.balance, acc.pending) == (Points(MAX_CENTS - 99), [])
    acc.credit(processed(ALICE, 99), AT)  # exactly up to the column is fine
    assert acc.balance == Points(MAX_CENTS)


def test_a_withdrawal_past_the_withdrawn_column_raises_and_changes_nothing() -> None:
    acc = account(10_00, MAX_CENTS - 5_00)
    with pytest.raises(BalanceOverflow):
        acc.withdraw(N2, Points(6_00), AT)
    assert (acc.balance, acc.withdrawn, acc.pending) == (
        Points(10_00),
        Points(MAX_CENTS - 5_00),
        [],
    )


# --- the state machine -----------------------------------------------------------

UPLOAD_POOL = [with_check_digit(f"4000{i:03d}") for i in range(8)]
WITHDRAW_POOL = [with_check_digit(f"7000{i:03d}") for i in range(8)]
LOGINS = [f"user{i}" for i in range(5)]
FINAL = (OrderStatus.INVALID, OrderStatus.PROCESSED)

answer_kinds = st.sampled_from(
    ["processed", "processed", "invalid", "registered", "processing", "unknown", "down", "429"]
)
amounts = st.one_of(st.integers(0, 3_000), st.integers(0, 10**7))


class LedgerMachine(RuleBasedStateMachine):
    """Random sequences of the use cases, checked step by step against a tiny model."""

    users = Bundle("users")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = FrozenClock()
        self.accrual = ScriptedAccrual()
        self.events = EventCounter()
        # The wiring is the composition root's, with the test doubles; only the store
        # is made here, inside this machine's own loop (its asyncio.Lock belongs there).
        store = memory.Store()
        store.database.override(providers.Object(self.run(self._make_store())))
        settings = Settings.for_database(MEMORY_URI, secret=TEST_SECRET)
        c = use_test_doubles(
            Container(settings=settings, store=store),
            clock=self.clock,
            accrual=self.accrual,
            events=self.events,
        )
        self.store: MemoryDatabase = c.store.database()
        self.gate: MemoryGate = c.store.cold.gate()
        self.register = c.users().register
        self.upload_order = c.orders().upload
        self.withdraw = c.accounts().withdraw
        self.sync = AccrualSync(
            c.store.uow, self.accrual, self.gate, self.clock, batch_size=1000, sleep=self._sleep
        )
        self.read: MemoryReadModel = c.store.read_model()
        # the model: independent plain dicts
        self.logins: dict[str, UserId] = {}
        self.owner: dict[str, UserId] = {}
        self.status: dict[str, OrderStatus] = {}
        self.credits: dict[str, tuple[UserId, int]] = {}
        self.debits: dict[str, tuple[UserId, int]] = {}
        self.accepted_uploads = 0

    # -- plumbing

    @staticmethod
    async def _make_store() -> MemoryDatabase:
        return MemoryDatabase()  # its asyncio.Lock belongs to this machine's loop

    async def _sleep(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.loop.close()

    def balance(self, user: UserId) -> int:
        return sum(c for u, c in self.credits.values() if u == user) - self.withdrawn(user)

    def withdrawn(self, user: UserId) -> int:
        return sum(c for u, c in self.debits.values() if u == user)

    def snapshot(self) -> object:
        s = self.store.state
        return (
            dict(s.balances),
            dict(s.ledger),
            {k: (q.order, q.next_attempt_at, q.attempts) for k, q in s.orders.items()},
            dict(s.logins),
        )

    # -- users

    @initialize(target=users)
    def first_user(self) -> UserId:
        return self._register_new("first")

    def _register_new(self, login: str) -> UserId:
        auth = self.run(self.register(login, "pw"))
        user = UserId(auth.user_id)
        assert user not in self.logins.values()
        self.logins[login] = user
        return user

    @rule(target=users, login=st.sampled_from(LOGINS))
    def register_user(self, login: str):  # type: ignore[no-untyped-def]
        if login in self.logins:
            before = self.snapshot()
            with pytest.raises(LoginTaken):
                self.run(self.register(login, "other"))
            assert self.snapshot() == before
            return multiple()
        return self._register_new(login)

    @rule(login=st.sampled_from(LOGINS))
    def register_fails_at_commit(self, login: str) -> None:
        before = self.snapshot()
        self.store.fail_next_commit = True
        expected = LoginTaken if login in self.logins else ConnectionError
        with pytest.raises(expected):
            self.run(self.register(login, "pw"))
        self.store.fail_next_commit = False  # LoginTaken is raised before the commit
        assert self.snapshot() == before

    # -- uploads

    @rule(user=users, number=st.sampled_from(UPLOAD_POOL), fail=st.booleans())
    def upload(self, user: UserId, number: str, fail: bool) -> None:
        before = self.snapshot()
        owner = self.owner.get(number)
        if fail:
            self.store.fail_next_commit = True
        if owner is None:
            if fail:
                with pytest.raises(ConnectionError):
                    self.run(self.upload_order(user, number))
                assert self.snapshot() == before
                return
            assert self.run(self.upload_order(user, number)) is UploadOutcome.ACCEPTED
            self.owner[number] = user
            self.status[number] = OrderStatus.NEW
            self.accepted_uploads += 1
            return
        if owner == user:
            assert self.run(self.upload_order(user, number)) is UploadOutcome.ALREADY_YOURS
        else:
            with pytest.raises(OrderOwnedByAnotherUser):
                self.run(self.upload_order(user, number))
        self.store.fail_next_commit = False  # no commit happens on these paths
        assert self.snapshot() == before

    # -- the accrual system

    @precondition(lambda self: bool(self.owner))
    @rule(data=st.data(), kind=answer_kinds, cents=amounts, fail=st.booleans())
    def accrual_round(self, data: st.DataObject, kind: str, cents: int, fail: bool) -> None:
        number = data.draw(st.sampled_from(sorted(self.owner)), label="order")
        answer: AccrualAnswer = {
            "processed": AccrualReply(AccrualVerdict.PROCESSED, Points(cents)),
            "invalid": AccrualReply(AccrualVerdict.INVALID),
            "registered": AccrualReply(AccrualVerdict.REGISTERED),
            "processing": AccrualReply(AccrualVerdict.PROCESSING),
            "unknown": AccrualReply(AccrualVerdict.UNKNOWN),
            "down": Unavailable("HTTP 500"),
            "429": RateLimited(retry_after=3, per_minute=600),
        }[kind]
        self.accrual.script.clear()  # every other order answers 204 this round
        self.accrual.calls.clear()
        self.accrual.will_answer(number, answer)
        self.clock.advance(3600)  # every non-final order is due again
        due = {n for n, s in self.status.items() if s not in FINAL}

        if fail:
            before = self.snapshot()
            self.store.fail_next_commit = True
            with pytest.raises(ConnectionError):
                self.run(self.sync.run_once())
            assert self.accrual.calls == []
            assert self.snapshot() == before
            return

        assert self.run(self.sync.run_once()) == len(due)
        assert sorted(self.accrual.calls) == sorted(due)  # final orders are never polled
        if number not in due:
            return
        if kind == "processed":
            self.status[number] = OrderStatus.PROCESSED
            if cents > 0:
                self.credits[number] = (self.owner[number], cents)
        elif kind == "invalid":
            self.status[number] = OrderStatus.INVALID
        elif kind in ("registered", "processing"):
            self.status[number] = OrderStatus.PROCESSING
        # unknown / down / 429: nothing changes (204 never moves PROCESSING back either)

    # -- withdrawals

    def _expect_withdraw(self, user: UserId, number: str, cents: int) -> None:
        before = self.snapshot()
        previous = self.debits.get(number)
        if cents == 0:
            with pytest.raises(InvalidAmount):
                self.run(self.withdraw(user, number, Points(cents)))
        elif previous is not None:
            if previous == (user, cents):
                assert self.run(self.withdraw(user, number, Points(cents))) is False
            else:
                with pytest.raises(WithdrawalConflict):
                    self.run(self.withdraw(user, number, Points(cents)))
        elif cents > self.balance(user):
            with pytest.raises(InsufficientPoints):
                self.run(self.withdraw(user, number, Points(cents)))
        else:
            assert self.run(self.withdraw(user, number, Points(cents))) is True
            self.debits[number] = (user, cents)
            return
        assert self.snapshot() == before

    @rule(user=users, number=st.sampled_from(WITHDRAW_POOL), cents=amounts)
    def withdraw_some(self, user: UserId, number: str, cents: int) -> None:
        self._expect_withdraw(user, number, cents)

    @rule(user=users, number=st.sampled_from(WITHDRAW_POOL))
    def withdraw_everything(self, user: UserId, number: str) -> None:
        self._expect_withdraw(user, number, self.balance(user))

    @precondition(lambda self: bool(self.debits))
    @rule(data=st.data())
    def replay_withdrawal(self, data: st.DataObject) -> None:
        number = data.draw(st.sampled_from(sorted(self.debits)), label="replayed")
        user, cents = self.debits[number]
        before = self.snapshot()
        assert self.run(self.withdraw(user, number, Points(cents))) is False
        assert self.snapshot() == before

    @precondition(lambda self: bool(self.debits))
    @rule(data=st.data(), user=users, delta=st.integers(-50, 50))
    def reuse_number_differently(self, data: st.DataObject, user: UserId, delta: int) -> None:
        number = data.draw(st.sampled_from(sorted(self.debits)), label="reused")
        first_user, first_cents = self.debits[number]
        cents = max(1, first_cents + delta)
        if (user, cents) == (first_user, first_cents):
            cents += 1
        before = self.snapshot()
        with pytest.raises(WithdrawalConflict):
            self.run(self.withdraw(user, number, Points(cents)))
        assert self.snapshot() == before

    @rule(user=users, number=st.sampled_from(WITHDRAW_POOL), data=st.data())
    def withdraw_fails_at_commit(self, user: UserId, number: str, data: st.DataObject) -> None:
        if number in self.debits or self.balance(user) == 0:
            return  # only a withdrawal that would commit can fail at commit
        cents = data.draw(st.integers(1, self.balance(user)), label="cents")
        before = self.snapshot()
        self.store.fail_next_commit = True
        with pytest.raises(ConnectionError):
            self.run(self.withdraw(user, number, Points(cents)))
        assert self.snapshot() == before

    # -- invariants, checked after every step

    @invariant()
    def no_failure_left_armed(self) -> None:
        assert self.store.fail_next_commit is False

    @invariant()
    def balances_match_the_model(self) -> None:
        state = self.store.state
        assert set(state.balances) == set(self.logins.values())
        for user in self.logins.values():
            balance, withdrawn = state.balances[user]
            assert balance == self.balance(user) >= 0
            assert withdrawn == self.withdrawn(user)
            view = self.run(self.read.balance(user))
            assert view is not None
            assert (view.current.cents, view.withdrawn.cents) == (balance, withdrawn)

    @invariant()
    def balances_match_the_ledger(self) -> None:
        state = self.store.state
        for user, (balance, withdrawn) in state.balances.items():
            entries = [e for e in state.ledger.values() if e.user_id == user]
            debits = sum(e.amount.cents for e in entries if e.is_debit)
            credits = sum(e.amount.cents for e in entries if not e.is_debit)
            assert (balance, withdrawn) == (credits - debits, debits)

    @invariant()
    def ledger_matches_the_model(self) -> None:
        ledger = self.store.state.ledger.values()
        credit_entries = [e for e in ledger if e.kind is EntryKind.ACCRUAL]
        debit_entries = [e for e in ledger if e.kind is EntryKind.WITHDRAWAL]
        # each order credited at most once, each withdrawal number used once
        assert max(Counter(e.order_number.value for e in credit_entries).values(), default=0) <= 1
        assert max(Counter(e.order_number.value for e in debit_entries).values(), default=0) <= 1
        assert {e.order_number.value: (e.user_id, e.amount.cents) for e in credit_entries} == (
            self.credits
        )
        assert {e.order_number.value: (e.user_id, e.amount.cents) for e in debit_entries} == (
            self.debits
        )

    @invariant()
    def orders_match_the_model(self) -> None:
        orders = self.store.state.orders
        assert {n: q.order.owner for n, q in orders.items()} == self.owner
        assert {n: q.order.status for n, q in orders.items()} == self.status
        for number, queued in orders.items():
            order = queued.order
            credit = self.credits.get(number)
            if order.status is OrderStatus.PROCESSED and order.accrual is not None:
                assert credit == (order.owner, order.accrual.cents)
            else:
                assert credit is None
            assert (queued.next_attempt_at is None) == order.status.is_final
        assert self.events.count == self.accepted_uploads


LedgerMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLedgerMachine = LedgerMachine.TestCase
