"""For a host's tests (and ours): fast doubles and the in-memory wiring.

Nothing in production imports this module (an import-linter contract says so). The
doubles bend rules on purpose, for speed and legibility: a password "hash" that is the
password, tokens that read ``t<user id>``, a throttle that never refuses, an accrual
system answering from a script, a clock moved by hand.

A host's test::

    from gophermart.testing import loyalty_for_tests

    async def test_checkout_spends_points() -> None:
        async with loyalty_for_tests() as loyalty:
            alice = await loyalty.register("alice", "pw")
            ...

:func:`use_test_doubles` is the one override set; it applies to any
:class:`~gophermart.bootstrap.Container` (memory, SQLite or PostgreSQL), as
:func:`gophermart.bootstrap.build` makes them.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from dependency_injector import providers

from gophermart.application.errors import Unauthenticated
from gophermart.application.ports import AccrualAnswer, AccrualReply, Admitted
from gophermart.bootstrap import Container, build
from gophermart.domain.orders import AccrualVerdict, OrderNumber
from gophermart.domain.points import Points
from gophermart.domain.users import Password, UserId
from gophermart.facade import Gophermart
from gophermart.settings import MEMORY_URI, Settings

#: A token key for tests (long enough for HS256's rule of 32 characters).
TEST_SECRET = "gophermart-test-secret-" + "x" * 32


class FrozenClock:
    """A clock tests move by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)


class PlainPasswordHasher:
    """A transparent 'hash' for unit tests, where argon2's cost would only slow them."""

    async def hash(self, password: Password) -> str:
        return "plain$" + password.value

    async def verify(
        self, password_hash: str | None, password: Password, admitted: Admitted = None
    ) -> bool:
        if admitted is not None:
            await admitted()
        return password_hash == "plain$" + password.value


class CountingTokens:
    """Opaque tokens ``t<user_id>`` for unit tests."""

    def issue(self, user_id: UserId) -> str:
        return f"t{user_id}"

    def verify(self, token: str) -> UserId:
        if not token.startswith("t") or not token[1:].isdigit():
            raise Unauthenticated("bad token")
        return UserId(int(token[1:]))


class NoThrottle:
    async def check(self, login: str, client: str, device: str | None = None) -> None:
        return None

    async def attempt(self, login: str, client: str, device: str | None = None) -> None:
        return None

    async def succeeded(self, login: str, client: str, device: str | None = None) -> None:
        return None

    async def remember(self, login: str, client: str, device: str | None = None) -> None:
        return None


class ScriptedAccrual:
    """A fake accrual client: answers from a script per order, defaulting to 204."""

    def __init__(self) -> None:
        self.script: dict[str, list[AccrualAnswer]] = {}
        self.calls: list[str] = []

    def will_answer(self, number: str, *answers: AccrualAnswer) -> None:
        """Answer ``number``'s polls with ``answers`` in turn, the last one for ever."""
        self.script.setdefault(number, []).extend(answers)

    def will_credit(self, number: str, accrual: Points | Decimal | int | str) -> None:
        """PROCESSED with ``accrual`` points (rounded half up to hundredths)."""
        points = accrual if isinstance(accrual, Points) else Points.rounded(accrual)
        self.will_answer(number, AccrualReply(AccrualVerdict.PROCESSED, points))

    def will_reject(self, number: str) -> None:
        """INVALID: the order earns nothing, for good."""
        self.will_answer(number, AccrualReply(AccrualVerdict.INVALID))

    async def fetch(self, number: OrderNumber) -> AccrualAnswer:
        self.calls.append(number.value)
        queue = self.script.get(number.value)
        if queue:
            return queue.pop(0) if len(queue) > 1 else queue[0]
        return AccrualReply(AccrualVerdict.UNKNOWN)


class EventCounter:
    def __init__(self) -> None:
        self.count = 0
        self.event = asyncio.Event()

    def order_uploaded(self) -> None:
        self.count += 1
        self.event.set()


def use_test_doubles(
    container: Container,
    *,
    clock: FrozenClock | None = None,
    accrual: ScriptedAccrual | None = None,
    events: EventCounter | None = None,
) -> Container:
    """Override ``container`` with the fast doubles: plain-text passwords, readable
    tokens, no login throttle, and optionally a hand-moved clock, a scripted accrual
    system and an upload-event counter. Returns the container."""
    container.hasher.override(providers.Object(PlainPasswordHasher()))
    container.tokens.override(providers.Object(CountingTokens()))
    container.throttle.override(providers.Object(NoThrottle()))
    if clock is not None:
        container.clock.override(providers.Object(clock))
    if accrual is not None:
        container.accrual_client.override(providers.Object(accrual))
    if events is not None:
        container.wakeup.override(providers.Object(events))
    return container


def loyalty_for_tests(
    *,
    clock: FrozenClock | None = None,
    accrual: ScriptedAccrual | None = None,
    events: EventCounter | None = None,
    database_uri: str = MEMORY_URI,
) -> Gophermart:
    """A :class:`Gophermart` in memory (or on ``database_uri``) with the fast doubles:
    ``async with loyalty_for_tests() as loyalty: ...``."""
    container = build(Settings.for_database(database_uri, secret=TEST_SECRET))
    use_test_doubles(container, clock=clock, accrual=accrual, events=events)
    return Gophermart(container)
