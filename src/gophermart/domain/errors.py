"""Typed domain errors.

Every rule violation has its own type so that one place at the edge
(``entrypoints.http.errors``) can map it to a status code without parsing messages, and
carries what a host needs to act on it as attributes (the amounts of a refused
withdrawal, the order that conflicts), never only in its message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gophermart.domain.points import Points


class GophermartError(Exception):
    """Base of every error the library raises on purpose (business rules, credentials,
    lost races): a host can catch this one and map the rest by type."""


class DomainError(GophermartError):
    """Base of every business-rule violation."""


class InvalidInput(DomainError):
    """A value that can never be valid: malformed login, empty password, ..."""


class InvalidOrderNumber(DomainError):
    """Not a string of digits, or fails the Luhn check."""


class InvalidAmount(DomainError):
    """Not positive, more than two decimals, or absurdly large."""


class BalanceOverflow(DomainError):
    """A sum (a balance, a total withdrawn) would exceed what the ledger's columns hold
    (2^63 - 1 hundredths). Nothing is changed; a credit that hits it must be parked."""


class LoginTaken(DomainError):
    """Another user registered this login first."""

    def __init__(self, login: str) -> None:
        super().__init__(f"login {login} is taken")
        self.login = login


class InvalidCredentials(DomainError):
    """The login/password pair does not match. Deliberately says no more."""


class TooManyAttempts(DomainError):
    """Too many failed logins recently; try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed attempts, retry after {retry_after}s")
        self.retry_after = retry_after


class OrderOwnedByAnotherUser(DomainError):
    """The order number was uploaded by someone else first."""

    def __init__(self, order: str) -> None:
        super().__init__(f"order {order} was uploaded by another user")
        self.order = order


class IllegalStatusTransition(DomainError):
    """An order's status may only move forward; final is final."""


class InsufficientPoints(DomainError):
    """A withdrawal larger than the current balance: ``requested`` and ``available``
    (``None`` when the balance changed under a concurrent write and was not read)."""

    def __init__(self, requested: Points, available: Points | None = None) -> None:
        told = f"balance {available} is less than {requested}" if available is not None else ""
        super().__init__(told or f"the balance no longer covers {requested}")
        self.requested = requested
        self.available = available


class WithdrawalConflict(DomainError):
    """The order number was already used for a *different* withdrawal."""

    def __init__(self, order: str) -> None:
        super().__init__(f"order {order} was used for another withdrawal")
        self.order = order


class AlreadyCredited(DomainError):
    """The order's accrual was credited before; a second credit is refused."""


class UnknownUser(DomainError):
    """A credential names a user that does not exist (any more)."""

    def __init__(self, user_id: object, why: str = "has no account") -> None:
        super().__init__(f"user {user_id} {why}")
        self.user_id = user_id


class UnknownLogin(DomainError):
    """No user is registered under this login (as log-in reads it: ``Login.candidates``)."""

    def __init__(self, login: str) -> None:
        super().__init__(f"no user has the login {login}")
        self.login = login


class UnknownOrder(DomainError):
    """No order with this number was ever uploaded (or none of the caller's)."""

    def __init__(self, order: str, why: str = "was never uploaded") -> None:
        super().__init__(f"order {order} {why}")
        self.order = order


class HoldConflict(DomainError):
    """A hold that cannot be made or moved: the order already has another hold or a
    withdrawal, a capture after its expiry, a capture of a released hold (or the
    reverse). ``order`` is the order concerned, ``hold_id`` the hold (when one exists)
    and ``state`` what it is now. HTTP ``409``."""

    def __init__(self, order: str, why: str, hold_id: int | None = None, state: str = "") -> None:
        super().__init__(f"order {order}: {why}")
        self.order = order
        self.hold_id = hold_id
        self.state = state


class UnknownHold(DomainError):
    """No hold of this id (of the caller's)."""

    def __init__(self, hold_id: object) -> None:
        super().__init__(f"no hold {hold_id}")
        self.hold_id = hold_id


class ExceedsOriginal(DomainError):
    """A reversal beyond what is left of the order's accrual, or a refund beyond what is
    left of the withdrawal: ``order``, ``requested`` and ``left``. HTTP ``409``."""

    def __init__(self, order: str, requested: Points, left: Points) -> None:
        super().__init__(f"order {order}: {requested} asked, {left} left")
        self.order = order
        self.requested = requested
        self.left = left


class OrderIsFinal(DomainError):
    """The order's status is final (``PROCESSED`` or ``INVALID``): the accrual system is
    never asked about it again."""

    def __init__(self, order: str, status: str) -> None:
        super().__init__(f"order {order} is {status}, which is final")
        self.order = order
        self.status = status
