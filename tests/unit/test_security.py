"""Credentials and password hashing.

Proves that ``JwtTokens`` round-trips a user id and refuses tampered, foreign-secret,
expired (also when cached), garbage and ``alg=none`` tokens with ``Unauthenticated``,
and refuses a short secret; that ``Argon2Hasher`` hashes and verifies (wrong password
and unknown user are ``False``); and that with argon2's *default* cost the hashing runs
off the event loop: a ticking coroutine never sees a gap over 50 ms.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import argon2
import jwt
import pytest

from gophermart.adapters import security
from gophermart.adapters.security import Argon2Hasher, HashQueue, JwtTokens
from gophermart.application.errors import Overloaded, Unauthenticated
from gophermart.domain.users import Password, UserId

SECRET = "s" * 40 + "-unit-test-signing-secret-for-hs256"
OTHER_SECRET = "o" * 32 + "-another-signing-secret"


def b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.fixture
def tokens() -> JwtTokens:
    return JwtTokens(SECRET, timedelta(hours=1))


# --- JWT -------------------------------------------------------------------------


@pytest.mark.parametrize("user_id", [1, 42, 2**40])
def test_round_trip(tokens: JwtTokens, user_id: int) -> None:
    token = tokens.issue(UserId(user_id))
    assert tokens.verify(token) == user_id
    assert tokens.verify(token) == user_id  # second time from the cache
    # another instance with the same secret (another API process) agrees
    assert JwtTokens(SECRET, timedelta(hours=1)).verify(token) == user_id


def test_claims_are_signed_hs256_with_expiry(tokens: JwtTokens) -> None:
    token = tokens.issue(UserId(7))
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["sub"] == "7"
    assert 3590 <= claims["exp"] - time.time() <= 3610


def test_tampered_signature(tokens: JwtTokens) -> None:
    header, payload, signature = tokens.issue(UserId(1)).split(".")
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    forged = f"{header}.{payload}.{signature[:middle]}{flipped}{signature[middle + 1 :]}"
    with pytest.raises(Unauthenticated):
        tokens.verify(forged)


def test_tampered_payload_keeps_old_signature(tokens: JwtTokens) -> None:
    header, _, signature = tokens.issue(UserId(1)).split(".")
    payload = b64({"sub": "2", "exp": int(time.time()) + 3600})
    with pytest.raises(Unauthenticated):
        tokens.verify(f"{header}.{payload}.{signature}")


def test_wrong_secret(tokens: JwtTokens) -> None:
    foreign = JwtTokens(OTHER_SECRET, timedelta(hours=1)).issue(UserId(1))
    with pytest.raises(Unauthenticated):
        tokens.verify(foreign)
    made_by_hand = jwt.encode(
        {"sub": "1", "exp": int(time.time()) + 60}, OTHER_SECRET, algorithm="HS256"
    )
    with pytest.raises(Unauthenticated):
        tokens.verify(made_by_hand)


def test_expired_token(tokens: JwtTokens) -> None:
    expired = jwt.encode(
        {"sub": "1", "iat": int(time.time()) - 120, "exp": int(time.time()) - 60},
        SECRET,
        algorithm="HS256",
    )
    with pytest.raises(Unauthenticated):
        tokens.verify(expired)


def test_cached_token_expires_too(tokens: JwtTokens, monkeypatch: pytest.MonkeyPatch) -> None:
    short = JwtTokens(SECRET, timedelta(seconds=30))
    token = short.issue(UserId(3))
    assert short.verify(token) == 3  # now cached
    real = time.time()
    monkeypatch.setattr(security.time, "time", lambda: real + 31)
    with pytest.raises(Unauthenticated):
        short.verify(token)


def test_cached_token_is_not_resurrected_after_expiry(tokens: JwtTokens) -> None:
    # real time, no fakes: PyJWT reads its own clock, so both paths must agree
    exp = int(time.time()) + 1
    token = jwt.encode({"sub": "9", "exp": exp}, SECRET, algorithm="HS256")
    assert tokens.verify(token) == 9  # cached now
    while time.time() <= exp + 0.01:
        time.sleep(0.02)
    with pytest.raises(Unauthenticated):
        tokens.verify(token)  # from the cache
    with pytest.raises(Unauthenticated):
        tokens.verify(token)  # and again, after the cache dropped it


def test_token_issued_with_short_ttl_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    real = time.time()
    monkeypatch.setattr(security.time, "time", lambda: real - 3600)
    old = JwtTokens(SECRET, timedelta(seconds=60)).issue(UserId(4))  # issued an hour ago
    monkeypatch.undo()
    with pytest.raises(Unauthenticated):
        JwtTokens(SECRET, timedelta(seconds=60)).verify(old)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "a.b.c",
        "a.b",
        "....",
        "Bearer x",
        "eyJhbGciOiJIUzI1NiJ9.e30.",
    ],
)
def test_garbage(tokens: JwtTokens, token: str) -> None:
    with pytest.raises(Unauthenticated):
        tokens.verify(token)


def test_alg_none(tokens: JwtTokens) -> None:
    claims = {"sub": "1", "exp": int(time.time()) + 3600}
    unsigned = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."
    with pytest.raises(Unauthenticated):
        tokens.verify(unsigned)
    by_pyjwt = jwt.encode(claims, None, algorithm="none")
    with pytest.raises(Unauthenticated):
        tokens.verify(by_pyjwt)


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": 10**10},  # no subject
        {"sub": "1"},  # no expiry
        {"sub": "alice", "exp": 10**10},  # subject not a user id
        {"sub": 1, "exp": 10**10},  # subject must be a string
    ],
)
def test_signed_but_malformed_claims(tokens: JwtTokens, claims: dict[str, object]) -> None:
    with pytest.raises(Unauthenticated):
        tokens.verify(jwt.encode(claims, SECRET, algorithm="HS256"))


@pytest.mark.parametrize(
    "subject",
    [
        "9223372036854775808",  # 2^63: overflows the BIGINT key (was a 500 on the query)
        "18446744073709551616",
        "9" * 5000,  # past int()'s digit limit
        "0",
        "-1",
        "+1",
        "01",
        " 1",
        "1 ",
        "1.0",
        "1e3",
        "\u0661",  # ARABIC-INDIC DIGIT ONE: str.isdigit() but not ours
        "",
    ],
)
def test_signed_token_with_an_absurd_subject_is_refused(tokens: JwtTokens, subject: str) -> None:
    token = jwt.encode({"sub": subject, "exp": 10**10}, SECRET, algorithm="HS256")
    with pytest.raises(Unauthenticated):
        tokens.verify(token)


def test_the_largest_user_id_is_a_subject(tokens: JwtTokens) -> None:
    token = jwt.encode({"sub": str(2**63 - 1), "exp": 10**10}, SECRET, algorithm="HS256")
    assert tokens.verify(token) == 2**63 - 1


def test_a_token_issued_a_little_in_the_future_is_taken(tokens: JwtTokens) -> None:
    """Issue 15, finding 4: a token whose ``iat`` was 1 s ahead (another process's clock
    a little ahead of this one's) was 401."""
    now = int(time.time())
    for ahead in (1, 5, JwtTokens.CLOCK_SKEW - 2):
        claims = {"sub": "7", "iat": now + ahead, "exp": now + 3600}
        assert tokens.verify(jwt.encode(claims, SECRET, algorithm="HS256")) == 7


@pytest.mark.parametrize("iat", [JwtTokens.CLOCK_SKEW + 5, 3600, 10**9, "soon", True])
def test_a_token_from_the_far_future_is_refused(tokens: JwtTokens, iat: object) -> None:
    now = int(time.time())
    issued = now + iat if isinstance(iat, int) and not isinstance(iat, bool) else iat
    claims = {"sub": "7", "iat": issued, "exp": now + 10**10}
    with pytest.raises(Unauthenticated):
        tokens.verify(jwt.encode(claims, SECRET, algorithm="HS256"))


def test_tokens_are_bound_to_their_database() -> None:
    """Issue 9, finding 5: with a fixed secret, a token minted before the database was
    reset named user 1 of the new database."""
    before_reset = JwtTokens(SECRET, timedelta(hours=1), database_id="a" * 32)
    after_reset = JwtTokens(SECRET, timedelta(hours=1), database_id="b" * 32)
    token = before_reset.issue(UserId(1))
    assert before_reset.verify(token) == 1
    with pytest.raises(Unauthenticated):
        after_reset.verify(token)
    # another process of the same deployment (same secret, same database) agrees
    assert JwtTokens(SECRET, timedelta(hours=1), database_id="a" * 32).verify(token) == 1
    # the key is neither the bare secret nor the same for another secret
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, SECRET, algorithms=["HS256"])
    assert security.signing_key(SECRET, "a" * 32) != security.signing_key(OTHER_SECRET, "a" * 32)


def test_other_hmac_algorithm_refused(tokens: JwtTokens) -> None:
    token = jwt.encode({"sub": "1", "exp": 10**10}, SECRET, algorithm="HS512")
    with pytest.raises(Unauthenticated):
        tokens.verify(token)


@pytest.mark.parametrize("secret", ["", "short", "x" * 31])
def test_short_secret_refused(secret: str) -> None:
    with pytest.raises(ValueError, match="32"):
        JwtTokens(secret, timedelta(hours=1))


def test_secret_of_32_chars_accepted() -> None:
    tokens = JwtTokens("x" * 32, timedelta(hours=1))
    assert tokens.verify(tokens.issue(UserId(5))) == 5


# --- argon2 ----------------------------------------------------------------------


@pytest.fixture
def cheap_hasher() -> Iterator[Argon2Hasher]:
    hasher = Argon2Hasher(hasher=argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    yield hasher
    hasher.close()


async def test_hash_and_verify(cheap_hasher: Argon2Hasher) -> None:
    password = Password.parse("correct horse battery staple")
    stored = await cheap_hasher.hash(password)
    assert stored.startswith("$argon2id$")
    assert password.value not in stored
    assert await cheap_hasher.verify(stored, password) is True


async def test_hashes_are_salted(cheap_hasher: Argon2Hasher) -> None:
    password = Password.parse("same")
    a, b = await cheap_hasher.hash(password), await cheap_hasher.hash(password)
    assert a != b
    assert await cheap_hasher.verify(a, password) and await cheap_hasher.verify(b, password)


async def test_wrong_password(cheap_hasher: Argon2Hasher) -> None:
    stored = await cheap_hasher.hash(Password.parse("right"))
    assert await cheap_hasher.verify(stored, Password.parse("wrong")) is False
    assert await cheap_hasher.verify(stored, Password.parse("right ")) is False


async def test_unknown_user_is_false(cheap_hasher: Argon2Hasher) -> None:
    # even the decoy's own password does not log an unknown user in
    decoy = Password.parse("not a real password, only a timing decoy")
    assert await cheap_hasher.verify(None, decoy) is False
    assert await cheap_hasher.verify(None, Password.parse("anything")) is False


async def test_corrupt_hash_is_false(cheap_hasher: Argon2Hasher) -> None:
    assert await cheap_hasher.verify("not-a-hash", Password.parse("pw")) is False
    assert await cheap_hasher.verify("plain$pw", Password.parse("pw")) is False


async def _max_tick_gap_while_hashing(hasher: Argon2Hasher) -> tuple[float, float, int]:
    """Hash four passwords concurrently while a coroutine ticks every 5 ms.

    Returns (largest gap between ticks, seconds the hashes took, number of ticks).
    """
    done = asyncio.Event()
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.02)  # let the ticker start
    started = time.perf_counter()
    try:
        hashes = await asyncio.gather(
            *(hasher.hash(Password.parse(f"password {i}")) for i in range(4))
        )
    finally:
        done.set()
    elapsed = time.perf_counter() - started
    await tick
    assert len(set(hashes)) == 4
    assert all(h.startswith("$argon2id$") for h in hashes)
    return max(gaps), elapsed, len(gaps)


async def test_default_cost_hashing_does_not_block_the_event_loop() -> None:
    hasher = Argon2Hasher()  # argon2-cffi's default (RFC 9106 low-memory) parameters
    try:
        # A hash on the loop stalls it for a whole hash (~100 ms+) on *every* run; the OS
        # scheduler on a busy machine can stall a thread once in a while. So the loop must
        # stay responsive in at least one of three runs.
        runs = [await _max_tick_gap_while_hashing(hasher) for _ in range(3)]
    finally:
        hasher.close()

    best_gap, elapsed, ticks = min(runs)
    # the hashes took real time (the default cost), and the loop kept ticking all along
    assert elapsed > 0.05, f"hashing took only {elapsed:.3f}s: not the default cost?"
    assert ticks >= 5
    assert best_gap <= 0.05, f"event loop stalled for {best_gap * 1000:.1f} ms: {runs}"


# --- the hash queue (issue 15, finding 1) -------------------------------------------


class Blocked:
    """Work for a hashing thread that holds it until released, recording who ran."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.gate = threading.Event()

    def __call__(self, name: str) -> str:
        self.ran.append(name)
        self.gate.wait(5)
        return name


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0.01)


@pytest.fixture
def one_thread() -> Iterator[tuple[ThreadPoolExecutor, Blocked]]:
    """A pool of one hashing thread, and work that holds it until released."""
    pool, work = ThreadPoolExecutor(1), Blocked()
    yield pool, work
    work.gate.set()
    pool.shutdown()


async def test_a_full_line_is_refused_at_once(
    one_thread: tuple[ThreadPoolExecutor, Blocked],
) -> None:
    pool, work = one_thread
    queue = HashQueue(running=1, waiting=2)
    line = [asyncio.ensure_future(queue.run(pool, work, f"h{i}")) for i in range(3)]
    await _settle()
    started = time.monotonic()
    with pytest.raises(Overloaded):
        await queue.run(pool, work, "one too many")
    assert time.monotonic() - started < 0.05  # refused, not queued
    work.gate.set()
    assert await asyncio.gather(*line) == ["h0", "h1", "h2"]
    assert await queue.run(pool, work, "later") == "later"  # room again


async def test_a_cancelled_wait_takes_its_work_with_it(
    one_thread: tuple[ThreadPoolExecutor, Blocked],
) -> None:
    pool, work = one_thread
    queue = HashQueue(running=1, waiting=8)
    running = asyncio.ensure_future(queue.run(pool, work, "running"))
    waiting = [asyncio.ensure_future(queue.run(pool, work, f"gone{i}")) for i in range(5)]
    kept = asyncio.ensure_future(queue.run(pool, work, "kept"))
    await _settle()
    for task in waiting:  # their clients hung up
        task.cancel()
    await _settle()
    work.gate.set()
    assert await running == "running" and await kept == "kept"
    assert work.ran == ["running", "kept"]  # nothing hashed for those who left


async def test_a_turn_is_given_back_when_the_thread_is_done(
    one_thread: tuple[ThreadPoolExecutor, Blocked],
) -> None:
    """Cancelling a hash that already runs cannot stop its thread: the turn stays taken
    until it ends, so the pool never holds more than its threads."""
    pool, work = one_thread
    queue = HashQueue(running=1, waiting=8)
    running = asyncio.ensure_future(queue.run(pool, work, "running"))
    await _settle()
    running.cancel()
    after = asyncio.ensure_future(queue.run(pool, work, "after"))
    await _settle()
    assert work.ran == ["running"]  # still its thread's
    work.gate.set()
    assert await after == "after"


async def test_first_runs_in_the_turn_and_can_call_the_work_off(
    one_thread: tuple[ThreadPoolExecutor, Blocked],
) -> None:
    pool, work = one_thread
    queue = HashQueue(running=1, waiting=8)
    work.gate.set()
    seen: list[str] = []

    async def count() -> None:
        seen.append("counted")

    async def refuse() -> None:
        raise RuntimeError("locked meanwhile")

    assert await queue.run(pool, work, "checked", first=count) == "checked"
    with pytest.raises(RuntimeError):
        await queue.run(pool, work, "never", first=refuse)
    assert (seen, work.ran) == (["counted"], ["checked"])
    assert await queue.run(pool, work, "next") == "next"  # the refused turn came back


async def test_the_hashers_line_is_sized_by_its_threads(cheap_hasher: Argon2Hasher) -> None:
    line = 2 * (1 + Argon2Hasher.QUEUED_PER_THREAD)  # two threads, each with its waiters
    results = await asyncio.gather(
        *(cheap_hasher.hash(Password.parse(f"pw {i}")) for i in range(line + 20)),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, Overloaded)]
    assert len(refused) == 20
    assert all(isinstance(r, str) for r in results if not isinstance(r, Overloaded))
