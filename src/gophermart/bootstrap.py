"""The composition root: the one place that turns settings into adapters and use cases.

:class:`Container` is a dependency-injector container used as intended:

* the backend (``memory``, ``sqlite`` or ``postgresql``) is chosen by a ``Selector`` per
  port, so only the chosen backend's adapters are ever built;
* units of work come from a ``Factory`` (a new one per use, ``uow.provider`` is what use
  cases receive);
* everything with a life (engines and pools, the argon2 thread pool, the accrual HTTP
  client, the LISTEN connection, the worker task) is a ``Resource``: the container
  starts it on first use and stops it in ``shutdown_resources()``;
* hosts and tests swap parts with ``.override()``: a borrowed engine or pool
  (:mod:`gophermart.facade`), or the fast doubles of :mod:`gophermart.testing`.

It knows no web framework: the HTTP app is built by ``gophermart.entrypoints.http``
from the facade, like any other client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from typing import Literal

from dependency_injector import containers, providers

from gophermart.adapters.accrual_http import HttpAccrualClient
from gophermart.adapters.clock import SystemClock
from gophermart.adapters.memory import (
    MemoryGate,
    MemoryLedgerAudit,
    MemoryLoginThrottle,
    MemoryQueueProbe,
    MemoryReadModel,
    MemoryStore,
    MemoryUnitOfWork,
)
from gophermart.adapters.security import Argon2Hasher, JwtTokens
from gophermart.adapters.sql.audit import SqlLedgerAudit
from gophermart.adapters.sql.availability import (
    DatabaseGuard,
    GuardedEngine,
    GuardedReadModel,
    GuardedUnitOfWork,
)
from gophermart.adapters.sql.engine import Database
from gophermart.adapters.sql.gate import SqlAccrualGate
from gophermart.adapters.sql.listener import PgOrderListener
from gophermart.adapters.sql.migrate import migrate
from gophermart.adapters.sql.pg_group_commit import PgGroupCommit
from gophermart.adapters.sql.pg_pool import PgPool
from gophermart.adapters.sql.pg_read_model import PgReadModel
from gophermart.adapters.sql.pg_unit_of_work import PgUnitOfWork
from gophermart.adapters.sql.probe import SqlQueueProbe
from gophermart.adapters.sql.read_model import SqlReadModel
from gophermart.adapters.sql.readiness import SqlReadiness
from gophermart.adapters.sql.secrets import stored_database_id, stored_token_secret
from gophermart.adapters.sql.throttle import SqlLoginThrottle
from gophermart.adapters.sql.unit_of_work import SqlUnitOfWork
from gophermart.adapters.sql.url import parse_database_uri
from gophermart.application.accounts import Withdraw
from gophermart.application.accrual_sync import AccrualSync, RetryPolicy
from gophermart.application.accruals import RecordAccrual
from gophermart.application.orders import UploadOrder
from gophermart.application.ports import NoWorkerMetrics
from gophermart.application.queries import ListOrders, ListWithdrawals, ShowBalance
from gophermart.application.readiness import Readiness
from gophermart.application.users import LogIn, Register
from gophermart.settings import ConfigError, Settings

log = logging.getLogger("gophermart")

Backend = Literal["memory", "sqlite", "postgresql"]

#: The database URI of the in-memory backend (nothing is kept after the process ends).
MEMORY_URI = "memory://"


def backend_of(settings: Settings) -> Backend:
    if settings.database_uri.strip().lower().startswith("memory:"):
        return "memory"
    return parse_database_uri(settings.database_uri).kind


class WakeUp:
    """In-process wake-up of the worker when an upload commits (the OrderEvents port)."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def order_uploaded(self) -> None:
        self.event.set()


# --- resources: what is started on first use and stopped at shutdown ---------------


def _database(settings: Settings) -> Database:
    """Every wait bounded by ``db_timeout`` (migrations use :meth:`Database.unbounded`)."""
    return Database(parse_database_uri(settings.database_uri), timeout=settings.db_timeout)


def _pg_pool(database: Database, settings: Settings) -> PgPool:
    return PgPool(database.target.location, timeout=settings.db_timeout)


def _guard(settings: Settings, backend: Backend) -> DatabaseGuard:
    """One per process. SQLite's waits are bounded by its busy and pool timeouts instead
    of a deadline: cancelling an aiosqlite call would only leave its thread running on."""
    return DatabaseGuard(settings.db_timeout if backend == "postgresql" else None)


#: Batches of withdrawals written at the same time per process (pg_group_commit.py).
PG_COMMIT_CONNECTIONS = 2


def _pg_commit_pool(database: Database, settings: Settings) -> PgPool:
    """The group commit's own connections: a unit of work waiting for its batch holds
    one of the main pool, so sharing it could leave a batch no connection to run on."""
    size = PG_COMMIT_CONNECTIONS  # all opened at once: none to open under load
    return PgPool(
        database.target.location, min_size=size, max_size=size, timeout=settings.db_timeout
    )


async def _open_memory(store: MemoryStore) -> AsyncIterator[MemoryStore]:
    yield store


async def _open_sql(
    database: Database, guard: DatabaseGuard, *pools: PgPool
) -> AsyncIterator[Database]:
    """Check the database answers (one clear line if not); release pools at shutdown."""
    await database.check()
    try:
        yield database
    finally:
        # With the database known to be down, a polite goodbye would only wait for it.
        polite = not guard.is_down
        for pool in pools:
            await pool.close(grace=2.0 if polite else 0.0)
        await database.dispose(close=polite)


class _AlwaysReady:
    async def __call__(self) -> Readiness:
        return Readiness(True, {"database": "ok (in memory)"})


def _argon2() -> Iterator[Argon2Hasher]:
    hasher = Argon2Hasher()
    try:
        yield hasher
    finally:
        hasher.close()


async def _accrual_client(settings: Settings) -> AsyncIterator[HttpAccrualClient]:
    address = settings.accrual_address
    if not address:
        raise ConfigError("ACCRUAL_SYSTEM_ADDRESS: the accrual worker needs the system's URL")
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


async def _no_listener(_wakeup: WakeUp) -> AsyncIterator[None]:
    """In one process the upload use case sets the event itself."""
    yield None


async def _pg_listener(
    database: Database, wakeup: WakeUp, settings: Settings
) -> AsyncIterator[PgOrderListener]:
    """Uploads committed by *other* processes wake this one through LISTEN/NOTIFY."""
    listener = PgOrderListener(database.target.location, wakeup.event, timeout=settings.db_timeout)
    listener.start()
    try:
        yield listener
    finally:
        await listener.stop()


@dataclass(slots=True)
class WorkerTask:
    """The running accrual worker; ``stop`` asks it to finish the orders in hand."""

    task: asyncio.Task[None]
    stop: asyncio.Event


async def _worker(
    sync: AccrualSync, wakeup: WakeUp, _listening: object, grace: float = 10.0
) -> AsyncIterator[WorkerTask]:
    stop = asyncio.Event()
    task = asyncio.create_task(sync.run_until(stop, wakeup.event), name="accrual-sync")
    try:
        yield WorkerTask(task, stop)
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, grace)
        except TimeoutError:
            log.warning("accrual worker did not stop within %.0fs; leases will expire", grace)


def _token_secret(settings: Settings) -> str:
    if not settings.secret:
        raise ConfigError("GOPHERMART_SECRET: no token secret (the facade settles it at start)")
    return settings.secret


class Container(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)
    backend = providers.Singleton(backend_of, settings)

    clock = providers.Singleton(SystemClock)

    # --- the store, per backend -------------------------------------------------
    memory_store = providers.Singleton(MemoryStore)
    database = providers.Singleton(_database, settings)  # SQLite / PostgreSQL engines
    pg_pool = providers.Singleton(_pg_pool, database, settings)  # PostgreSQL's hot paths
    pg_commit_pool = providers.Singleton(_pg_commit_pool, database, settings)
    group_commit = providers.Singleton(
        PgGroupCommit, pg_commit_pool, read_pool=pg_pool, connections=PG_COMMIT_CONNECTIONS
    )
    # Database outages: a deadline per operation, 503 instead of 500, logged once
    # (adapters/sql/availability.py). The store's ports below go through it.
    guard = providers.Singleton(_guard, settings, backend)
    guarded_write = providers.Singleton(GuardedEngine, database.provided.write, guard)

    store = providers.Selector(
        backend,
        memory=providers.Resource(_open_memory, memory_store),
        sqlite=providers.Resource(_open_sql, database, guard),
        postgresql=providers.Resource(_open_sql, database, guard, pg_pool, pg_commit_pool),
    )
    uow = providers.Selector(
        backend,
        memory=providers.Factory(MemoryUnitOfWork, memory_store),
        sqlite=providers.Factory(
            GuardedUnitOfWork, providers.Factory(SqlUnitOfWork, database.provided.write), guard
        ),
        postgresql=providers.Factory(
            GuardedUnitOfWork, providers.Factory(PgUnitOfWork, pg_pool, group_commit), guard
        ),
    )
    read_model = providers.Selector(
        backend,
        memory=providers.Singleton(MemoryReadModel, memory_store),
        sqlite=providers.Singleton(
            GuardedReadModel, providers.Singleton(SqlReadModel, database.provided.read), guard
        ),
        postgresql=providers.Singleton(
            GuardedReadModel, providers.Singleton(PgReadModel, pg_pool), guard
        ),
    )
    gate = providers.Selector(
        backend,
        memory=providers.Singleton(MemoryGate),
        sqlite=providers.Singleton(SqlAccrualGate, guarded_write),
        postgresql=providers.Singleton(SqlAccrualGate, guarded_write),
    )
    readiness = providers.Selector(  # GET /readyz
        backend,
        memory=providers.Singleton(_AlwaysReady),
        sqlite=providers.Singleton(SqlReadiness, database, None, settings.provided.db_timeout),
        postgresql=providers.Singleton(
            SqlReadiness, database, pg_pool, settings.provided.db_timeout
        ),
    )
    queue_probe = providers.Selector(
        backend,
        memory=providers.Singleton(MemoryQueueProbe, memory_store),
        sqlite=providers.Singleton(SqlQueueProbe, database.provided.read),
        postgresql=providers.Singleton(SqlQueueProbe, database.provided.read),
    )
    audit = providers.Selector(
        backend,
        memory=providers.Singleton(MemoryLedgerAudit, memory_store),
        sqlite=providers.Singleton(SqlLedgerAudit, database.provided.read),
        postgresql=providers.Singleton(SqlLedgerAudit, database.provided.read),
    )

    # --- security -----------------------------------------------------------------
    hasher = providers.Resource(_argon2)
    tokens = providers.Singleton(
        JwtTokens,
        providers.Callable(_token_secret, settings),
        settings.provided.token_ttl,
        settings.provided.database_id,  # the key is bound to the database (finding 5)
    )
    # Login throttling's counters: shared by every process through the database.
    throttle = providers.Selector(
        backend,
        memory=providers.Singleton(MemoryLoginThrottle),
        sqlite=providers.Singleton(SqlLoginThrottle, guarded_write),
        postgresql=providers.Singleton(SqlLoginThrottle, guarded_write),
    )
    wakeup = providers.Singleton(WakeUp)

    # --- use cases ----------------------------------------------------------------
    register = providers.Singleton(Register, uow.provider, hasher, tokens)
    log_in = providers.Singleton(LogIn, uow.provider, hasher, tokens, throttle)
    upload_order = providers.Singleton(UploadOrder, uow.provider, clock, wakeup)
    withdraw = providers.Singleton(Withdraw, uow.provider, clock)
    show_balance = providers.Singleton(ShowBalance, read_model)
    list_orders = providers.Singleton(ListOrders, read_model)
    list_withdrawals = providers.Singleton(ListWithdrawals, read_model)
    record_accrual = providers.Singleton(RecordAccrual, uow.provider, clock)

    # --- the accrual worker ---------------------------------------------------------
    #: What the worker reports; the server overrides it with Prometheus counters.
    worker_metrics = providers.Singleton(NoWorkerMetrics)
    accrual_client = providers.Resource(_accrual_client, settings)
    retry_policy = providers.Singleton(RetryPolicy.for_deadline, settings.provided.accrual_timeout)
    accrual_sync = providers.Singleton(
        AccrualSync,
        uow.provider,
        accrual_client,
        gate,
        clock,
        retry_policy,
        concurrency=settings.provided.accrual_concurrency,
        metrics=worker_metrics,
    )
    listener = providers.Selector(
        backend,
        memory=providers.Resource(_no_listener, wakeup),
        sqlite=providers.Resource(_no_listener, wakeup),
        postgresql=providers.Resource(_pg_listener, database, wakeup, settings),
    )
    worker = providers.Resource(
        _worker, accrual_sync, wakeup, listener, grace=retry_policy.provided.lease
    )


async def migrate_database(container: Container) -> None:
    """Bring the selected SQL database to the newest schema (nothing to do in memory)."""
    if container.backend() == "memory":
        return
    database: Database = container.database()
    unbounded = database.unbounded()  # a migration may wait for another process's
    try:
        await migrate(unbounded)
    except Exception as exc:
        raise ConfigError(
            f"DATABASE_URI: migrating {database.target.display} failed: {exc}"
        ) from None
    finally:
        if unbounded is not database:
            await unbounded.dispose()
    log.info("database %s is ready", database.target.display)


async def settle_secret(container: Container) -> str:
    """The operator's secret, else the one kept in the database (created by the first
    process to ask, so every process of a deployment signs alike), else, in memory, a
    fresh one for this process."""
    settings: Settings = container.settings()
    if settings.secret:
        return settings.secret
    if container.backend() == "memory":
        return secrets.token_urlsafe(48)
    database: Database = container.database()
    return await stored_token_secret(database.write)


async def settle_database_id(container: Container) -> str:
    """The database's identity, to which token keys are bound
    (:func:`~gophermart.adapters.security.signing_key`): kept in the database (created
    by the first process to ask), so a dropped and recreated database mints a new one
    and the old tokens die with it; in memory, a fresh one per store."""
    settings: Settings = container.settings()
    if settings.database_id:
        return settings.database_id
    if container.backend() == "memory":
        return secrets.token_hex(16)
    database: Database = container.database()
    return await stored_database_id(database.write)


async def settle(container: Container, *, migrate: bool = True) -> Settings:
    """Open the store (one clear error if it cannot be), migrate it if asked, and settle
    the token secret and the database id: the settings every process must agree on."""
    await container.store()
    if migrate:
        await migrate_database(container)
    secret = await settle_secret(container)
    database_id = await settle_database_id(container)
    settings: Settings = container.settings()
    return replace(settings, secret=secret, database_id=database_id)


async def prepare(settings: Settings) -> Settings:
    """Before serving: check the database, migrate it, settle the token secret.

    Run once by the CLI before the server processes start, so they neither race to
    migrate nor disagree about the key. Returns the settings with ``secret`` and
    ``database_id`` filled in; any problem is a :class:`ConfigError`, printed as one
    line by the CLI.
    """
    container = Container(settings=settings)
    try:
        return await settle(container)
    finally:
        shutdown = container.shutdown_resources()
        if shutdown is not None:
            await shutdown
