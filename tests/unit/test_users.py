"""Credential shapes and the register / log-in use cases.

Proves the ``Login`` and ``Password`` rules (empty, whitespace, control characters,
length bounds, NFC normalisation, a password never shown by ``repr``/``str``), and
that ``Register`` and ``LogIn`` behave per contract with the in-memory adapters:
register-then-login works, duplicates are ``LoginTaken``, a wrong password and an
unknown user are both ``InvalidCredentials``, a failed commit leaves no user, and the
real ``SlidingLoginThrottle`` (driven by a fake monotonic clock) refuses further
attempts with a positive ``retry_after`` until a success clears the login's record.
"""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gophermart.adapters.memory import MemoryStore, MemoryUnitOfWork
from gophermart.adapters.security import SlidingLoginThrottle
from gophermart.application.users import LogIn, Register
from gophermart.domain.errors import InvalidCredentials, InvalidInput, LoginTaken, TooManyAttempts
from gophermart.domain.users import MAX_LOGIN_LENGTH, MAX_PASSWORD_LENGTH, Login, Password
from gophermart.testing import CountingTokens, NoThrottle, PlainPasswordHasher

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


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


def register_for(store: MemoryStore) -> Register:
    return Register(lambda: MemoryUnitOfWork(store), PlainPasswordHasher(), CountingTokens())


def login_for(store: MemoryStore, throttle: object | None = None) -> LogIn:
    return LogIn(
        lambda: MemoryUnitOfWork(store),
        PlainPasswordHasher(),
        CountingTokens(),
        throttle or NoThrottle(),  # type: ignore[arg-type]
    )


async def test_register_then_login(store: MemoryStore) -> None:
    tokens = CountingTokens()
    registered = await register_for(store)("alice", "s3cret pass")
    assert tokens.verify(registered.token) == registered.user_id
    logged_in = await login_for(store)("alice", "s3cret pass", "10.0.0.1")
    assert logged_in.user_id == registered.user_id
    assert tokens.verify(logged_in.token) == registered.user_id


async def test_register_opens_an_empty_account_and_stores_only_the_hash(
    store: MemoryStore,
) -> None:
    user = await register_for(store)("alice", "s3cret")
    assert store.state.balances[user.user_id] == (0, 0)
    stored = store.state.users[user.user_id]  # type: ignore[index]
    assert stored.password_hash == await PlainPasswordHasher().hash(Password.parse("s3cret"))


async def test_two_users_get_distinct_ids(store: MemoryStore) -> None:
    a = await register_for(store)("alice", "pw")
    b = await register_for(store)("bob", "pw")
    assert a.user_id != b.user_id


async def test_duplicate_login_is_taken(store: MemoryStore) -> None:
    register = register_for(store)
    first = await register("alice", "one")
    with pytest.raises(LoginTaken):
        await register("alice", "two")
    assert len(store.state.users) == 1
    # the first user's password still works, the second's does not
    assert (await login_for(store)("alice", "one", "c")).user_id == first.user_id
    with pytest.raises(InvalidCredentials):
        await login_for(store)("alice", "two", "c")


async def test_composed_and_decomposed_logins_collide(store: MemoryStore) -> None:
    user = await register_for(store)(COMPOSED, "pw")
    with pytest.raises(LoginTaken):
        await register_for(store)(DECOMPOSED, "pw")
    assert (await login_for(store)(DECOMPOSED, "pw", "c")).user_id == user.user_id


async def test_case_differs_is_another_user(store: MemoryStore) -> None:
    a = await register_for(store)("alice", "pw")
    b = await register_for(store)("Alice", "pw")
    assert a.user_id != b.user_id


@pytest.mark.parametrize(("login", "password"), [("", "pw"), ("alice", ""), (" alice", "pw")])
async def test_register_refuses_malformed_credentials(
    store: MemoryStore, login: str, password: str
) -> None:
    with pytest.raises(InvalidInput):
        await register_for(store)(login, password)
    assert store.state.users == {}


async def test_wrong_password_and_unknown_user_look_the_same(store: MemoryStore) -> None:
    await register_for(store)("alice", "right")
    login = login_for(store)
    with pytest.raises(InvalidCredentials) as wrong:
        await login("alice", "wrong", "c")
    with pytest.raises(InvalidCredentials) as unknown:
        await login("nobody", "right", "c")
    assert str(wrong.value) == str(unknown.value)


async def test_failed_register_commit_leaves_no_user(store: MemoryStore) -> None:
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


async def test_throttle_locks_out_after_free_failures(store: MemoryStore) -> None:
    clock = FakeMonotonic()
    throttle = SlidingLoginThrottle(free_per_login=3, free_per_client=1000, clock=clock)
    await register_for(store)("alice", "right")
    login = login_for(store, throttle)

    for _ in range(4):  # three free failures, the fourth starts a lock-out
        with pytest.raises(InvalidCredentials):
            await login("alice", "wrong", "10.0.0.1")
    with pytest.raises(TooManyAttempts) as refused:
        await login("alice", "right", "10.0.0.1")  # even the right password waits
    assert refused.value.retry_after > 0
    # another login from another address is not affected
    await register_for(store)("bob", "pw")
    assert (await login("bob", "pw", "10.0.0.2")).user_id

    clock.now += refused.value.retry_after
    ok = await login("alice", "right", "10.0.0.1")
    assert ok.user_id
    # the success cleared alice's record: a fresh failure is free again
    with pytest.raises(InvalidCredentials):
        await login("alice", "wrong", "10.0.0.1")
    assert (await login("alice", "right", "10.0.0.1")).user_id == ok.user_id


async def test_throttle_lockout_grows_with_failures(store: MemoryStore) -> None:
    clock = FakeMonotonic()
    throttle = SlidingLoginThrottle(free_per_login=2, free_per_client=1000, clock=clock)
    login = login_for(store, throttle)
    waits = []
    for _ in range(5):
        while True:
            try:
                await login("mallory", "guess", "c")
            except TooManyAttempts as exc:
                clock.now += exc.retry_after
                continue
            except InvalidCredentials:
                break
        try:
            throttle.check("mallory", "c")
        except TooManyAttempts as exc:
            waits.append(exc.retry_after)
        else:
            waits.append(0)
    assert waits[:2] == [0, 0]
    assert all(w > 0 for w in waits[2:])
    assert waits[2:] == sorted(waits[2:]) and waits[-1] > waits[2]


async def test_throttle_per_client_address(store: MemoryStore) -> None:
    clock = FakeMonotonic()
    throttle = SlidingLoginThrottle(free_per_login=1000, free_per_client=3, clock=clock)
    await register_for(store)("victim", "pw")
    login = login_for(store, throttle)
    for i in range(4):  # one address spraying many logins
        with pytest.raises(InvalidCredentials):
            await login(f"user{i}", "guess", "6.6.6.6")
    with pytest.raises(TooManyAttempts) as refused:
        await login("victim", "pw", "6.6.6.6")
    assert refused.value.retry_after > 0
    assert (await login("victim", "pw", "1.2.3.4")).user_id  # others are unaffected


async def test_throttle_window_forgets_old_failures(store: MemoryStore) -> None:
    clock = FakeMonotonic()
    throttle = SlidingLoginThrottle(
        free_per_login=2, free_per_client=1000, window=60.0, clock=clock
    )
    login = login_for(store, throttle)
    for _ in range(2):
        with pytest.raises(InvalidCredentials):
            await login("alice", "x", "c")
    clock.now += 61  # the earlier failures fall out of the window
    for _ in range(2):
        with pytest.raises(InvalidCredentials):
            await login("alice", "x", "c")
    throttle.check("alice", "c")  # still within the free budget: no lock-out
