"""Typed domain errors.

Every rule violation has its own type so that one place at the edge
(``entrypoints.http.errors``) can map it to a status code without parsing messages.
"""


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


class InvalidCredentials(DomainError):
    """The login/password pair does not match. Deliberately says no more."""


class TooManyAttempts(DomainError):
    """Too many failed logins recently; try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed attempts, retry after {retry_after}s")
        self.retry_after = retry_after


class OrderOwnedByAnotherUser(DomainError):
    """The order number was uploaded by someone else first."""


class IllegalStatusTransition(DomainError):
    """An order's status may only move forward; final is final."""


class InsufficientPoints(DomainError):
    """A withdrawal larger than the current balance."""


class WithdrawalConflict(DomainError):
    """The order number was already used for a *different* withdrawal."""


class AlreadyCredited(DomainError):
    """The order's accrual was credited before; a second credit is refused."""


class UnknownUser(DomainError):
    """A credential names a user that does not exist (any more)."""


class UnknownOrder(DomainError):
    """No order with this number was ever uploaded."""
