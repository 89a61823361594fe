"""The cold paths both SQL stores run the same way, on SQLAlchemy Core over their
engines: the accrual gate, the login throttle's counters, the ledger audit, the
queue probe, the operators' keys and the webhooks (no shopper's request touches
them), and the idempotency keys (only a request that carries one). Each SQL store includes this
container as its ``cold`` part, with its own engines and guard."""

from __future__ import annotations

from dependency_injector import containers, providers
from sqlalchemy.ext.asyncio import AsyncEngine

from gophermart.adapters.stores.guard import DatabaseGuard, guarded
from gophermart.adapters.stores.sql.audit import SqlLedgerAudit
from gophermart.adapters.stores.sql.gate import SqlAccrualGate
from gophermart.adapters.stores.sql.idempotency import SqlIdempotencyKeys
from gophermart.adapters.stores.sql.operators import SqlOperatorKeys
from gophermart.adapters.stores.sql.probe import SqlQueueProbe
from gophermart.adapters.stores.sql.throttle import SqlThrottleCounters
from gophermart.adapters.stores.sql.webhooks import SqlWebhooks


class SqlColdPaths(containers.DeclarativeContainer):
    write = providers.Dependency(instance_of=AsyncEngine)
    read = providers.Dependency(instance_of=AsyncEngine)
    #: The audit's engine: no bound per statement (Database.long).
    long = providers.Dependency(instance_of=AsyncEngine)
    guard = providers.Dependency(instance_of=DatabaseGuard)

    # What requests and the worker use: behind the guard.
    gate = providers.Singleton(guarded, providers.Singleton(SqlAccrualGate, write), guard)
    throttle_counters = providers.Singleton(
        guarded, providers.Singleton(SqlThrottleCounters, write, read), guard
    )
    # Operators' tools: an audit may rightly run long, so it has no deadline, but a hung
    # database is noticed by probes meanwhile; the queue probe answers a scrape.
    audit = providers.Singleton(
        guarded, providers.Singleton(SqlLedgerAudit, long), guard, long=True
    )
    queue_probe = providers.Singleton(guarded, providers.Singleton(SqlQueueProbe, read), guard)
    # Operators' keys: each admin request reads one (behind the guard, like a request's).
    operators = providers.Singleton(
        guarded, providers.Singleton(SqlOperatorKeys, write, read), guard
    )
    # Idempotency keys: a write that carries one claims it and stores its answer.
    idempotency_keys = providers.Singleton(
        guarded, providers.Singleton(SqlIdempotencyKeys, write), guard
    )
    # Webhook endpoints and deliveries: the operators' routes and the delivery worker.
    webhooks = providers.Singleton(
        guarded, providers.Singleton(SqlWebhooks, write, read, guard), guard
    )
