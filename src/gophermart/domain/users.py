"""Users and their credentials' shape rules.

Only the *shape* of credentials is a domain rule; hashing and token issuing are ports
(see :mod:`gophermart.application.ports`).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Final, NewType

from gophermart.domain.errors import InvalidInput, UnknownUser

UserId = NewType("UserId", int)

#: User ids are BIGINT keys: 1 to 2^63 - 1.
MAX_USER_ID: Final = 2**63 - 1


def valid_user_id(value: object) -> UserId:
    """A user id as a host hands it in: a whole number (``int``, not ``bool``, not text)
    from 1 to :data:`MAX_USER_ID`. Another type is :class:`InvalidInput`; a number no
    user can have is :class:`UnknownUser` (as for a user that does not exist)."""
    if type(value) is not int:
        raise InvalidInput(f"a user id is a whole number, not {type(value).__name__}")
    if not 1 <= value <= MAX_USER_ID:
        raise UnknownUser(value, "cannot exist")
    return UserId(value)


#: Logins are identifiers people type and see; 64 characters is generous.
MAX_LOGIN_LENGTH: Final = 64
#: Long passphrases are welcome, but hashing megabytes on request is a DoS vector.
MAX_PASSWORD_LENGTH: Final = 256


@dataclass(frozen=True, slots=True)
class Login:
    """A login: 1..64 printable characters, no surrounding whitespace.

    Logins are NFC-normalised so that the same visible name, typed with composed or
    decomposed accents, is one login. They are case-sensitive, like the reference
    deployment's.
    """

    value: str

    @classmethod
    def parse(cls, raw: str) -> Login:
        if not isinstance(raw, str):
            raise InvalidInput("login must be a string")
        value = unicodedata.normalize("NFC", raw)
        if not value:
            raise InvalidInput("login must not be empty")
        if len(value) > MAX_LOGIN_LENGTH:
            raise InvalidInput(f"login must be at most {MAX_LOGIN_LENGTH} characters")
        if value != value.strip():
            raise InvalidInput("login must not start or end with whitespace")
        if any(not ch.isprintable() for ch in value):
            raise InvalidInput("login must not contain control characters")
        return cls(value)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Password:
    """A clear-text password on its way to the hasher; never stored, never printed."""

    value: str

    @classmethod
    def parse(cls, raw: str) -> Password:
        if not isinstance(raw, str):
            raise InvalidInput("password must be a string")
        if not raw:
            raise InvalidInput("password must not be empty")
        if len(raw) > MAX_PASSWORD_LENGTH:
            raise InvalidInput(f"password must be at most {MAX_PASSWORD_LENGTH} characters")
        if "\x00" in raw:
            raise InvalidInput("password must not contain NUL characters")
        return cls(raw)

    def __repr__(self) -> str:
        return "Password(***)"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class User:
    """A registered shopper. ``password_hash`` is opaque to the domain."""

    id: UserId
    login: Login
    password_hash: str
