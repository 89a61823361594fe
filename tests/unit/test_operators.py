"""Operators (issue 17) through the use cases, on the memory store.

Keys: ``gmo_`` and 32 random bytes, shown once; only their SHA-256 is kept; a name holds
one key at a time (a second ``add`` is OperatorExists); a revoked key opens nothing and
its name may be given a new one; malformed, unknown and revoked keys are all
Unauthenticated, and the deciding comparison is constant-time. Names: 1 to 64 printable
characters. The operators' reads: a user by login (folded as log-in folds), an order's
state (attempts, next poll, why it is parked) with the ledger's placeholders at zero; and
an order's retry (due now, no longer parked; final is OrderIsFinal; a worker's order is
left to it).
"""

from __future__ import annotations

import hashlib
import hmac
import string
import unicodedata
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gophermart.adapters.stores.memory import MemoryDatabase
from gophermart.application import operators as operators_module
from gophermart.application.accrual_sync import AccrualSync, RetryPolicy
from gophermart.application.errors import Unauthenticated
from gophermart.application.operators import KEY_LENGTH, Operators, key_hash
from gophermart.application.ports import AccrualReply
from gophermart.bootstrap import Container, build
from gophermart.domain.errors import (
    InvalidInput,
    InvalidOrderNumber,
    OrderIsFinal,
    UnknownLogin,
    UnknownOrder,
)
from gophermart.domain.operators import OperatorExists, UnknownOperator
from gophermart.domain.orders import AccrualVerdict, OrderStatus
from gophermart.domain.points import Points
from gophermart.settings import MEMORY_URI, Settings
from gophermart.testing import TEST_SECRET, EventCounter, FrozenClock, ScriptedAccrual

ORDER = "12345678903"
BIGINT_MAX = 2**63 - 1


@pytest.fixture
def operators(container: Container) -> Operators:
    return container.operators()


# --- keys -----------------------------------------------------------------------------


async def test_a_key_is_shown_once_and_only_its_hash_is_kept(
    container: Container, operators: Operators
) -> None:
    key = await operators.add("support-1")
    assert key.startswith("gmo_") and len(key) == KEY_LENGTH == 47
    assert set(key[4:]) <= set(string.ascii_letters + string.digits + "-_")
    assert await operators.authenticate(key) == "support-1"
    (stored,) = container.store.cold.operators()._by_name.values()
    assert stored.key_hash == hashlib.sha256(key.encode()).hexdigest() == key_hash(key)
    assert key not in repr(stored)
    assert await operators.add("support-2") != key  # random, not derived from the name


async def test_a_name_holds_one_key_until_it_is_revoked(operators: Operators) -> None:
    first = await operators.add("ops")
    with pytest.raises(OperatorExists) as taken:
        await operators.add("ops")
    assert taken.value.name == "ops"
    assert await operators.authenticate(first) == "ops"  # the refused add changed nothing

    await operators.revoke("ops")
    with pytest.raises(Unauthenticated):
        await operators.authenticate(first)
    with pytest.raises(UnknownOperator) as gone:
        await operators.revoke("ops")  # revoked already
    assert gone.value.name == "ops"

    second = await operators.add("ops")  # re-keyed
    assert await operators.authenticate(second) == "ops"
    with pytest.raises(Unauthenticated):
        await operators.authenticate(first)  # the old key stays dead


async def test_revoking_an_unknown_name_is_typed(operators: Operators) -> None:
    with pytest.raises(UnknownOperator) as unknown:
        await operators.revoke("nobody")
    assert unknown.value.name == "nobody"


@pytest.mark.parametrize(
    "name",
    ["", "x" * 65, "a\x00b", "tab\there", "new\nline", " padded", "padded ", "\u200b", None, 7],
)
async def test_a_name_is_one_to_64_printable_characters(operators: Operators, name: object) -> None:
    with pytest.raises(InvalidInput):
        await operators.add(name)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        await operators.revoke(name)  # type: ignore[arg-type]


async def test_one_visible_name_is_one_name(operators: Operators) -> None:
    """NFC: a decomposed é is the composed one."""
    key = await operators.add("Ren\u0065\u0301e")
    assert await operators.authenticate(key) == "Ren\u00e9e"
    with pytest.raises(OperatorExists):
        await operators.add("Ren\u00e9e")
    assert await operators.add("x" * 64)  # the longest name


@settings(max_examples=40)
@given(
    name=st.text(
        alphabet=st.characters(codec="utf-8", categories=["L", "N", "P", "S", "Zs"]),
        min_size=1,
        max_size=64,
    ).filter(lambda n: n == n.strip() and n.isprintable())
)
async def test_any_valid_name_gets_a_key_that_names_it(name: str) -> None:
    operators = build(Settings.for_database(MEMORY_URI, secret=TEST_SECRET)).operators()
    key = await operators.add(name)
    assert await operators.authenticate(key) == unicodedata.normalize("NFC", name)


@pytest.mark.parametrize(
    "key",
    [
        "t1",  # a shopper's token (the unit tests' tokens)
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",  # a JWT's shape
        "gmo_",
        "gmo_" + "A" * 42,
        "gmo_" + "A" * 44,
        "GMO_" + "A" * 43,
        "gmx_" + "A" * 43,
        "gmo_" + "A" * 42 + "=",
        "gmo_" + "A" * 42 + "\u00e9",
        "",
        None,
        b"gmo_" + b"A" * 43,
    ],
)
async def test_a_malformed_key_is_refused_before_the_store_is_asked(
    container: Container, operators: Operators, key: object
) -> None:
    asked: list[str] = []
    keys = container.store.cold.operators()
    original = keys.by_hash

    async def spy(digest: str) -> object:
        asked.append(digest)
        return await original(digest)

    keys.by_hash = spy
    with pytest.raises(Unauthenticated):
        await operators.authenticate(key)  # type: ignore[arg-type]
    assert asked == []


async def test_an_unknown_key_is_refused(operators: Operators) -> None:
    await operators.add("ops")
    with pytest.raises(Unauthenticated):
        await operators.authenticate("gmo_" + "A" * 43)


async def test_the_deciding_comparison_is_constant_time(
    operators: Operators, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[str, str]] = []
    compare = hmac.compare_digest

    def recording(a: str, b: str) -> bool:
        compared.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(operators_module.hmac, "compare_digest", recording)
    key = await operators.add("ops")
    assert await operators.authenticate(key) == "ops"
    assert compared == [(key_hash(key), key_hash(key))]


# --- the operators' reads -----------------------------------------------------------


async def test_a_user_is_found_by_login_as_log_in_finds_it(container: Container) -> None:
    users, queries = container.users(), container.queries()
    bob = await users.register("bob", "pw")
    found = await queries.user_by_login("ｂｏｂ")  # fullwidth: log-in folds it to bob
    assert (found.id, found.login) == (bob.user_id, "bob")
    assert (found.current, found.withdrawn) == (Points(0), Points(0))
    assert (found.held, found.owed, tuple(found.holds)) == (Points(0), Points(0), ())
    with pytest.raises(UnknownLogin) as unknown:
        await queries.user_by_login("carol")
    assert unknown.value.login == "carol"
    with pytest.raises(InvalidInput):
        await queries.user_by_login("bad\x00login")


async def test_an_order_s_state_whoever_uploaded_it(container: Container) -> None:
    alice = await container.users().register("alice", "pw")
    await container.orders().upload(alice.user_id, ORDER)
    queries = container.queries()
    state = await queries.order_state(ORDER)
    assert (state.number, state.login, state.status) == (ORDER, "alice", OrderStatus.NEW)
    assert (state.accrual, state.attempts, state.parked) == (None, 0, None)
    assert state.next_attempt_at == container.clock().now()  # due at once
    assert state.reversed == Points(0)
    with pytest.raises(InvalidInput):
        await queries.order_state("12a")
    with pytest.raises(InvalidInput):
        await queries.order_state(" " + ORDER)
    with pytest.raises(InvalidOrderNumber):
        await queries.order_state("12345678902")
    with pytest.raises(UnknownOrder):
        await queries.order_state("9278923470")


# --- retrying an order --------------------------------------------------------------


class Parked:
    """An order whose credit cannot be applied, parked by the worker."""

    def __init__(self, container: Container) -> None:
        self.container = container
        self.clock: FrozenClock = container.clock()
        self.events: EventCounter = container.wakeup()
        self.store: MemoryDatabase = container.store.database()
        accrual: ScriptedAccrual = container.accrual_client()
        accrual.will_answer(ORDER, AccrualReply(AccrualVerdict.PROCESSED, Points(1_00)))
        self.sync = AccrualSync(
            container.store.uow, accrual, container.store.cold.gate(), self.clock
        )

    async def park(self) -> None:
        alice = await self.container.users().register("alice", "pw")
        await self.container.orders().upload(alice.user_id, ORDER)
        self.store.state.balances[alice.user_id] = (BIGINT_MAX, 0)
        assert await self.sync.run_once() == 1


async def test_a_parked_order_says_why_and_a_retry_makes_it_due_now(container: Container) -> None:
    parked = Parked(container)
    await parked.park()
    queries, orders = container.queries(), container.orders()
    state = await queries.order_state(ORDER)
    assert state.parked is not None and "cannot be credited" in state.parked
    assert state.parked.startswith("its accrual of 1 cannot be credited: ")
    assert state.next_attempt_at == parked.clock.now() + timedelta(seconds=RetryPolicy().park)
    assert await parked.sync.run_once() == 0  # not due for an hour

    woken = parked.events.count
    parked.clock.advance(5)
    await orders.retry(ORDER)
    state = await queries.order_state(ORDER)
    assert (state.parked, state.next_attempt_at) == (None, parked.clock.now())
    assert parked.events.count == woken + 1  # the worker is woken
    assert await parked.sync.run_once() == 1  # polled again at once...
    assert (await queries.order_state(ORDER)).parked is not None  # ...and parked again


async def test_a_final_order_is_not_retried(container: Container) -> None:
    alice = await container.users().register("alice", "pw")
    await container.orders().upload(alice.user_id, ORDER)
    await container.orders().record_accrual(ORDER, 10)
    before = await container.queries().order_state(ORDER)
    with pytest.raises(OrderIsFinal) as final:
        await container.orders().retry(ORDER)
    assert (final.value.order, final.value.status) == (ORDER, "PROCESSED")
    assert await container.queries().order_state(ORDER) == before


async def test_an_order_a_worker_holds_is_left_to_it(container: Container) -> None:
    alice = await container.users().register("alice", "pw")
    await container.orders().upload(alice.user_id, ORDER)
    clock: FrozenClock = container.clock()
    async with container.store.uow() as uow:  # a worker's claim, its poll in flight
        (_claimed,) = await uow.orders.claim_due(
            clock.now(), clock.now() + timedelta(seconds=10), 1
        )
        await uow.commit()
    leased = await container.queries().order_state(ORDER)
    await container.orders().retry(ORDER)
    assert await container.queries().order_state(ORDER) == leased


async def test_retrying_an_unknown_or_malformed_number_is_typed(container: Container) -> None:
    with pytest.raises(UnknownOrder):
        await container.orders().retry(ORDER)
    with pytest.raises(InvalidInput):
        await container.orders().retry("abc")
    with pytest.raises(InvalidOrderNumber):
        await container.orders().retry("12345678902")
