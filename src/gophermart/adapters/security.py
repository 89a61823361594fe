"""Passwords (argon2id) and credentials (JWT), and the login throttle.

Argon2 is deliberately slow (~100 ms of CPU). It runs in a small thread pool: the
argon2 C code releases the GIL, so the event loop keeps serving other requests while
hashes run, and the pool's size bounds the memory a login storm can take.

Off the loop is not enough on a busy machine: hashing threads compete with the event
loop (and PostgreSQL) for the same cores. They run at the lowest CPU priority (nice
19, per thread on Linux; the argon2 lane threads they start inherit it), so a storm
of logins slows logins, not every other request.
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

import jwt
from argon2 import PasswordHasher as _Argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gophermart.application.errors import Unauthenticated
from gophermart.domain.errors import TooManyAttempts
from gophermart.domain.users import Password, UserId


def _lowest_priority() -> None:
    """Nice this thread (only it: on Linux PRIO_PROCESS with a thread id is per thread)."""
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or not permitted
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


class Argon2Hasher:
    """argon2id with argon2-cffi's defaults (RFC 9106 low-memory profile)."""

    def __init__(self, threads: int = 2, hasher: _Argon2 | None = None) -> None:
        self._argon2 = hasher or _Argon2()
        self._pool = ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="argon2", initializer=_lowest_priority
        )
        # Verifying against this costs what verifying a real hash costs: used for
        # unknown logins, so their answer time does not reveal that they are unknown.
        self._dummy_hash = self._argon2.hash("not a real password, only a timing decoy")

    async def hash(self, password: Password) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._argon2.hash, password.value)

    async def verify(self, password_hash: str | None, password: Password) -> bool:
        loop = asyncio.get_running_loop()
        target = password_hash if password_hash is not None else self._dummy_hash
        ok = await loop.run_in_executor(self._pool, self._verify, target, password.value)
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
                options={"require": ["sub", "exp"]},
            )
            user_id = _user_id(claims["sub"])
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise Unauthenticated("invalid token") from exc
        self._cache[token] = _Cached(user_id, float(claims["exp"]))
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return user_id


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


class SlidingLoginThrottle:
    """Refuses logins after too many recent failures, per login and per client address.

    After ``free_per_login`` failures for one login (or ``free_per_client`` from one
    address, which may be a whole office behind NAT) within ``window`` seconds, each
    further failure locks that key for a time that doubles per failure, capped at
    ``max_lockout``; attempts during the lock-out are refused with 429 and
    ``Retry-After`` before the password is even checked. A success clears the login's
    record. State is per process: with N processes an attacker gets at most N times
    the budget, still far from brute-force speeds.
    """

    def __init__(
        self,
        free_per_login: int = 5,
        free_per_client: int = 50,
        window: float = 900.0,
        max_lockout: float = 900.0,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._free = {"l": free_per_login, "c": free_per_client}
        self._window = window
        self._max_lockout = max_lockout
        self._max_keys = max_keys
        self._clock = clock
        # key -> (failures, first failure time, locked until)
        self._records: OrderedDict[str, tuple[int, float, float]] = OrderedDict()

    def check(self, login: str, client: str) -> None:
        now = self._clock()
        for key in (f"l:{login}", f"c:{client}"):
            record = self._records.get(key)
            if record is not None and record[2] > now:
                raise TooManyAttempts(max(1, int(record[2] - now + 0.999)))

    def failed(self, login: str, client: str) -> None:
        now = self._clock()
        for key in (f"l:{login}", f"c:{client}"):
            failures, first, _ = self._records.get(key, (0, now, 0.0))
            if now - first > self._window:
                failures, first = 0, now
            failures += 1
            free = self._free[key[0]]
            locked_until = 0.0
            if failures > free:
                locked_until = now + min(self._max_lockout, 2.0 ** (failures - free))
            self._records[key] = (failures, first, locked_until)
            self._records.move_to_end(key)
        while len(self._records) > self._max_keys:
            self._records.popitem(last=False)

    def succeeded(self, login: str, client: str) -> None:
        self._records.pop(f"l:{login}", None)
