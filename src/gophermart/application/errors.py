"""Errors raised by the application layer (not business rules, but protocol facts)."""

from gophermart.domain.errors import GophermartError


class Unauthenticated(GophermartError):
    """Missing, malformed, tampered or expired credential."""


class ConcurrentUpdate(GophermartError):
    """A guarded write lost a race (unique key or conditional update); safe to retry."""
