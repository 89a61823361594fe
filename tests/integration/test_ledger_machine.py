"""The ledger's movements driven at random against memory, SQLite and PostgreSQL
(issue 17's ledger machine): accruals, withdrawals, holds captured, released and
expired, reversals into owed points, refunds and adjustments, each against an
independent model of one member's figures. After every step:

* the member's ledger events (issue 18) are its entries one to one, in the history's
  order, none for a refused move;

* balance = the sum of the entries' changes, and each entry's ``balance_after`` is the
  previous one's plus its change (the newest one's is the balance);
* ``current >= 0``; held = the open holds; owed as the model says;
* reversals of an order never exceed its accrual, refunds never exceed the withdrawal;
* owed points are paid before any new credit reaches ``current``;
* a hold is captured or released exactly once (a second try changes nothing);

and ``reconcile`` finds nothing wrong at the end of every run.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from gophermart import (
    Event,
    GophermartError,
    InsufficientPoints,
    Points,
)
from gophermart.domain.errors import ExceedsOriginal, HoldConflict
from gophermart.testing import FrozenClock, loyalty_for_tests
from tests.integration.test_events import all_events, assert_told_as_written

T = TypeVar("T")
AMOUNTS = st.integers(min_value=1, max_value=6_000)  # hundredths


class World:
    """One store, one event loop and clock, shared by every run of the machine (each run
    is a new member: members never touch each other's figures)."""

    def __init__(self, database_uri: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.clock = FrozenClock()
        self.loyalty = loyalty_for_tests(clock=self.clock, database_uri=database_uri)
        self.run(self.loyalty.start())
        self.numbers = (_luhn(f"7{n:010d}") for n in itertools.count(1))
        self.events: list[Event] = []  # the feed, read on from the last one seen

    def feed(self) -> list[Event]:
        after = self.events[-1].id if self.events else 0
        self.events.extend(self.run(all_events(self.loyalty, after)))
        return self.events

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(work)

    def close(self) -> None:
        self.run(self.loyalty.aclose())
        self.loop.close()


def _luhn(digits: str) -> str:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 == 0 else 1)
        total += n - 9 if n > 9 else n
    return digits + str((10 - total % 10) % 10)


class LedgerMachine(RuleBasedStateMachine):
    world: World

    @initialize()
    def member(self) -> None:
        w = self.world
        self.user = int(w.run(w.loyalty.register(f"m{next(w.numbers)}", "pw")).user_id)
        self.balance = self.withdrawn = self.held = self.owed = 0
        self.accruals: dict[str, list[int]] = {}  # order -> [accrual, reversed]
        self.spent: dict[str, list[int]] = {}  # order -> [amount, refunded]
        self.holds: dict[int, tuple[str, int]] = {}  # open: id -> (order, amount)
        self.closed: dict[int, str] = {}  # id -> "captured" | "released" | "expired"

    def _do(self, work: Coroutine[Any, Any, T]) -> T:
        return self.world.run(work)

    def _credit(self, cents: int) -> None:
        """The model of a credit: owed first, the rest to the balance."""
        paid = min(self.owed, cents)
        self.owed -= paid
        self.balance += cents - paid

    @rule(cents=AMOUNTS)
    def accrue(self, cents: int) -> None:
        number = next(self.world.numbers)
        self._do(self.world.loyalty.upload_order(self.user, number))
        self._do(self.world.loyalty.record_accrual(number, Points(cents)))
        self.accruals[number] = [cents, 0]
        self._credit(cents)

    @rule(cents=AMOUNTS)
    def withdraw(self, cents: int) -> None:
        number = next(self.world.numbers)
        try:
            self._do(self.world.loyalty.withdraw(self.user, number, Points(cents)))
        except InsufficientPoints:
            assert cents > self.balance
            return
        assert cents <= self.balance
        self.balance -= cents
        self.withdrawn += cents
        self.spent[number] = [cents, 0]

    @rule(cents=AMOUNTS)
    def hold(self, cents: int) -> None:
        number = next(self.world.numbers)
        try:
            made = self._do(self.world.loyalty.hold(self.user, number, Points(cents), 60))
        except InsufficientPoints:
            assert cents > self.balance
            return
        assert made.created and cents <= self.balance
        self.balance -= cents
        self.held += cents
        self.holds[made.hold.id] = (number, cents)

    @precondition(lambda self: self.holds)
    @rule(data=st.data(), capture=st.booleans())
    def close_hold(self, data: st.DataObject, capture: bool) -> None:
        hold_id = data.draw(st.sampled_from(sorted(self.holds)))
        number, cents = self.holds.pop(hold_id)
        verb = self.world.loyalty.capture if capture else self.world.loyalty.release
        self._do(verb(self.user, hold_id))
        self.held -= cents
        if capture:
            self.withdrawn += cents
            self.spent[number] = [cents, 0]
            self.closed[hold_id] = "captured"
        else:
            self.balance += cents
            self.closed[hold_id] = "released"

    @precondition(lambda self: self.closed)
    @rule(data=st.data())
    def close_again(self, data: st.DataObject) -> None:
        """A hold is closed exactly once: the same close is a replay, the other a conflict."""
        hold_id = data.draw(st.sampled_from(sorted(self.closed)))
        state = self.closed[hold_id]
        loyalty = self.world.loyalty
        if state == "captured":
            assert self._do(loyalty.capture(self.user, hold_id)).state.value == "captured"
            with pytest.raises(HoldConflict):
                self._do(loyalty.release(self.user, hold_id))
        else:
            assert self._do(loyalty.release(self.user, hold_id)).state.value == state
            with pytest.raises(HoldConflict):
                self._do(loyalty.capture(self.user, hold_id))

    @precondition(lambda self: self.holds)
    @rule()
    def expire(self) -> None:
        self.world.clock.advance(61)
        self._do(self.world.loyalty.expire_holds(10_000))
        for hold_id, (_number, cents) in self.holds.items():
            self.balance += cents
            self.held -= cents
            self.closed[hold_id] = "expired"
        self.holds.clear()

    @precondition(lambda self: self.accruals)
    @rule(data=st.data(), cents=AMOUNTS)
    def reverse(self, data: st.DataObject, cents: int) -> None:
        number = data.draw(st.sampled_from(sorted(self.accruals)))
        accrual, reversed_ = self.accruals[number]
        try:
            self._do(self.world.loyalty.reverse(number, Points(cents), "returned"))
        except ExceedsOriginal:
            assert reversed_ + cents > accrual
            return
        assert reversed_ + cents <= accrual
        self.accruals[number][1] += cents
        taken = min(cents, self.balance)
        self.balance -= taken
        self.owed += cents - taken

    @precondition(lambda self: self.spent)
    @rule(data=st.data(), cents=AMOUNTS)
    def refund(self, data: st.DataObject, cents: int) -> None:
        number = data.draw(st.sampled_from(sorted(self.spent)))
        amount, refunded = self.spent[number]
        try:
            self._do(self.world.loyalty.refund(number, Points(cents)))
        except ExceedsOriginal:
            assert refunded + cents > amount
            return
        assert refunded + cents <= amount
        self.spent[number][1] += cents
        self.withdrawn -= cents
        self._credit(cents)

    @rule(cents=AMOUNTS, down=st.booleans())
    def adjust(self, cents: int, down: bool) -> None:
        amount = f"-{Points(cents)}" if down else str(Points(cents))
        try:
            self._do(self.world.loyalty.adjust(self.user, amount, "machine"))
        except InsufficientPoints:
            assert down and cents > self.balance
            return
        if down:
            assert cents <= self.balance
            self.balance -= cents
        else:
            self._credit(cents)

    @rule()
    def refused_moves_change_nothing(self) -> None:
        loyalty = self.world.loyalty
        for work in (
            loyalty.withdraw(self.user, next(self.world.numbers), Points(self.balance + 1)),
            loyalty.adjust(self.user, f"-{Points(self.balance + 1)}"),
        ):
            with pytest.raises(GophermartError):
                self._do(work)

    @invariant()
    def figures_are_the_models(self) -> None:
        if not hasattr(self, "user"):
            return
        seen = self._do(self.world.loyalty.balance(self.user))
        assert (seen.current.cents, seen.withdrawn.cents, seen.held.cents, seen.owed.cents) == (
            self.balance,
            self.withdrawn,
            self.held,
            self.owed,
        )

    @invariant()
    def the_history_is_a_chain(self) -> None:
        if not hasattr(self, "user"):
            return
        history = list(self._do(self.world.loyalty.history(self.user, 10_000)))
        if not history:
            return
        assert history[0].balance_after.cents == self.balance
        assert sum(h.change for h in history) == self.balance
        assert sum(h.owed_change for h in history) == self.owed
        for newer, older in itertools.pairwise(history):
            assert newer.balance_after.cents == older.balance_after.cents + newer.change

    @invariant()
    def the_feed_tells_the_history(self) -> None:
        """Every entry is one event, none for a refused move, in balance_after order;
        each accrual's order was announced PROCESSED (issue 18)."""
        if not hasattr(self, "user"):
            return
        mine = [e for e in self.world.feed() if e.user_id == self.user]
        history = list(self._do(self.world.loyalty.history(self.user, 10_000)))
        assert_told_as_written([e for e in mine if e.type.startswith("ledger.")], history)
        processed = [e.data["order"] for e in mine if e.type == "order.processed"]
        assert sorted(processed) == sorted(self.accruals)

    def teardown(self) -> None:
        if hasattr(self, "user"):
            report = self._do(self.world.loyalty.reconcile())
            assert report.ok, report.summary()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    if request.param == "memory":
        uri = "memory://"
    else:
        uri = str(
            request.getfixturevalue("sqlite_uri" if request.param == "sqlite" else "postgres_uri")
        )
    made = World(uri)
    try:
        yield made
    finally:
        made.close()


def test_the_ledger_machine(world: World) -> None:
    LedgerMachine.world = world
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=25 if world.loyalty.backend == "memory" else 12,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        ),
    )
