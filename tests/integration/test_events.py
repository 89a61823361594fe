"""The feed of events (SPEC "Events", issue 18) on memory, SQLite and PostgreSQL: every
ledger entry and order status change is an event written in the same transaction,
ids increase in commit order, ``loyalty.events(after=...)`` yields them and waits for
new ones, resumes from a cursor after a restart, and retention prunes a prefix that a
stale cursor is told about."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import text

from gophermart import (
    AccrualReply,
    AccrualVerdict,
    BlockingGophermart,
    Event,
    EventsPruned,
    Gophermart,
    HistoryView,
    InsufficientPoints,
    event_from_json,
    event_json,
)
from gophermart.adapters.clock import SystemClock
from gophermart.application.events import Events
from gophermart.application.ports import NoEventMetrics
from gophermart.domain.events import points_text
from gophermart.testing import ScriptedAccrual, loyalty_for_tests
from tests.integration.test_host_transaction import _host_engine

ACCRUED, SPENT, OTHER, LATER = "9278923470", "2377225624", "79927398713", "12345678903"


async def all_events(loyalty: Gophermart, after: int = 0) -> list[Event]:
    """Every event after ``after``, once what was committed is readable (PostgreSQL:
    the sequencer's runs, which the worker would make, made here until none moves)."""
    events: Events = loyalty.container.events()
    while await events.sequence():
        pass
    found: list[Event] = []
    while page := await loyalty.event_page(after):
        found.extend(page)
        after = page[-1].id
    return found


def ledger_events_of(events: list[Event], user: int) -> list[Event]:
    return [e for e in events if e.user_id == user and e.type.startswith("ledger.")]


def assert_told_as_written(told: list[Event], history: list[HistoryView]) -> None:
    """A user's ledger events (``told``) are its entries (``history``, newest first)
    one to one, in ``balance_after`` order, each with its entry's kind and change."""
    oldest_first = list(reversed(history))
    assert [(e.data["kind"], e.data["order"], e.data["amount"]) for e in told] == [
        (h.kind.value, h.order, points_text(h.change)) for h in oldest_first
    ]
    entry_ids = [int(str(e.data["entry_id"])) for e in told]
    assert entry_ids == sorted(set(entry_ids))


async def assert_the_feed_tells_the_history(loyalty: Gophermart, user: int) -> None:
    history = list(await loyalty.history(user, 10_000))
    assert_told_as_written(ledger_events_of(await all_events(loyalty), user), history)


async def _member(loyalty: Gophermart, login: str, number: str, points: int) -> int:
    user = await loyalty.register(login, "pw")
    await loyalty.upload_order(user.user_id, number)
    await loyalty.record_accrual(number, points)
    return int(user.user_id)


async def test_every_entry_and_status_change_is_one_event_in_order(loyalty: Gophermart) -> None:
    erin = await _member(loyalty, "erin", ACCRUED, 100)
    await loyalty.withdraw(erin, SPENT, "12.5")
    made = await loyalty.hold(erin, OTHER, "10")
    await loyalty.capture(erin, made.hold.id)
    await loyalty.reverse(ACCRUED, 90, "returned")  # 77.5 from the balance, 12.5 owed
    await loyalty.refund(SPENT, 5)  # pays 5 of the owed
    await loyalty.adjust(erin, "3", "goodwill")
    with pytest.raises(InsufficientPoints):
        await loyalty.withdraw(erin, LATER, 1000)  # refused: no event
    events = await all_events(loyalty)
    assert [e.type for e in events] == [
        "order.processed",
        "ledger.accrual",
        "ledger.withdrawal",
        "ledger.hold",
        "ledger.hold_release",
        "ledger.withdrawal",
        "ledger.accrual_reversal",
        "ledger.withdrawal_refund",
        "ledger.accrual_reversal",  # the owed points the refund paid off
        "ledger.adjustment",
        "ledger.accrual_reversal",  # and the owed points the adjustment paid off
    ]
    assert [e.id for e in events] == sorted({e.id for e in events})
    assert events[0].data == {"order": ACCRUED, "status": "PROCESSED", "accrual": "100"}
    assert events[2].data["amount"] == "-12.5" and events[2].data["order"] == SPENT
    assert events[6].data["owed_change"] == "12.5"
    assert all(e.user_id == erin for e in events)
    await assert_the_feed_tells_the_history(loyalty, erin)
    for event in events:  # the one wire form, back and forth
        assert event_from_json(event_json(event)) == event


async def test_order_statuses_are_announced_but_new(loyalty: Gophermart) -> None:
    user = await loyalty.register("finn", "pw")
    await loyalty.upload_order(user.user_id, ACCRUED)
    assert await all_events(loyalty) == []  # NEW: where every order starts
    await loyalty.record_accrual(ACCRUED, verdict=AccrualVerdict.PROCESSING)
    await loyalty.record_accrual(ACCRUED, verdict=AccrualVerdict.PROCESSING)  # no change
    await loyalty.upload_order(user.user_id, SPENT)
    await loyalty.record_accrual(SPENT, verdict=AccrualVerdict.INVALID)
    events = await all_events(loyalty)
    assert [(e.type, e.data["order"]) for e in events] == [
        ("order.processing", ACCRUED),
        ("order.invalid", SPENT),
    ]
    assert events[1].data == {"order": SPENT, "status": "INVALID", "accrual": None}


async def test_the_stream_yields_from_a_cursor_then_waits_for_new_ones(
    loyalty: Gophermart,
) -> None:
    erin = await _member(loyalty, "erin", ACCRUED, 100)
    first = await all_events(loyalty)
    seen: list[Event] = []

    async def follow() -> None:
        async for event in loyalty.events(after=first[0].id):
            seen.append(event)
            if event.type == "ledger.withdrawal":
                return

    follower = asyncio.create_task(follow())
    await asyncio.sleep(0.1)  # waiting by now
    await loyalty.withdraw(erin, SPENT, 1)
    await asyncio.wait_for(follower, 10)
    assert [e.type for e in seen] == ["ledger.accrual", "ledger.withdrawal"]
    # From now on: nothing already written; ``idle`` ends a quiet iteration.
    assert [e async for e in loyalty.events(idle=0.2)] == []
    with pytest.raises(Exception, match="after is an event id"):
        await anext(loyalty.events(after="1"))  # type: ignore[arg-type]


async def test_a_host_transaction_rolled_back_leaves_no_event(database_uri: str) -> None:
    async with loyalty_for_tests(database_uri=database_uri) as loyalty:
        erin = await _member(loyalty, "erin", ACCRUED, 100)
        engine = _host_engine(database_uri)
        try:
            with pytest.raises(ZeroDivisionError):
                async with engine.begin() as conn:
                    await loyalty.withdraw(erin, SPENT, 20, connection=conn)
                    await loyalty.adjust(erin, "1", connection=conn)
                    raise ZeroDivisionError  # the host's payment failed
            async with engine.begin() as conn:
                await loyalty.withdraw(erin, OTHER, 30, connection=conn)
        finally:
            await engine.dispose()
        types = [(e.type, e.data["order"]) for e in await all_events(loyalty)]
        assert types == [
            ("order.processed", ACCRUED),
            ("ledger.accrual", ACCRUED),
            ("ledger.withdrawal", OTHER),
        ]


async def test_ids_follow_commit_order_and_no_gap_is_filled_later(postgres_uri: str) -> None:
    """PostgreSQL: an entry written first but committed last gets the later id, so a
    reader that passed the other one's id still finds it after its cursor."""
    async with loyalty_for_tests(database_uri=postgres_uri) as loyalty:
        erin = await _member(loyalty, "erin", ACCRUED, 100)
        finn = await _member(loyalty, "finn", LATER, 100)
        engine = _host_engine(postgres_uri)
        try:
            async with engine.begin() as conn:
                await loyalty.withdraw(erin, SPENT, 20, connection=conn)  # written first
                await loyalty.adjust(finn, "5")  # written second, committed first
                before = await all_events(loyalty)
                assert before[-1].type == "ledger.adjustment"
                assert all(e.data["order"] != SPENT for e in before)
            after = await all_events(loyalty, before[-1].id)  # resumed from the cursor
        finally:
            await engine.dispose()
        assert [(e.type, e.data["order"]) for e in after] == [("ledger.withdrawal", SPENT)]
        async with engine.connect() as conn:  # both outbox rows were moved, none is left
            assert await conn.scalar(text("SELECT count(*) FROM gophermart_event_outbox")) == 0


async def test_a_restarted_host_resumes_from_its_cursor_without_gaps(sqlite_uri: str) -> None:
    """What a host does: store the cursor with its own work; after a restart, ask for
    what comes after it (SQLite and PostgreSQL keep the feed; memory does not)."""
    async with loyalty_for_tests(database_uri=sqlite_uri) as loyalty:
        erin = await _member(loyalty, "erin", ACCRUED, 100)
        handled = await all_events(loyalty)
        cursor = handled[-1].id
        await loyalty.withdraw(erin, SPENT, 1)  # committed while the host is down...
    async with loyalty_for_tests(database_uri=sqlite_uri) as loyalty:
        await loyalty.withdraw(erin, OTHER, 2)  # ... and after it is back
        resumed = [e async for e in loyalty.events(after=cursor, idle=0.2)]
    assert [e.data["order"] for e in resumed] == [SPENT, OTHER]
    assert resumed[0].id > cursor and resumed[1].id > resumed[0].id


async def test_resuming_on_postgres_after_a_restart(postgres_uri: str) -> None:
    async with loyalty_for_tests(database_uri=postgres_uri) as loyalty:
        erin = await _member(loyalty, "erin", ACCRUED, 100)
        cursor = (await all_events(loyalty))[-1].id
        await loyalty.withdraw(erin, SPENT, 1)  # not sequenced before the restart
    async with loyalty_for_tests(database_uri=postgres_uri) as loyalty:
        resumed = [e async for e in loyalty.events(after=cursor, idle=0.3)]
    assert [e.data["order"] for e in resumed] == [SPENT]


async def test_retention_prunes_a_prefix_and_a_stale_cursor_is_told(
    loyalty: Gophermart,
) -> None:
    """Retention on the real clock (an order's event has the store's time): a floor
    keeps what a consumer still needs; a cursor before the pruned prefix is told where
    to resume; ids are never given again after everything was pruned."""
    erin = await _member(loyalty, "erin", ACCRUED, 100)
    kept = await all_events(loyalty)
    feed = loyalty.container.store.events()

    def pruning(keep_from: int | None, retention: timedelta = timedelta(0)) -> Events:
        return Events(feed, feed, SystemClock(), retention, floor=_Floor(keep_from))

    assert await pruning(None, timedelta(hours=1)).prune() == 0  # young: kept
    assert await pruning(kept[1].id).prune() == 1  # the floor keeps the second
    with pytest.raises(EventsPruned) as pruned:
        await loyalty.event_page(0)
    assert pruned.value.oldest == kept[0].id
    assert await loyalty.event_page(pruned.value.oldest) == kept[1:]
    assert await pruning(None).prune() == 1
    assert await loyalty.event_page(kept[1].id) == []
    assert await loyalty.last_event_id() == kept[1].id  # "from now on" survives it
    await loyalty.withdraw(erin, SPENT, 1)
    (newer,) = await all_events(loyalty, kept[1].id)
    assert newer.id > kept[1].id and newer.data["order"] == SPENT


class _Floor:
    def __init__(self, keep_from: int | None) -> None:
        self.value = keep_from

    async def keep_from(self) -> int | None:
        return self.value


async def test_events_written_are_counted(loyalty: Gophermart) -> None:
    counted: list[int] = []

    class Counted(NoEventMetrics):
        def events_written(self, count: int) -> None:
            counted.append(count)

    feed = loyalty.container.store.events()
    events = Events(feed, feed, SystemClock(), metrics=Counted())
    await events.sequence()  # a baseline (SQLite and memory count the feed's growth)
    await _member(loyalty, "erin", ACCRUED, 100)
    while await events.sequence():
        pass
    assert sum(counted) == 2


def test_the_blocking_twin_iterates_with_an_idle_bound(sqlite_uri: str) -> None:
    with BlockingGophermart.open(sqlite_uri) as loyalty:
        user = loyalty.register("erin", "pw")
        loyalty.upload_order(user.user_id, ACCRUED)
        loyalty.record_accrual(ACCRUED, 5)
        with loyalty.events(after=0, idle=0.2) as stream:
            types = [event.type for event in stream]
        assert types == ["order.processed", "ledger.accrual"]
        with loyalty.events(after=1, idle=0.1) as resumed:  # closed before it ends
            assert next(resumed).id == 2


async def test_the_worker_makes_events_readable_without_a_reader(postgres_uri: str) -> None:
    """PostgreSQL: the worker's sequencer numbers committed events on its own cadence,
    so a reader that only pages (a webhook deliverer, an HTTP listing) sees them."""
    async with loyalty_for_tests(database_uri=postgres_uri) as loyalty, loyalty.running_worker():
        await _member(loyalty, "erin", ACCRUED, 100)
        deadline = asyncio.get_running_loop().time() + 5
        while len(await loyalty.event_page(0)) < 2:
            assert asyncio.get_running_loop().time() < deadline, "never sequenced"
            await asyncio.sleep(0.01)


async def test_sequencers_racing_readers_never_fill_a_gap_behind_them(postgres_uri: str) -> None:
    """PostgreSQL: writers on many accounts, two instances' sequencers (two sessions:
    the advisory lock, not the process, keeps them one at a time) and a reader paging
    all along. The reader never finds an id below one it already passed, each entry is
    numbered exactly once, and each user's events follow their history."""
    async with (
        loyalty_for_tests(database_uri=postgres_uri) as loyalty,
        loyalty_for_tests(database_uri=postgres_uri) as other,
    ):
        users = [await _member(loyalty, f"u{i}", n, 1000) for i, n in enumerate(_NUMBERS)]
        writing = True

        async def write(user: int, k: int) -> None:
            for j in range(15):
                number = _luhn(f"5{k}{j:04d}")
                if j % 3 == 2:
                    made = await loyalty.hold(user, number, "1")
                    await loyalty.capture(user, made.hold.id)
                else:
                    await loyalty.withdraw(user, number, "1")

        async def sequence(instance: Gophermart) -> None:
            events: Events = instance.container.events()
            while writing:
                await events.sequence()
                await asyncio.sleep(0)

        read: list[Event] = []

        async def follow() -> None:
            while writing or len(read) < expected:
                after = read[-1].id if read else 0
                read.extend(await other.event_page(after))
                await asyncio.sleep(0.001)

        expected = 10**9
        sequencers = [asyncio.create_task(sequence(i)) for i in (loyalty, other)]
        reader = asyncio.create_task(follow())
        await asyncio.gather(*(write(user, k) for k, user in enumerate(users)))
        writing = False
        await asyncio.gather(*sequencers)
        everything = await all_events(loyalty)
        expected = len(everything)
        await asyncio.wait_for(reader, 10)
        assert read == everything  # nothing appeared behind the reader's cursor
        for user in users:
            await assert_the_feed_tells_the_history(loyalty, user)


def _luhn(digits: str) -> str:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 == 0 else 1)
        total += n - 9 if n > 9 else n
    return digits + str((10 - total % 10) % 10)


_NUMBERS = [_luhn(f"8{i:05d}") for i in range(6)]


async def test_the_accrual_workers_status_changes_and_credit_are_events(backend_uri: str) -> None:
    """The worker's path (claim, poll, apply): PROCESSING then PROCESSED and its credit,
    each an event, in that order (a claim changes no status: no event)."""
    accrual = ScriptedAccrual()
    accrual.will_answer(ACCRUED, AccrualReply(AccrualVerdict.PROCESSING))
    accrual.will_credit(ACCRUED, "42.5")
    async with loyalty_for_tests(accrual=accrual, database_uri=backend_uri) as loyalty:
        erin = await loyalty.register("erin", "pw")
        await loyalty.upload_order(erin.user_id, ACCRUED)
        async with loyalty.running_worker():
            found: list[Event] = []
            async for event in loyalty.events(after=0, idle=5):
                found.append(event)
                if event.type == "ledger.accrual":
                    break
    assert [(e.type, e.data["order"]) for e in found] == [
        ("order.processing", ACCRUED),
        ("order.processed", ACCRUED),
        ("ledger.accrual", ACCRUED),
    ]
    assert found[1].data["accrual"] == found[2].data["amount"] == "42.5"
