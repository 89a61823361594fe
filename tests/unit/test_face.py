"""The library's two faces: every verb declared once (facade.Face), the same on
Gophermart (awaited) and BlockingGophermart (called), and typed refusals on an
instance that is not open."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest

from gophermart import (
    BlockingGophermart,
    Gophermart,
    InsufficientPoints,
    InvalidInput,
    InvalidOrderNumber,
    LoginTaken,
    NotOpen,
    OrderOwnedByAnotherUser,
    Points,
    StoreUnavailable,
    UnknownOrder,
    UnknownUser,
)
from gophermart.facade import Call, Delegate, Face
from gophermart.testing import loyalty_for_tests

VERBS = {name: verb for name, verb in vars(Face).items() if isinstance(verb, Delegate)}
CONSTRUCTORS = ("open", "in_memory", "on_engine", "on_asyncpg_pool", "from_settings")


def test_both_faces_have_every_verb_and_constructor_with_the_same_signature() -> None:
    assert {"register", "balance", "withdraw", "orders", "reconcile"} <= VERBS.keys()
    for face in (Gophermart, BlockingGophermart):
        for name, verb in VERBS.items():
            assert getattr(face, name) is verb  # the very declaration, not a copy
        for name in CONSTRUCTORS:
            assert inspect.signature(getattr(face, name)) == inspect.signature(
                getattr(Gophermart, name)
            )


def test_a_verb_is_its_use_case_method() -> None:
    """Its documentation is the use case's; the blocking call is documented alike."""
    for verb in VERBS.values():
        assert verb.__doc__ == verb.method.__doc__
        assert verb.capability.__name__ in verb.method.__qualname__


def test_no_verb_is_defined_outside_the_face() -> None:
    """A coroutine method added to Gophermart alone would be missing on the twin."""
    lifecycle = {"start", "aclose", "start_worker", "stop_worker", "running_worker"}
    extra = {
        name
        for name, member in vars(Gophermart).items()
        if inspect.iscoroutinefunction(member) and not name.startswith("_")
    }
    assert extra <= lifecycle, extra - lifecycle
    for name in lifecycle - {"aclose", "running_worker"}:
        assert callable(getattr(BlockingGophermart, name)), name


async def test_verbs_of_an_instance_that_is_not_open_raise_not_open() -> None:
    loyalty = loyalty_for_tests()
    with pytest.raises(NotOpen, match="start"):
        await loyalty.balance(1)  # type: ignore[arg-type]
    with pytest.raises(NotOpen):
        loyalty.authenticate("t1")
    async with loyalty:
        alice = await loyalty.register("alice", "pw")
        assert (await loyalty.balance(alice.user_id)).current.cents == 0
    with pytest.raises(NotOpen, match="closed"):
        await loyalty.balance(alice.user_id)
    with pytest.raises(NotOpen, match="closed"):
        await loyalty.register("bob", "pw")
    with pytest.raises(NotOpen, match="closed"):
        await loyalty.start()


def test_the_blocking_twin_refuses_before_start_and_after_close() -> None:
    twin = BlockingGophermart(loyalty_for_tests())
    with pytest.raises(NotOpen):
        twin.balance(1)  # type: ignore[arg-type]
    with twin:
        bob = twin.register("bob", "pw")
        assert twin.authenticate(bob.token) == bob.user_id
        assert twin.withdrawals(bob.user_id) == []
    with pytest.raises(NotOpen):
        twin.withdrawals(bob.user_id)


def test_sync_verbs_are_calls_on_both_faces() -> None:
    calls = {name for name, verb in VERBS.items() if isinstance(verb, Call)}
    assert calls == {"authenticate", "issue_token"}


def test_the_blocking_twin_refuses_in_a_forked_child_at_once() -> None:
    """gunicorn --preload: the parent started it, the child inherits no loop thread."""
    import os

    with BlockingGophermart(loyalty_for_tests()) as twin:
        carol = twin.register("carol", "pw")
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: a typed refusal, not a hang
            try:
                twin.balance(carol.user_id)
                os.write(write, b"served")
            except NotOpen as exc:
                os.write(write, b"refused: " + str(exc).encode())
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        said = os.read(read, 1000).decode()
        assert said.startswith("refused: ") and "another process" in said, said
        assert twin.balance(carol.user_id).current.cents == 0  # the parent's still works


def test_a_blocking_call_is_bounded_by_its_timeout() -> None:
    with BlockingGophermart(loyalty_for_tests()) as twin:
        twin.timeout = 0.2
        with pytest.raises(StoreUnavailable, match=r"no answer within 0\.2s"):
            twin._run(asyncio.sleep(5))
        dave = twin.register("dave", "pw")  # the loop is free again
        assert dave.user_id


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda g: g.upload_order(1, 12345678903), InvalidOrderNumber),
        (lambda g: g.upload_order(1, None), InvalidOrderNumber),
        (lambda g: g.balance(2**70), UnknownUser),
        (lambda g: g.balance("1"), InvalidInput),
        (lambda g: g.withdraw("1", "2377225624", 1), InvalidInput),
        (lambda g: g.orders(1, True), InvalidInput),
        (lambda g: g.orders(1, 1.0), InvalidInput),
        (lambda g: g.orders(1, None, 123), InvalidInput),
        (lambda g: g.issue_token(-5), UnknownUser),
        (lambda g: g.issue_token(True), InvalidInput),
    ],
)
def test_odd_arguments_are_typed_errors(call: Any, error: type[Exception]) -> None:
    with BlockingGophermart(loyalty_for_tests()) as twin:
        twin.register("erin", "pw")
        with pytest.raises(error):
            call(twin)


async def test_errors_carry_what_a_host_acts_on() -> None:
    async with loyalty_for_tests() as loyalty:
        frank = await loyalty.register("frank", "pw")
        with pytest.raises(InsufficientPoints) as short:
            await loyalty.withdraw(frank.user_id, "2377225624", "12.5")
        assert (short.value.requested, short.value.available) == (Points(1250), Points(0))
        with pytest.raises(LoginTaken) as taken:
            await loyalty.register("frank", "pw")
        assert taken.value.login == "frank"
        with pytest.raises(UnknownOrder) as unknown:
            await loyalty.record_accrual("79927398713", 1)
        assert unknown.value.order == "79927398713"
        grace = await loyalty.register("grace", "pw")
        await loyalty.upload_order(frank.user_id, "12345678903")
        with pytest.raises(OrderOwnedByAnotherUser) as owned:
            await loyalty.upload_order(grace.user_id, "12345678903")
        assert owned.value.order == "12345678903"
        with pytest.raises(UnknownUser) as nobody:
            await loyalty.balance(999)  # type: ignore[arg-type]
        assert nobody.value.user_id == 999


async def test_a_mounted_router_whose_instance_is_not_started_answers_503() -> None:
    from litestar import Litestar
    from litestar.testing import AsyncTestClient

    from gophermart import http_router

    app = Litestar(route_handlers=[http_router(loyalty_for_tests(), path="/loyalty")])
    async with AsyncTestClient(app=app) as client:  # the host forgot loyalty_lifespan
        answer = await client.post(
            "/loyalty/api/user/register", json={"login": "h", "password": "pw"}
        )
    assert answer.status_code == 503
    assert "start" in answer.json()["error"]
