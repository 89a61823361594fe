"""Errors raised by the application layer (not business rules, but protocol facts)."""

from gophermart.domain.errors import GophermartError


class Unauthenticated(GophermartError):
    """Missing, malformed, tampered or expired credential."""


class ConcurrentUpdate(GophermartError):
    """A guarded write lost a race (unique key or conditional update); safe to retry."""


class StoreUnavailable(GophermartError):
    """The database could not be reached, or did not answer within the configured bound.

    An outage, not a bug: the caller answers "try again" (HTTP 503 with ``Retry-After``).
    The unit of work that met it was rolled back or abandoned, so nothing it meant to
    write was written, with one unavoidable exception: a connection lost while its COMMIT
    was in flight may have committed. Every write of this service is safe to repeat, so
    a retry settles it either way.
    """

    def __init__(self, reason: str, retry_after: int = 1) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class NotOpen(GophermartError):
    """A verb of a library instance that is not open: not started yet, or closed."""


class Overloaded(GophermartError):
    """Too much of one costly kind of work is already queued (password hashes): refused
    at once, so that a storm costs its senders a retry instead of costing everyone a
    wait. Nothing was done; the caller answers "try again" (HTTP 503 with
    ``Retry-After``)."""

    def __init__(self, reason: str, retry_after: int = 1) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class StoreMisconfigured(GophermartError):
    """The store's connections disagree about where our tables are: a host's engine or
    pool set up differently from the configuration (another ``search_path`` than the
    ``db_schema`` option). Found at start; nothing was written."""


class MigrationFailed(GophermartError):
    """The database answered but refused a migration (a permission, a conflicting object
    of someone else's): nothing of it was applied; the reason is the database's."""
