"""Operators: the people (or tools) that run the shop's ledger through ``/api/admin/``.

An operator is a name and a key. The name is what the ledger records on every entry an
operator causes, so it is shaped like a login: 1 to 64 printable characters, no
surrounding whitespace, NFC-normalised (one visible name is one name). The key is a
bearer secret; making, hashing and checking keys is the application's
(:mod:`gophermart.application.operators`).
"""

from __future__ import annotations

import unicodedata
from typing import Final, NewType

from gophermart.domain.errors import DomainError, InvalidInput

#: An operator's name, as the ledger records it.
OperatorName = NewType("OperatorName", str)

MAX_OPERATOR_NAME_LENGTH: Final = 64


def operator_name(raw: object) -> OperatorName:
    """``raw`` as an operator's name, or :class:`InvalidInput` saying why not."""
    if not isinstance(raw, str):
        raise InvalidInput(f"an operator's name is text, not {type(raw).__name__}")
    name = unicodedata.normalize("NFC", raw)
    if not name:
        raise InvalidInput("an operator's name must not be empty")
    if len(name) > MAX_OPERATOR_NAME_LENGTH:
        raise InvalidInput(f"an operator's name is at most {MAX_OPERATOR_NAME_LENGTH} characters")
    if not name.isprintable():
        raise InvalidInput("an operator's name must be printable (no control characters)")
    if name != name.strip():
        raise InvalidInput("an operator's name must not start or end with whitespace")
    return OperatorName(name)


class OperatorExists(DomainError):
    """An operator of this name holds a key already (revoke it first to re-key)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"operator {name} exists")
        self.name = name


class UnknownOperator(DomainError):
    """No operator of this name holds a key (never added, or revoked already)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no operator {name} holds a key")
        self.name = name
