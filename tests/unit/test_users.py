"""Credential shapes and the register / log-in use cases.

Proves the ``Login`` and ``Password`` rules (empty, whitespace, control characters,
length bounds, NFC normalisation, a password never shown by ``repr``/``str``), and
that ``Register`` and ``LogIn`` behave per contract with the in-memory adapters:
register-then-login works, duplicates are ``LoginTaken``, a wrong password and an
unknown user are both ``InvalidCredentials``, a failed commit leaves no user, and the
throttle policy (``MemoryLoginThrottle``, driven by a fake clock): an (address, login)
pair, then a login from anywhere, is locked out with doubling ``retry_after`` until a
success clears it; a burst is counted as it arrives; an address that fails a lot is
slowed, never locked, so the crowd behind it still logs in.
"""

from __future__ import annotations

import asyncio
import unicodedata
from collections.abc import Awaitable, Callable

import pytest
from dependency_injector import providers
from hypothesis import given
from hypothesis import strategies as st

from gophermart.adapters.stores import memory
from gophermart.adapters.stores.memory import MemoryDatabase
from gophermart.adapters.stores.memory.throttle import MemoryThrottleCounters
from gophermart.application.throttling import LoginThrottle, ThrottlePolicy
from gophermart.application.users import Authenticated
from gophermart.bootstrap import Container
from gophermart.domain.errors import InvalidCredentials, InvalidInput, LoginTaken, TooManyAttempts
from gophermart.domain.users import MAX_LOGIN_LENGTH, MAX_PASSWORD_LENGTH, Login, Password
from gophermart.settings import MEMORY_URI, Settings
from gophermart.testing import TEST_SECRET, CountingTokens, PlainPasswordHasher, use_test_doubles

COMPOSED = "caf\u00e9"  # é as one code point
DECOMPOSED = "cafe\u0301"  # e + combining acute accent

# --- Login -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", ["alice", "Alice", "a", "user@example.com", "名前", "a b", "x" * 64]
)
def test_login_accepts(raw: str) -> None:
    assert Login.parse(raw).value == raw
    assert str(Login.parse(raw)) == raw


@pytest.mark.parametrize(
    "raw",
    [
        "",
        " ",
        "   ",
        "\t",
        "\n",
        " alice",
        "alice ",
        "alice\n",
        "\u00a0alice",  # no-break space is whitespace too
        "ali\x00ce",
        "ali\x07ce",
        "ali\nce",
        "ali\tce",
        "ali\x1bce",
        "ali\x7fce",
        "ali\u200bce",  # zero-width space: invisible, would make look-alike logins
        "x" * (MAX_LOGIN_LENGTH + 1),
    ],
)
def test_login_refuses(raw: str) -> None:
    with pytest.raises(InvalidInput):
        Login.parse(raw)


@pytest.mark.parametrize("raw", [None, 42, b"alice"])
def test_login_refuses_non_strings(raw: object) -> None:
    with pytest.raises(InvalidInput):
        Login.parse(raw)  # type: ignore[arg-type]


def test_login_length_boundary() -> None:
    assert Login.parse("x" * MAX_LOGIN_LENGTH).value == "x" * MAX_LOGIN_LENGTH
    with pytest.raises(InvalidInput):
        Login.parse("x" * (MAX_LOGIN_LENGTH + 1))


def test_nfc_makes_composed_and_decomposed_the_same_login() -> None:
    assert COMPOSED != DECOMPOSED
    assert Login.parse(COMPOSED) == Login.parse(DECOMPOSED)
    assert Login.parse(DECOMPOSED).value == COMPOSED


def test_login_length_is_counted_after_normalisation() -> None:
    decomposed = "e\u0301" * MAX_LOGIN_LENGTH  # 128 code points, 64 after NFC
    assert Login.parse(decomposed).value == "\u00e9" * MAX_LOGIN_LENGTH


def test_logins_are_case_sensitive() -> None:
    assert Login.parse("Alice") != Login.parse("alice")


@given(st.text(min_size=1, max_size=MAX_LOGIN_LENGTH))
def test_accepted_logins_are_nfc_trimmed_and_printable(raw: str) -> None:
    try:
        login = Login.parse(raw)
    except InvalidInput:
        normal = unicodedata.normalize("NFC", raw)
        assert (
            normal != normal.strip() or not normal.isprintable() or len(normal) > MAX_LOGIN_LENGTH
        )
        return
    assert login.value == unicodedata.normalize("NFC", raw)
    assert login.value == login.value.strip() and login.value.isprintable()


# --- Password --------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", ["secret", " leading", "trailing ", "   ", "pass phrase", "tab\there", "é", "p" * 256]
)
def test_password_kept_verbatim(raw: str) -> None:
    # a password is a secret, not an identifier: its spaces are part of it
    assert Password.parse(raw).value == raw


@pytest.mark.parametrize("raw", ["", "nul\x00inside", "p" * (MAX_PASSWORD_LENGTH + 1)])
def test_password_refuses(raw: str) -> None:
    with pytest.raises(InvalidInput):
        Password.parse(raw)


@pytest.mark.parametrize("raw", [None, 12345678, b"secret"])
def test_password_refuses_non_strings(raw: object) -> None:
    with pytest.raises(InvalidInput):
        Password.parse(raw)  # type: ignore[arg-type]


def test_password_length_boundary() -> None:
    assert Password.parse("p" * MAX_PASSWORD_LENGTH).value == "p" * MAX_PASSWORD_LENGTH
    with pytest.raises(InvalidInput):
        Password.parse("p" * (MAX_PASSWORD_LENGTH + 1))


def _renderings(password: Password) -> list[str]:
    return [
        repr(password),
        str(password),
        f"{password}",
        f"{password!r}",
        repr([password]),
        repr({"key": password}),
    ]


@given(st.text(alphabet=st.characters(exclude_characters="\x00"), min_size=1, max_size=64))
def test_password_never_shown(secret: str) -> None:
    # the rendering does not depend on the secret at all
    shown = _renderings(Password.parse(secret))
    assert shown == _renderings(Password.parse("a different secret"))


def test_password_repr_hides_the_secret() -> None:
    password = Password.parse("hunter2-correct-horse")
    assert all("hunter2" not in text for text in _renderings(password))
    assert password.value == "hunter2-correct-horse"  # the hasher still gets it


# --- Register / LogIn ------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store() -> MemoryDatabase:
    return MemoryDatabase()


def _wired(store: MemoryDatabase, throttle: object | None = None) -> Container:
    """The in-memory container with the test doubles, on ``store`` (and ``throttle``)."""
    on_store = memory.Store()
    on_store.database.override(providers.Object(store))
    settings = Settings.for_database(MEMORY_URI, secret=TEST_SECRET)
    container = use_test_doubles(Container(settings=settings, store=on_store))
    if throttle is not None:
        container.throttle.override(providers.Object(throttle))
    return container


def register_for(store: MemoryDatabase) -> Callable[[str, str], Awaitable[Authenticated]]:
    return _wired(store).users().register  # type: ignore[no-any-return]


def login_for(
    store: MemoryDatabase, throttle: object | None = None
) -> Callable[[str, str, str], Awaitable[Authenticated]]:
    return _wired(store, throttle).users().log_in  # type: ignore[no-any-return]


async def test_register_then_login(store: MemoryDatabase) -> None:
    tokens = CountingTokens()
    registered = await register_for(store)("alice", "s3cret pass")
    assert tokens.verify(registered.token) == registered.user_id
    logged_in = await login_for(store)("alice", "s3cret pass", "10.0.0.1")
    assert logged_in.user_id == registered.user_id
    assert tokens.verify(logged_in.token) == registered.user_id


async def test_register_opens_an_empty_account_and_stores_only_the_hash(
    store: MemoryDatabase,
) -> None:
    user = await register_for(store)("alice", "s3cret")
    assert store.state.balances[user.user_id] == (0, 0)
    stored = store.state.users[user.user_id]  # type: ignore[index]
    assert stored.password_hash == await PlainPasswordHasher().hash(Password.parse("s3cret"))


async def test_two_users_get_distinct_ids(store: MemoryDatabase) -> None:
    a = await register_for(store)("alice", "pw")
    b = await register_for(store)("bob", "pw")
    assert a.user_id != b.user_id


async def test_duplicate_login_is_taken(store: MemoryDatabase) -> None:
    register = register_for(store)
    first = await register("alice", "one")
    with pytest.raises(LoginTaken):
        await register("alice", "two")
    assert len(store.state.users) == 1
    # the first user's password still works, the second's does not
    assert (await login_for(store)("alice", "one", "c")).user_id == first.user_id
    with pytest.raises(InvalidCredentials):
        await login_for(store)("alice", "two", "c")


async def test_composed_and_decomposed_logins_collide(store: MemoryDatabase) -> None:
    user = await register_for(store)(COMPOSED, "pw")
    with pytest.raises(LoginTaken):
        await register_for(store)(DECOMPOSED, "pw")
    assert (await login_for(store)(DECOMPOSED, "pw", "c")).user_id == user.user_id


async def test_case_differs_is_another_user(store: MemoryDatabase) -> None:
    a = await register_for(store)("alice", "pw")
    b = await register_for(store)("Alice", "pw")
    assert a.user_id != b.user_id


@pytest.mark.parametrize(("login", "password"), [("", "pw"), ("alice", ""), (" alice", "pw")])
async def test_register_refuses_malformed_credentials(
    store: MemoryDatabase, login: str, password: str
) -> None:
    with pytest.raises(InvalidInput):
        await register_for(store)(login, password)
    assert store.state.users == {}


async def test_wrong_password_and_unknown_user_look_the_same(store: MemoryDatabase) -> None:
    await register_for(store)("alice", "right")
    login = login_for(store)
    with pytest.raises(InvalidCredentials) as wrong:
        await login("alice", "wrong", "c")
    with pytest.raises(InvalidCredentials) as unknown:
        await login("nobody", "right", "c")
    assert str(wrong.value) == str(unknown.value)


async def test_failed_register_commit_leaves_no_user(store: MemoryDatabase) -> None:
    store.fail_next_commit = True
    with pytest.raises(ConnectionError):
        await register_for(store)("alice", "pw")
    assert store.state.users == {}
    assert store.state.logins == {}
    assert store.state.balances == {}
    with pytest.raises(InvalidCredentials):
        await login_for(store)("alice", "pw", "c")
    # the login is still free: the rolled-back attempt reserved nothing
    again = await register_for(store)("alice", "pw")
    assert (await login_for(store)("alice", "pw", "c")).user_id == again.user_id


# --- throttling ------------------------------------------------------------------


class FakeSleep:
    """Records the delays a throttle asks for instead of waiting them out."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.clock.now += seconds


def throttle_for(clock: FakeClock, **policy: float) -> tuple[LoginThrottle, FakeSleep]:
    sleep = FakeSleep(clock)
    counters = MemoryThrottleCounters()
    return LoginThrottle(counters, ThrottlePolicy(**policy), clock=clock, sleep=sleep), sleep  # type: ignore[arg-type]


async def test_throttle_locks_a_pair_out_after_free_failures(store: MemoryDatabase) -> None:
    clock = FakeClock()
    throttle, _ = throttle_for(clock, free_per_pair=3, free_per_login=1000)
    await register_for(store)("alice", "right")
    login = login_for(store, throttle)

    for _ in range(4):  # three free failures, the fourth starts a lock-out
        with pytest.raises(InvalidCredentials):
            await login("alice", "wrong", "10.0.0.1")
    with pytest.raises(TooManyAttempts) as refused:
        await login("alice", "right", "10.0.0.1")  # even the right password waits
    assert refused.value.retry_after > 0
    # alice from another address (her phone, not the guesser) is not locked out
    assert (await login("alice", "right", "10.0.0.2")).user_id
    # ... and her success there does not unlock the guesser's address
    with pytest.raises(TooManyAttempts):
        await login("alice", "right", "10.0.0.1")
    clock.now += refused.value.retry_after
    ok = await login("alice", "right", "10.0.0.1")  # the lock ran out; success clears it
    assert ok.user_id
    with pytest.raises(InvalidCredentials):
        await login("alice", "wrong", "10.0.0.1")
    assert (await login("alice", "right", "10.0.0.1")).user_id == ok.user_id


async def test_throttle_lockout_grows_with_failures(store: MemoryDatabase) -> None:
    clock = FakeClock()
    throttle, _ = throttle_for(clock, free_per_pair=2, free_per_login=1000)
    login = login_for(store, throttle)
    waits = []
    for _ in range(7):
        while True:
            try:
                await login("mallory", "guess", "c")
            except TooManyAttempts as exc:
                waits.append(exc.retry_after)
                clock.now += exc.retry_after
                continue
            except InvalidCredentials:
                break
    # two free failures, the third locks for 2 s, then 4, 8, 16 ...
    assert waits == [2, 4, 8, 16]


async def test_refused_attempts_do_not_lengthen_the_lock(store: MemoryDatabase) -> None:
    clock = FakeClock()
    throttle, _ = throttle_for(clock, free_per_pair=1, free_per_login=1000)
    login = login_for(store, throttle)
    for _ in range(2):
        with pytest.raises(InvalidCredentials):
            await login("alice", "guess", "c")
    for _ in range(50):  # hammering the locked pair
        with pytest.raises(TooManyAttempts) as refused:
            await login("alice", "guess", "c")
    assert refused.value.retry_after == 2
    clock.now += 2
    with pytest.raises(InvalidCredentials):  # the lock ended when it said it would
        await login("alice", "guess", "c")


async def test_a_login_is_locked_against_guesses_from_many_addresses(store: MemoryDatabase) -> None:
    clock = FakeClock()
    throttle, _ = throttle_for(clock, free_per_pair=1000, free_per_login=3)
    await register_for(store)("alice", "right")
    login = login_for(store, throttle)
    for i in range(4):
        with pytest.raises(InvalidCredentials):
            await login("alice", "guess", f"10.0.0.{i}")
    with pytest.raises(TooManyAttempts):
        await login("alice", "right", "10.9.9.9")


async def test_a_burst_of_concurrent_guesses_is_counted_as_it_arrives(
    store: MemoryDatabase,
) -> None:
    clock = FakeClock()
    throttle, _ = throttle_for(clock, free_per_pair=5, free_per_login=1000)
    await register_for(store)("alice", "right")
    login = login_for(store, throttle)
    outcomes = await asyncio.gather(
        *(login("alice", f"guess {i}", "c") for i in range(20)), return_exceptions=True
    )
    checked = [o for o in outcomes if isinstance(o, InvalidCredentials)]
    refused = [o for o in outcomes if isinstance(o, TooManyAttempts)]
    assert (len(checked), len(refused)) == (6, 14)


async def test_one_address_failing_a_lot_slows_its_crowd_but_locks_nobody_out(
    store: MemoryDatabase,
) -> None:
    """Issue 9, finding 9: 51 failures from one address (NAT, an office proxy) locked
    out everyone behind it."""
    clock = FakeClock()
    throttle, sleep = throttle_for(clock)  # the production policy
    await register_for(store)("colleague", "pw")
    login = login_for(store, throttle)
    for i in range(60):  # one address spraying many logins
        with pytest.raises(InvalidCredentials):
            await login(f"user{i}", "guess", "6.6.6.6")
    assert sleep.delays and sleep.delays[-1] > sleep.delays[0] > 0  # slowed, increasingly
    assert max(sleep.delays) <= throttle.policy.max_client_delay
    # a colleague behind the same address logs in: slowed a little, not refused
    sleep.delays.clear()
    assert (await login("colleague", "pw", "6.6.6.6")).user_id
    assert 0 < sum(sleep.delays) <= throttle.policy.max_client_delay
    sleep.delays.clear()
    assert (await login("colleague", "pw", "1.2.3.4")).user_id  # elsewhere: not even slowed
    assert sleep.delays == []


async def test_throttle_window_forgets_old_failures(store: MemoryDatabase) -> None:
    clock = FakeClock()
    throttle, _ = throttle_for(clock, free_per_pair=2, free_per_login=1000, window=60.0)
    login = login_for(store, throttle)
    for _ in range(2):
        with pytest.raises(InvalidCredentials):
            await login("alice", "x", "c")
    clock.now += 61  # quiet for longer than the window: forgotten
    for _ in range(2):
        with pytest.raises(InvalidCredentials):
            await login("alice", "x", "c")
    await throttle.attempt("alice", "c")  # still within the free budget: no lock-out
