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
from gophermart.domain.scripts import mixes_scripts
from gophermart.domain.users import _INVISIBLE as INVISIBLE
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
def test_accepted_logins_are_nfkc_trimmed_printable_and_one_script(raw: str) -> None:
    try:
        login = Login.parse(raw)
    except InvalidInput:
        normal = unicodedata.normalize("NFKC", raw)
        assert (
            normal != normal.strip()
            or not normal.isprintable()
            or not 0 < len(normal) <= MAX_LOGIN_LENGTH
            or "  " in normal
            or mixes_scripts(normal)
            or any(ord(ch) in INVISIBLE for ch in normal)
        )
        return
    assert login.value == unicodedata.normalize("NFKC", raw)
    assert login.value == login.value.strip() and login.value.isprintable()
    assert Login.parse(login.value) == login  # a registered login reads back as itself
    assert login in Login.candidates(raw)  # and what was typed at register reaches it


# --- look-alike logins (issue 15, finding 3) ------------------------------------------


@pytest.mark.parametrize(
    ("typed", "registered"),
    [
        ("\uff41\uff44\uff4d\uff49\uff4e", "admin"),  # fullwidth
        ("\ufb01sh", "fish"),  # the fi ligature
        ("\U0001d41a\U0001d41d\U0001d426\U0001d422\U0001d427", "admin"),  # mathematical bold
        ("caf\u00e9", "caf\u00e9"),
        ("cafe\u0301", "caf\u00e9"),
        ("a\u00a0b", "a b"),  # a no-break space inside is a space
        ("\uff76\uff9e", "\u30ac"),  # halfwidth katakana and its voicing mark
    ],
)
def test_lookalike_forms_fold_to_one_login(typed: str, registered: str) -> None:
    assert Login.parse(typed).value == registered


@pytest.mark.parametrize(
    "raw",
    [
        "\u0430dmin",  # Cyrillic a, Latin dmin
        "p\u0430yp\u0430l",
        "\u03b1lice",  # Greek alpha
        "admin\u13a0",  # a Cherokee letter
        "ad\u3164min",  # HANGUL FILLER: prints as nothing
        "\u3164",
        "\uffa0admin",  # HALFWIDTH HANGUL FILLER
        "a\u115fb",
        "a\u1160b",
        "admin\ufe0f",  # a variation selector
        "ad\u034fmin",  # combining grapheme joiner
        "ad\u200dmin",  # zero-width joiner (format character)
        "ad\u2060min",  # word joiner
        "ad\u00admin",  # soft hyphen
        "ad\u202emin",  # right-to-left override
        "a\u2800b",  # blank Braille pattern
        "alice  smith",  # a run of spaces: HTML shows one
        "alice\u2003\u2003smith",  # em spaces: NFKC makes them a run of spaces
    ],
)
def test_lookalike_logins_are_refused(raw: str) -> None:
    with pytest.raises(InvalidInput):
        Login.parse(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "\u540d\u524d",  # Han
        "\u3072\u3089\u304c\u306a\u6f22\u5b57abc",  # Japanese: Hiragana + Han + Latin
        "\u30ab\u30bf\u30ab\u30ca\u30fc",  # Katakana with the (Common) prolonged sound mark
        "\ud55c\uad6d\uc5b4 \u97d3\u570b",  # Korean: Hangul + Han
        "\u043c\u043e\u0441\u043a\u0432\u0430-2024",  # Cyrillic with Common digits
        "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac",  # Greek
        "user.name+tag@example.com",
        "alice smith",
        "x\u0301y",  # a combining mark (Inherited) goes with any script
    ],
)
def test_one_script_logins_are_accepted(raw: str) -> None:
    assert Login.parse(raw).value == unicodedata.normalize("NFKC", raw)


def test_candidates_try_the_login_as_typed_then_as_registered_now() -> None:
    fullwidth = "\uff41\uff44\uff4d\uff49\uff4e"
    assert Login.candidates("admin") == (Login("admin"),)
    assert Login.candidates(fullwidth) == (Login(fullwidth), Login("admin"))
    # refused now, accepted before: the old form alone, so its owner still gets in
    assert Login.candidates("\u0430dmin") == (Login("\u0430dmin"),)
    # refused before (a no-break space is not printable), folded now
    assert Login.candidates("a\u00a0b") == (Login("a b"),)
    with pytest.raises(InvalidInput):
        Login.candidates(" admin")


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


# --- logins registered before issue 15 -------------------------------------------------

FULLWIDTH_ADMIN = "\uff41\uff44\uff4d\uff49\uff4e"
CYRILLIC_A_ADMIN = "\u0430dmin"
FILLED_ADMIN = "ad\u3164min"


async def registered_before(store: MemoryDatabase, login: str, password: str) -> int:
    """A user stored the way register stored them before issue 15 (NFC, no look-alike
    rules): what a database that has run the older release holds."""
    async with _wired(store).store.uow() as uow:
        user = await uow.users.add(Login(login), "plain$" + password)
        await uow.accounts.open(user.id)
        await uow.commit()
    return int(user.id)


async def test_lookalikes_of_a_taken_login_are_taken(store: MemoryDatabase) -> None:
    register = register_for(store)
    await register("admin", "pw")
    await register("fish", "pw")
    for lookalike in (FULLWIDTH_ADMIN, "\U0001d41a\U0001d41d\U0001d426\U0001d422\U0001d427"):
        with pytest.raises(LoginTaken):
            await register(lookalike, "pw")
    with pytest.raises(LoginTaken):
        await register("\ufb01sh", "pw")
    for lookalike in (CYRILLIC_A_ADMIN, FILLED_ADMIN):
        with pytest.raises(InvalidInput):
            await register(lookalike, "pw")
    assert sorted(store.state.logins) == ["admin", "fish"]


async def test_a_login_typed_in_another_form_reaches_its_account(store: MemoryDatabase) -> None:
    user = await register_for(store)(FULLWIDTH_ADMIN, "pw")  # registered as "admin"
    assert list(store.state.logins) == ["admin"]
    assert (await login_for(store)("admin", "pw", "c")).user_id == user.user_id
    assert (await login_for(store)(FULLWIDTH_ADMIN, "pw", "c")).user_id == user.user_id


@pytest.mark.parametrize(
    ("legacy", "now"),
    [
        (FULLWIDTH_ADMIN, LoginTaken),  # folded now: registering it is registering "admin"
        (CYRILLIC_A_ADMIN, InvalidInput),  # refused now
        (FILLED_ADMIN, InvalidInput),
        ("a  b", InvalidInput),
    ],
)
async def test_logins_registered_before_still_log_in_as_typed(
    store: MemoryDatabase, legacy: str, now: type[Exception]
) -> None:
    """Issue 15, finding 3: logins the new rules fold or refuse were registered before;
    their owners keep getting in by typing exactly what they registered, even beside
    the account that the folded form names."""
    admin = await register_for(store)("admin", "admin's")
    old = await registered_before(store, legacy, "theirs")
    login = login_for(store)
    assert (await login(legacy, "theirs", "c")).user_id == old
    assert (await login("admin", "admin's", "c")).user_id == admin.user_id
    with pytest.raises(InvalidCredentials):  # the exact form reaches the old account only
        await login(legacy, "admin's", "c")
    with pytest.raises(now):  # and cannot be registered again by anyone
        await register_for(store)(legacy, "pw")


async def test_what_reaches_an_older_account_cannot_be_registered(store: MemoryDatabase) -> None:
    old = await registered_before(store, FULLWIDTH_ADMIN, "theirs")
    with pytest.raises(LoginTaken):  # would register "admin", unreachable by this typing
        await register_for(store)(FULLWIDTH_ADMIN, "pw")
    plain = await register_for(store)("admin", "pw")  # the plain name is free
    assert (await login_for(store)("admin", "pw", "c")).user_id == plain.user_id
    assert (await login_for(store)(FULLWIDTH_ADMIN, "theirs", "c")).user_id == old


async def test_lookalike_guesses_count_against_one_login(store: MemoryDatabase) -> None:
    """Throttled under the account's login: typing it in other forms opens no fresh
    budget of guesses."""
    clock = FakeClock()
    throttle, _ = throttle_for(clock, free_per_pair=1000, free_per_login=3)
    await register_for(store)("admin", "right")
    login = login_for(store, throttle)
    forms = ["admin", FULLWIDTH_ADMIN, "\uff41dmin", "a\uff44min"]
    for i, typed in enumerate(forms):
        with pytest.raises(InvalidCredentials):
            await login(typed, "guess", f"10.0.0.{i}")
    with pytest.raises(TooManyAttempts):
        await login("\uff41\uff44min", "right", "10.9.9.9")


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
