"""Passwords (argon2id) and credentials (JWT).

Argon2 is deliberately slow (~100 ms of CPU). It runs in a small thread pool: the
argon2 C code releases the GIL, so the event loop keeps serving other requests while
hashes run, and the pool's size bounds the memory a login storm can take.

Off the loop is not enough on a busy machine: hashing threads compete with the event
loop (and PostgreSQL) for the same cores. They run at the lowest CPU priority (nice
19, per thread on Linux; the argon2 lane threads they start inherit it), so a storm
of logins slows logins, not every other request.

Nor is a pool enough on its own: its queue had no bound, so a hundred logins sent and
abandoned in 10 ms held the owner's next login for 12 s, hashing for clients that had
hung up (issue 15). Hashes now wait their turn in a :class:`HashQueue` on the event
loop: a bounded line, past which a hash is refused at once (``Overloaded``: 503), and
from which a cancelled wait (the client hung up, ``entrypoints/http``) simply leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Final, TypeVar

import jwt
from argon2 import PasswordHasher as _Argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gophermart.application.errors import Overloaded, Unauthenticated
from gophermart.application.ports import Admitted
from gophermart.domain.users import Password, UserId


def _lowest_priority() -> None:
    """Nice this thread (only it: on Linux PRIO_PROCESS with a thread id is per thread)."""
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or not permitted
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


T = TypeVar("T")


class HashQueue:
    """Turns on ``running`` hashing threads, and a line of at most ``waiting`` hashes.

    The line is on the event loop, not in the thread pool's queue, because a waiter on
    the loop can leave it: a cancelled wait (its client hung up) takes its hash with
    it, where a pool's queued work item would still be hashed for nobody. Past a full
    line a hash is refused at once: a storm costs its senders a retry (503), not every
    login a wait. A turn is given back when the thread has finished, not when its
    waiter stops waiting, so the pool never holds more than ``running`` hashes.
    """

    def __init__(self, running: int, waiting: int) -> None:
        self._turns = asyncio.Semaphore(running)
        self._waiting = waiting
        self._in_line = 0

    async def run(
        self,
        pool: ThreadPoolExecutor,
        work: Callable[..., T],
        *args: object,
        first: Admitted = None,
    ) -> T:
        """``work(*args)`` on ``pool`` in its turn; ``first`` is awaited once the turn
        has come, before the work starts (if it raises, the work never runs)."""
        if self._turns.locked() and self._in_line >= self._waiting:
            raise Overloaded("too many password checks queued")
        self._in_line += 1
        try:
            await self._turns.acquire()
        finally:
            self._in_line -= 1
        try:
            if first is not None:
                await first()
            running = pool.submit(work, *args)
        except BaseException:
            self._turns.release()
            raise
        running.add_done_callback(self._give_back(asyncio.get_running_loop()))
        return await asyncio.wrap_future(running)

    def _give_back(self, loop: asyncio.AbstractEventLoop) -> Callable[[Future[T]], None]:
        def given_back(_done: Future[T]) -> None:  # on the hashing thread
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                loop.call_soon_threadsafe(self._turns.release)

        return given_back


class Argon2Hasher:
    """argon2id with argon2-cffi's defaults (RFC 9106 low-memory profile).

    ``threads`` hash at once; ``QUEUED_PER_THREAD`` times as many may wait their turn.
    A hash takes ~110 ms, so the last in a full line starts within about half a second
    (4 x 110 ms): a login either gets a prompt check or a prompt 503.
    """

    QUEUED_PER_THREAD: Final = 4

    def __init__(self, threads: int = 2, hasher: _Argon2 | None = None) -> None:
        self._argon2 = hasher or _Argon2()
        self._pool = ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="argon2", initializer=_lowest_priority
        )
        self._queue = HashQueue(threads, threads * self.QUEUED_PER_THREAD)
        # Verifying against this costs what verifying a real hash costs: used for
        # unknown logins, so their answer time does not reveal that they are unknown.
        self._dummy_hash = self._argon2.hash("not a real password, only a timing decoy")

    async def hash(self, password: Password) -> str:
        return await self._queue.run(self._pool, self._argon2.hash, password.value)

    async def verify(
        self, password_hash: str | None, password: Password, admitted: Admitted = None
    ) -> bool:
        target = password_hash if password_hash is not None else self._dummy_hash
        ok = await self._queue.run(self._pool, self._verify, target, password.value, first=admitted)
        return ok and password_hash is not None

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._argon2.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def close(self) -> None:
        self._pool.shutdown(wait=True)


@dataclass(frozen=True, slots=True)
class _Cached:
    user_id: UserId
    expires_at: float


#: User ids are positive and fit the 64-bit key column; a token naming anything else
#: (a signed token with ``sub`` = "0", "-1" or 2^64) is refused before any query.
_MAX_USER_ID: Final = 2**63 - 1


def signing_key(secret: str, database_id: str | None) -> str:
    """The HMAC key of a deployment's tokens: the secret, bound to one database.

    ``database_id`` is generated once per database (``service_state``), so a token
    minted before the database was dropped and recreated fails its signature check
    afterwards, even though the operator's ``GOPHERMART_SECRET`` stayed the same and
    the new database hands out user id 1 again. The binding costs nothing per request.
    """
    if database_id is None:
        return secret
    material = b"gophermart token key\x00" + database_id.encode()
    return hmac.new(secret.encode(), material, hashlib.sha256).hexdigest()


class JwtTokens:
    """HS256 JWTs carrying the user id, with an expiry, signed with a key bound to the
    database (:func:`signing_key`).

    Verification results are cached per token string (bounded LRU, honouring the
    token's own expiry): the hot read endpoints then pay a dict lookup, not an HMAC
    and a JSON parse. A token is only ever cached after a full verification.
    """

    ALGORITHM: Final = "HS256"
    #: How far ahead of this process's clock another's may be: a token issued up to this
    #: many seconds "in the future" is taken (PyJWT refused one issued 1 s ahead: 401),
    #: one issued further ahead is not. Expiry stays exact: a late clock only shortens
    #: a token's life by the skew, it never makes a token unusable from birth.
    CLOCK_SKEW: Final = 30

    def __init__(
        self,
        secret: str,
        ttl: timedelta,
        database_id: str | None = None,
        cache_size: int = 65536,
    ) -> None:
        if len(secret) < 32:
            raise ValueError("the token signing secret must be at least 32 characters")
        self._secret = signing_key(secret, database_id)
        self._ttl = int(ttl.total_seconds())
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._cache_size = cache_size

    def issue(self, user_id: UserId) -> str:
        now = int(time.time())
        claims = {"sub": str(user_id), "iat": now, "exp": now + self._ttl}
        return jwt.encode(claims, self._secret, algorithm=self.ALGORITHM)

    def verify(self, token: str) -> UserId:
        cached = self._cache.get(token)
        if cached is not None:
            if cached.expires_at > time.time():
                return cached.user_id
            del self._cache[token]
            raise Unauthenticated("token expired")
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[self.ALGORITHM],
                options={"require": ["sub", "exp"], "verify_iat": False},
            )
            _issued_by(claims.get("iat"), time.time() + self.CLOCK_SKEW)
            user_id = _user_id(claims["sub"])
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise Unauthenticated("invalid token") from exc
        self._cache[token] = _Cached(user_id, float(claims["exp"]))
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return user_id


def _issued_by(issued_at: object, latest: float) -> None:
    """ValueError unless ``iat`` is absent or a number of seconds no later than ``latest``."""
    if issued_at is None:
        return
    if isinstance(issued_at, bool) or not isinstance(issued_at, int | float):
        raise ValueError("the issue time is not a number")
    if issued_at > latest:
        raise ValueError("the token was issued in the future")


def _user_id(subject: object) -> UserId:
    """The ``sub`` claim as a user id: decimal digits, 1 .. 2^63 - 1 (else ValueError)."""
    if (
        not isinstance(subject, str)
        or not subject.isascii()
        or not subject.isdigit()
        or len(subject) > 19
        or subject.startswith("0")
    ):
        raise ValueError("the subject is not a user id")
    user_id = int(subject)
    if user_id > _MAX_USER_ID:
        raise ValueError("the subject is not a user id")
    return UserId(user_id)
