"""The composition root: the one place that turns settings into adapters and use cases.

:func:`build` chooses the store, once, from the settings' database (``memory``,
``sqlite`` or ``postgresql``): each store is a dependency-injector container of its own
(``gophermart.adapters.stores.*.Store``) that provides every storage port. The main
:class:`Container` is written once for all of them, against ``store``:

* use cases come one per capability (``users``, ``orders``, ``accounts``,
  ``queries``, ``operations``, ``operators``), singletons handed the store's unit-of-work factory
  (``store.uow.provider``) and ports;
* everything with a life (the store's opening and closing, the argon2 thread pool, the
  accrual HTTP client, the upload listener, the worker task) is a ``Resource``: started
  on first use, stopped by ``shutdown_resources()``;
* hosts and tests swap parts with ``.override()``: the fast doubles of
  :mod:`gophermart.testing`, the server's Prometheus worker metrics.

It knows no web framework: the HTTP app is built by ``gophermart.entrypoints.http``
from the facade, like any other client.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from dependency_injector import containers, providers
from sqlalchemy.ext.asyncio import AsyncEngine

from gophermart.adapters.accrual_http import HttpAccrualClient
from gophermart.adapters.clock import SystemClock
from gophermart.adapters.event_wire import event_json
from gophermart.adapters.security import Argon2Hasher, JwtTokens
from gophermart.adapters.stores import memory, sqlite
from gophermart.adapters.webhook_http import HttpWebhookSender
from gophermart.application.accounts import Accounts
from gophermart.application.accrual_sync import AccrualSync, RetryPolicy
from gophermart.application.errors import MigrationFailed, StoreMisconfigured, StoreUnavailable
from gophermart.application.events import Events
from gophermart.application.idempotency import Idempotency
from gophermart.application.ledger import Corrections, Holds
from gophermart.application.operations import Operations
from gophermart.application.operators import Operators
from gophermart.application.orders import Orders
from gophermart.application.ports import (
    NoEventMetrics,
    NoWebhookMetrics,
    StoreLifecycle,
)
from gophermart.application.queries import Queries
from gophermart.application.throttling import LoginThrottle
from gophermart.application.users import Users
from gophermart.application.webhook_delivery import DeliveryConfig, WebhookDelivery
from gophermart.application.webhooks import Webhooks
from gophermart.domain.webhooks import DeliveryPolicy
from gophermart.extras import needs_extra
from gophermart.settings import ConfigError, Settings, refuse

if TYPE_CHECKING:
    import asyncpg

log = logging.getLogger("gophermart")


def build(
    settings: Settings,
    *,
    engine: AsyncEngine | None = None,
    pool: asyncpg.Pool | None = None,
) -> Container:
    """The container for ``settings``, on the store its database names. ``engine`` and
    ``pool`` are a host's own SQLAlchemy engine and asyncpg pool, borrowed by the store
    instead of opening its own."""
    return Container(settings=settings, store=_store(settings, engine, pool))


def _store(
    settings: Settings, engine: AsyncEngine | None, pool: asyncpg.Pool | None
) -> containers.DeclarativeContainer:
    """The one place that chooses the backend."""
    target, timeout = settings.database, settings.db_timeout
    if target.kind == "postgresql":
        try:  # imported only when chosen: asyncpg comes with the postgres extra
            from gophermart.adapters.stores import postgres
        except ModuleNotFoundError as exc:
            if exc.name != "asyncpg":
                raise
            refuse("DATABASE_URI", needs_extra("PostgreSQL", "postgres"))
        return postgres.Store(
            dsn=target.location,
            display=target.display,
            timeout=timeout,
            schema=settings.db_schema,
            engine=engine,
            pool=pool,
        )
    if pool is not None:
        refuse("DATABASE_URI", f"an asyncpg pool needs a PostgreSQL database, not {target.kind}")
    if target.kind == "sqlite":
        return sqlite.Store(path=target.location, timeout=timeout, engine=engine)
    return memory.Store()


class WakeUp:
    """In-process wake-up of the worker when an upload commits (the OrderEvents port)."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def order_uploaded(self) -> None:
        self.event.set()


# --- resources: what is started on first use and stopped at shutdown ---------------


async def _opened(lifecycle: StoreLifecycle) -> AsyncIterator[StoreLifecycle]:
    await lifecycle.open()
    try:
        yield lifecycle
    finally:
        await lifecycle.close()


def _argon2() -> Iterator[Argon2Hasher]:
    hasher = Argon2Hasher()
    try:
        yield hasher
    finally:
        hasher.close()


async def _accrual_client(settings: Settings) -> AsyncIterator[HttpAccrualClient]:
    address = settings.accrual_address
    if not address:
        refuse("ACCRUAL_SYSTEM_ADDRESS", "the accrual worker needs the system's URL")
    # A connection for every poll slot: a slot waiting for one would spend its deadline.
    client = HttpAccrualClient(
        address,
        timeout=settings.accrual_timeout,
        max_connections=settings.accrual_concurrency,
    )
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()


async def _webhook_sender(settings: Settings) -> AsyncIterator[HttpWebhookSender]:
    # A connection for every slot of an endpoint: a slot waiting for one would spend
    # its deadline.
    sender = HttpWebhookSender(settings.webhook_timeout, settings.webhook_concurrency)
    try:
        yield sender
    finally:
        await sender.aclose()


def _webhook_config(settings: Settings) -> DeliveryConfig:
    policy = DeliveryPolicy(
        retry_for=timedelta(seconds=settings.webhook_retry_for),
        base=settings.webhook_backoff,
        cap=settings.webhook_backoff_cap,
        deadline=settings.webhook_timeout,
    )
    # A retry comes due at most one idle look late: a second, or the backoff's base
    # when that is shorter (tests run with bases of tens of milliseconds).
    return DeliveryConfig(policy, settings.webhook_concurrency, idle=min(1.0, policy.base))


def _grace(settings: Settings, accrual_lease: float) -> float:
    """How long a stopping worker waits for what it holds: a poll's or a POST's lease."""
    return max(accrual_lease, _webhook_config(settings).policy.lease.total_seconds())


async def _listening(listener: Any, wakeup: WakeUp) -> AsyncIterator[None]:
    """Uploads committed by *other* processes wake this one (PostgreSQL's LISTEN)."""
    listener.start(wakeup.event)
    try:
        yield None
    finally:
        await listener.stop()


@dataclass(slots=True)
class WorkerTask:
    """The running accrual worker; ``stop`` asks it to finish the orders in hand."""

    task: asyncio.Task[None]
    stop: asyncio.Event


async def _worker(
    sync: Callable[[], Any],
    holds: Holds,
    wakeup: WakeUp,
    listening: Callable[[], Any],
    grace: float = 10.0,
    idempotency: Idempotency | None = None,
    events: Events | None = None,
    deliveries: Callable[[], Any] | None = None,
    webhooks: Webhooks | None = None,
) -> AsyncIterator[WorkerTask]:
    """The worker: expiring holds, pruning idempotency keys, sequencing and pruning
    events, delivering webhooks always, and polling the accrual system when there is
    one (without its address, orders stay NEW)."""
    stop = asyncio.Event()
    jobs = [holds.sweep_until(stop)]
    if idempotency is not None:
        jobs.append(idempotency.prune_until(stop))
    if events is not None:
        jobs.extend([events.sequence_until(stop), events.prune_until(stop)])
    if webhooks is not None:
        jobs.append(webhooks.prune_until(stop))
    if deliveries is not None:
        delivery: WebhookDelivery = await _ready(deliveries())
        jobs.append(delivery.run_until(stop))
    try:
        accrual_sync: AccrualSync | None = await _ready(sync())
    except ConfigError:  # no accrual system to poll (ACCRUAL_SYSTEM_ADDRESS unset)
        accrual_sync = None
    if accrual_sync is not None:
        await _ready(listening())
        jobs.append(accrual_sync.run_until(stop, wakeup.event))
    task = asyncio.create_task(_all(jobs), name="worker")
    try:
        yield WorkerTask(task, stop)
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, grace)
        except TimeoutError:
            log.warning("accrual worker did not stop within %.0fs; leases will expire", grace)


async def _ready(provided: Any) -> Any:
    """A provider's value: awaited when it has an async resource behind it."""
    return await provided if inspect.isawaitable(provided) else provided


async def _all(jobs: list[Coroutine[Any, Any, None]]) -> None:
    async with asyncio.TaskGroup() as group:
        for job in jobs:
            group.create_task(job)


def _token_secret(settings: Settings) -> str:
    if not settings.secret:
        refuse("GOPHERMART_SECRET", "no token secret (the facade settles it at start)")
    return settings.secret


class Container(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)
    #: The chosen store's container (:func:`build`): its ports, and its ``cold`` paths
    #: (the gate, the throttle's counters, the audit, the queue probe, the operators'
    #: keys). Typed ``Any``: the store container's attributes are only known once one
    #: is chosen.
    store: Any = providers.DependenciesContainer(cold=providers.DependenciesContainer())
    opened = providers.Resource(_opened, store.lifecycle)

    clock = providers.Singleton(SystemClock)
    hasher = providers.Resource(_argon2)
    tokens = providers.Singleton(
        JwtTokens,
        providers.Callable(_token_secret, settings),
        settings.provided.token_ttl,
        settings.provided.database_id,  # the key is bound to the database
    )
    # Login throttling's counters: the store's (shared by every process on SQL).
    throttle = providers.Singleton(LoginThrottle, store.cold.throttle_counters)
    wakeup = providers.Singleton(WakeUp)

    # --- use cases, one per capability ----------------------------------------------
    #: What the worker and the ledger report; the server overrides it with Prometheus's.
    event_metrics = providers.Singleton(NoEventMetrics)
    users = providers.Singleton(Users, store.uow.provider, hasher, tokens, throttle)
    orders = providers.Singleton(Orders, store.uow.provider, clock, wakeup)
    accounts = providers.Singleton(Accounts, store.uow.provider, clock)
    queries = providers.Singleton(Queries, store.read_model)
    holds = providers.Singleton(
        Holds, store.uow.provider, store.read_model, clock, metrics=event_metrics
    )
    corrections = providers.Singleton(Corrections, store.uow.provider, clock, metrics=event_metrics)
    operations = providers.Singleton(
        Operations,
        store.readiness,
        store.cold.audit,
        store.cold.queue_probe,
        store.lifecycle,
        clock,
    )
    operators = providers.Singleton(Operators, store.cold.operators, clock)
    #: Idempotency keys: the HTTP layer's claims and answers, the worker's pruning.
    idempotency = providers.Singleton(Idempotency, store.cold.idempotency_keys, clock)
    #: Webhook endpoints (the operators' verbs); also who still needs old events: the
    #: retention floor, the first event some live endpoint has not had recorded yet.
    webhooks = providers.Singleton(
        Webhooks, store.cold.webhooks, store.events, clock, settings.provided.events_retention
    )
    retention_floor = webhooks
    #: The feed of events: the library's ``events(after=...)``, the worker's upkeep.
    events = providers.Singleton(
        Events,
        store.events,
        store.events,
        clock,
        settings.provided.events_retention,
        floor=retention_floor,
        metrics=event_metrics,
    )

    # --- the accrual worker ---------------------------------------------------------
    accrual_client = providers.Resource(_accrual_client, settings)
    retry_policy = providers.Singleton(RetryPolicy.for_deadline, settings.provided.accrual_timeout)
    accrual_sync = providers.Singleton(
        AccrualSync,
        store.uow.provider,
        accrual_client,
        store.cold.gate,
        clock,
        retry_policy,
        concurrency=settings.provided.accrual_concurrency,
        metrics=event_metrics,
    )
    listening = providers.Resource(_listening, store.listener, wakeup)

    # --- webhooks -------------------------------------------------------------------
    #: What the delivery worker reports; the server overrides it with Prometheus's.
    webhook_metrics = providers.Singleton(NoWebhookMetrics)
    webhook_sender = providers.Resource(_webhook_sender, settings)
    webhook_delivery = providers.Singleton(
        WebhookDelivery,
        store.cold.webhooks,
        store.events,
        webhook_sender,
        clock,
        providers.Object(event_json),
        providers.Callable(_webhook_config, settings),
        metrics=webhook_metrics,
    )

    worker = providers.Resource(
        _worker,
        accrual_sync.provider,
        holds,
        wakeup,
        listening.provider,
        grace=providers.Callable(_grace, settings, retry_policy.provided.lease),
        idempotency=idempotency,
        events=events,
        deliveries=webhook_delivery.provider,
        webhooks=webhooks,
    )


async def settle(container: Container, *, migrate: bool = True) -> Settings:
    """Open the store (one clear error if it cannot be), migrate it if asked, and settle
    the token secret and the database id: the settings every process must agree on."""
    settings: Settings = container.settings()
    display = settings.database.display
    try:
        lifecycle: StoreLifecycle = await container.opened()  # type: ignore[misc]
    except StoreUnavailable as exc:
        refuse("DATABASE_URI", str(exc))
    if migrate:
        try:
            await lifecycle.migrate()
        except StoreMisconfigured as exc:
            refuse("GOPHERMART_DB_SCHEMA", str(exc))
        except (MigrationFailed, StoreUnavailable) as exc:
            refuse("DATABASE_URI", f"migrating {display} failed: {exc}")
        if settings.backend != "memory":
            log.info("database %s is ready", display)
    else:  # the operator migrates as a deployment step: refuse a database behind it
        try:
            schema = await lifecycle.schema()
        except StoreMisconfigured as exc:
            refuse("GOPHERMART_DB_SCHEMA", str(exc))
        except StoreUnavailable as exc:
            refuse("DATABASE_URI", str(exc))
        if not schema.is_current:
            refuse(
                "DATABASE_URI",
                f"{display} is {schema}: run `gophermart migrate` first",
            )
    # The operator's secret, else the one kept in the database (created by the first
    # process to ask, so every process of a deployment signs alike). The database's
    # identity, to which token keys are bound: a dropped and recreated database mints
    # a new one, and the old tokens die with it.
    secret = settings.secret or await lifecycle.stored_secret()
    database_id = settings.database_id or await lifecycle.stored_database_id()
    return replace(settings, secret=secret, database_id=database_id)


def migration_sql(settings: Settings) -> str:
    """The SQL the store's migrations run on an empty database (``migrate --sql``)."""
    if settings.backend == "memory":
        refuse("DATABASE_URI", "memory:// has no schema to migrate")
    from gophermart.adapters.stores.sql.migrate import upgrade_sql

    return upgrade_sql(settings.backend, settings.db_schema)


async def prepare(settings: Settings) -> Settings:
    """Before serving: check the database, migrate it, settle the token secret.

    Run once by the CLI before the server processes start, so they neither race to
    migrate nor disagree about the key. Returns the settings with ``secret`` and
    ``database_id`` filled in; any problem is a :class:`~gophermart.settings.ConfigError`.
    """
    container = build(settings)
    try:
        return await settle(container, migrate=settings.migrate)
    finally:
        shutdown = container.shutdown_resources()
        if shutdown is not None:
            await shutdown


__all__ = ["Container", "WakeUp", "WorkerTask", "build", "prepare", "settle"]
