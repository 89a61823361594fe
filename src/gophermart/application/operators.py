"""Operators' keys: making, revoking and checking the credential of ``/api/admin/``.

A key is ``gmo_`` and 32 random bytes (``secrets.token_urlsafe``): the prefix makes a
key recognisable where it should not be (a log, a ticket, a repository's history: a
secret scanner can look for it), and the rest cannot be guessed. The store keeps only
its SHA-256 hash; the key itself is shown once, to whoever made it.

A fast hash is right here, unlike for passwords: a slow, salted hash (argon2) is there to
make guessing a *low-entropy* secret costly, one guess at a time. A key has 256 random
bits, so no guessing is possible however fast the hash, and a fast hash lets the store
find the key's operator by an index on the hash, with no salt to look up first.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from typing import Final

from gophermart.application.errors import Unauthenticated
from gophermart.application.ports import Clock, OperatorKeys
from gophermart.domain.operators import (
    OperatorExists,
    OperatorName,
    UnknownOperator,
    operator_name,
)

#: What every operator key starts with.
KEY_PREFIX: Final = "gmo_"
#: Random bytes in a key (``secrets.token_urlsafe(32)``: 43 characters).
KEY_BYTES: Final = 32
#: A key's length: the prefix and the bytes in unpadded base64 (43 characters).
KEY_LENGTH: Final = len(KEY_PREFIX) + (KEY_BYTES * 4 + 2) // 3
_KEY_ALPHABET: Final = frozenset(string.ascii_letters + string.digits + "-_")


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def key_hash(key: str) -> str:
    """What the store keeps of a key: its SHA-256, in hex (the module docstring says
    why a fast hash)."""
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def _well_formed(key: object) -> str:
    """``key`` if it is shaped like a key; :class:`Unauthenticated` otherwise (a user's
    token, a truncated paste), before the store is asked anything."""
    if (
        type(key) is not str
        or len(key) != KEY_LENGTH
        or not key.startswith(KEY_PREFIX)
        or not _KEY_ALPHABET.issuperset(key[len(KEY_PREFIX) :])
    ):
        raise Unauthenticated("not an operator key")
    return key


class Operators:
    def __init__(self, keys: OperatorKeys, clock: Clock) -> None:
        self._keys = keys
        self._clock = clock

    async def add(self, name: str) -> str:
        """A new operator ``name`` (1 to 64 printable characters) and its key, returned
        once: only the key's hash is kept, so a lost key is revoked and made anew.
        :class:`~gophermart.domain.operators.OperatorExists` if ``name`` holds a key
        (a revoked name may be given a new one)."""
        valid = operator_name(name)
        key = new_key()
        if not await self._keys.add(valid, key_hash(key), self._clock.now()):
            raise OperatorExists(valid)
        return key

    async def revoke(self, name: str) -> None:
        """Revoke ``name``'s key: from now on it opens nothing.
        :class:`~gophermart.domain.operators.UnknownOperator` if ``name`` holds no key."""
        valid = operator_name(name)
        if not await self._keys.revoke(valid, self._clock.now()):
            raise UnknownOperator(valid)

    async def authenticate(self, key: str) -> OperatorName:
        """The operator whose key ``key`` is; :class:`gophermart.Unauthenticated` for a
        key that is malformed, unknown or revoked (the same answer for all three)."""
        digest = key_hash(_well_formed(key))
        stored = await self._keys.by_hash(digest)
        # The store found the row by its hash; the comparison that decides is made here
        # in constant time, so no answer's timing depends on how much of a hash matched.
        # (The index lookup can only reveal something about the hash of the caller's own
        # guess, which says nothing about any key.)
        if (
            stored is None
            or not hmac.compare_digest(stored.key_hash, digest)
            or stored.revoked_at is not None
        ):
            raise Unauthenticated("unknown or revoked operator key")
        return stored.name
