"""What an operator asks of the service: readiness, the ledger audit, the queue's depth,
the ledger's open positions."""

from __future__ import annotations

from gophermart.application.ports import (
    Clock,
    LedgerGauges,
    QueueDepth,
    QueueProbe,
    SchemaState,
    StoreLifecycle,
)
from gophermart.application.readiness import Readiness, ReadinessProbe
from gophermart.application.reconcile import LedgerAudit, ReconcileReport
from gophermart.domain.errors import InvalidInput

#: The longest "overdue" a queue-depth question may mean: a year, in seconds.
MAX_OVERDUE = 365 * 86400


class Operations:
    def __init__(
        self,
        readiness: ReadinessProbe,
        audit: LedgerAudit,
        queue: QueueProbe,
        lifecycle: StoreLifecycle,
        clock: Clock,
    ) -> None:
        self._readiness = readiness
        self._audit = audit
        self._queue = queue
        self._lifecycle = lifecycle
        self._clock = clock

    async def readiness(self) -> Readiness:
        """Whether the store answers (within the database timeout) and its schema is the
        one this release expects: what ``GET /readyz`` reports. Never raises."""
        return await self._readiness()

    async def reconcile(self) -> ReconcileReport:
        """Check every balance against the ledger and every credit against its order."""
        return await self._audit.reconcile()

    async def queue_depth(self, overdue_after: float = 30.0) -> QueueDepth:
        """How many non-final orders are due for polling, due for longer than
        ``overdue_after`` seconds (nobody keeps up), being polled (leased by a worker),
        and scheduled for later."""
        if type(overdue_after) not in (int, float) or not 0 <= overdue_after <= MAX_OVERDUE:
            shown = f"{overdue_after!r:.40}"
            raise InvalidInput(f"overdue_after is seconds from 0 to {MAX_OVERDUE}, got {shown}")
        return await self._queue.depth(self._clock.now(), overdue_after)

    async def ledger_gauges(self) -> LedgerGauges:
        """How many holds are open and what they keep; how many accounts owe points and
        how many (reversals beyond the balance, not yet paid off)."""
        return await self._queue.ledger_gauges()

    async def migrate(self) -> SchemaState:
        """Bring the store's schema to this release's (what starting with ``migrate=True``
        does; idempotent, safe from many processes) and say where it stands."""
        await self._lifecycle.migrate()
        return await self._lifecycle.schema()

    async def schema(self) -> SchemaState:
        """Where the store's schema stands against this release's."""
        return await self._lifecycle.schema()
