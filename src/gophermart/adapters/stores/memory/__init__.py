"""The ``memory://`` store: every storage port in one process's memory.

A real backend for one process (a host's tests, a demo, a shop that keeps nothing):
what it lacks is durability, not rules. The test doubles that *do* bend the rules
(a plain-text "hasher", readable tokens, a scripted accrual system) live in
:mod:`gophermart.testing`, out of production's reach.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from dependency_injector import containers, providers

from gophermart.adapters.stores import NoListener
from gophermart.adapters.stores.memory.events import MemoryEventFeed
from gophermart.adapters.stores.memory.gate import MemoryGate
from gophermart.adapters.stores.memory.idempotency import MemoryIdempotencyKeys
from gophermart.adapters.stores.memory.operators import MemoryOperatorKeys
from gophermart.adapters.stores.memory.reads import (
    MemoryLedgerAudit,
    MemoryQueueProbe,
    MemoryReadModel,
)
from gophermart.adapters.stores.memory.state import MemoryDatabase
from gophermart.adapters.stores.memory.throttle import MemoryThrottleCounters
from gophermart.adapters.stores.memory.unit_of_work import memory_unit_of_work
from gophermart.adapters.stores.memory.webhooks import MemoryWebhooks
from gophermart.application.ports import PoolStats, SchemaState
from gophermart.application.readiness import Readiness

__all__ = ["MemoryDatabase", "Store"]


class MemoryLifecycle:
    """Nothing to open, migrate or close; the secret and the identity live as long as
    the store: a fresh store is a fresh database, whose tokens no other one accepts."""

    def __init__(self) -> None:
        self._secret = secrets.token_urlsafe(48)
        self._database_id = secrets.token_hex(16)

    async def open(self) -> None:
        return None

    async def migrate(self) -> None:
        return None

    async def schema(self) -> SchemaState:
        return SchemaState("memory", "memory")

    async def stored_secret(self) -> str:
        return self._secret

    async def stored_database_id(self) -> str:
        return self._database_id

    def pool_stats(self) -> Sequence[PoolStats]:
        return ()

    async def close(self) -> None:
        return None


class AlwaysReady:
    async def __call__(self) -> Readiness:
        return Readiness(True, {"database": "ok (in memory)"})


class ColdPaths(containers.DeclarativeContainer):
    """What no shopper's request touches: the gate, the throttle's counters, the
    audit, the queue probe, the operators' keys, the idempotency keys, the webhooks
    (stores/sql/cold.py is the SQL stores')."""

    database = providers.Dependency(instance_of=MemoryDatabase)
    gate = providers.Singleton(MemoryGate)
    throttle_counters = providers.Singleton(MemoryThrottleCounters)
    audit = providers.Singleton(MemoryLedgerAudit, database)
    queue_probe = providers.Singleton(MemoryQueueProbe, database)
    operators = providers.Singleton(MemoryOperatorKeys)
    idempotency_keys = providers.Singleton(MemoryIdempotencyKeys)
    webhooks = providers.Singleton(MemoryWebhooks)


class Store(containers.DeclarativeContainer):
    """Every port of the in-memory store. Never unavailable, so nothing is guarded."""

    database = providers.Singleton(MemoryDatabase)
    uow = providers.Factory(memory_unit_of_work, database)
    read_model = providers.Singleton(MemoryReadModel, database)
    #: The feed of events (EventFeed) and its upkeep (EventUpkeep).
    events = providers.Singleton(MemoryEventFeed, database)
    cold = providers.Container(ColdPaths, database=database)
    readiness = providers.Singleton(AlwaysReady)
    listener = providers.Singleton(NoListener)
    lifecycle = providers.Singleton(MemoryLifecycle)
