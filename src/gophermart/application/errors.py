"""Errors raised by the application layer (not business rules, but protocol facts)."""


class Unauthenticated(Exception):
    """Missing, malformed, tampered or expired credential."""


class ConcurrentUpdate(Exception):
    """A guarded write lost a race (unique key or conditional update); safe to retry."""
