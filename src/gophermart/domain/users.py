"""Users and their credentials' shape rules.

Only the *shape* of credentials is a domain rule; hashing and token issuing are ports
(see :mod:`gophermart.application.ports`).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Final, Literal, NewType

from gophermart.domain.errors import InvalidInput, UnknownUser
from gophermart.domain.scripts import mixes_scripts

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


#: Code points that show nothing (or a blank) yet pass ``str.isprintable``: the Hangul
#: fillers, variation selectors, the combining grapheme joiner, Khmer's inherent vowels,
#: Mongolian's variation selectors (Unicode's Default_Ignorable_Code_Point, less the
#: format characters ``isprintable`` already refuses), and the blank Braille pattern.
_INVISIBLE: Final = frozenset(
    cp
    for first, last in (
        (0x034F, 0x034F),
        (0x115F, 0x1160),
        (0x17B4, 0x17B5),
        (0x180B, 0x180F),
        (0x2800, 0x2800),
        (0x3164, 0x3164),
        (0xFE00, 0xFE0F),
        (0xFFA0, 0xFFA0),
        (0xE0100, 0xE01EF),
    )
    for cp in range(first, last + 1)
)


@dataclass(frozen=True, slots=True)
class Login:
    """A login: 1..64 printable characters, no surrounding whitespace, no look-alikes.

    Logins are NFKC-normalised, so that one visible name is one login however it was
    typed: composed or decomposed accents, fullwidth letters (U+FF41 is ``a``),
    ligatures (U+FB01 is ``fi``). What would still make two logins look alike is
    refused: invisible characters (``_INVISIBLE``, and the format and control
    characters ``isprintable`` refuses), runs of spaces (HTML shows them as one), and
    scripts mixed in one login (a Cyrillic U+0430 among Latin letters; Han with kana or
    Hangul, and Latin with them, is how Japanese, Chinese and Korean are written and is
    allowed). They are case-sensitive, like the reference deployment's.
    """

    value: str

    @classmethod
    def parse(cls, raw: str) -> Login:
        value = _shaped(raw, "NFKC")
        if any(ord(ch) in _INVISIBLE for ch in value):
            raise InvalidInput("login must not contain invisible characters")
        if "  " in value:
            raise InvalidInput("login must not contain runs of spaces")
        if mixes_scripts(value):
            raise InvalidInput("login must not mix scripts (such as Latin and Cyrillic)")
        return cls(value)

    @classmethod
    def candidates(cls, raw: str) -> tuple[Login, ...]:
        """The stored logins that ``raw``, typed at log-in, may name, most exact first.

        First as typed, NFC-normalised: how every login registered before issue 15 was
        stored, look-alikes included, so that their owners still get in by typing what
        they always typed. Then its :meth:`parse` form, when that differs (a login
        typed in fullwidth letters reaches the account registered in plain ones). The
        last one is the name's identity, the one it is registered and throttled under.
        """
        forms: list[Login] = []
        refused = InvalidInput("login must not be empty")
        for read in (cls._as_registered_before, cls.parse):
            try:
                login = read(raw)
            except InvalidInput as exc:
                refused = exc
                continue
            if login not in forms:
                forms.append(login)
        if not forms:
            raise refused
        return tuple(forms)

    @classmethod
    def _as_registered_before(cls, raw: str) -> Login:
        """The login as it was read before issue 15: NFC, the shape rules only."""
        return cls(_shaped(raw, "NFC"))

    def __str__(self) -> str:
        return self.value


def _shaped(raw: str, form: Literal["NFC", "NFKC"]) -> str:
    """``raw`` normalised to ``form`` and held to the shape rules every login has had."""
    if not isinstance(raw, str):
        raise InvalidInput("login must be a string")
    value = unicodedata.normalize(form, raw)
    if not value:
        raise InvalidInput("login must not be empty")
    if len(value) > MAX_LOGIN_LENGTH:
        raise InvalidInput(f"login must be at most {MAX_LOGIN_LENGTH} characters")
    if value != value.strip():
        raise InvalidInput("login must not start or end with whitespace")
    if any(not ch.isprintable() for ch in value):
        raise InvalidInput("login must not contain control characters")
    return value


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
