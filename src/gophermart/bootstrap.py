"""The composition root: the one place that reads settings and builds adapters.

``Container`` wires the SQL adapters by default; tests override providers (for
example with the in-memory adapters) instead of constructing use cases by hand.
``Runtime`` owns the start-up and shutdown order of one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from functools import partial

from dependency_injector import containers, providers
from litestar import Litestar

from gophermart.adapters.accrual_http import HttpAccrualClient
from gophermart.adapters.clock import SystemClock
from gophermart.adapters.security import Argon2Hasher, JwtTokens
from gophermart.adapters.sql.audit import SqlLedgerAudit
from gophermart.adapters.sql.engine import Database
from gophermart.adapters.sql.gate import SqlAccrualGate
from gophermart.adapters.sql.listener import PgOrderListener
from gophermart.adapters.sql.migrate import migrate
from gophermart.adapters.sql.pg_pool import PgPool
from gophermart.adapters.sql.pg_read_model import PgReadModel
from gophermart.adapters.sql.pg_unit_of_work import PgUnitOfWork
from gophermart.adapters.sql.read_model import SqlReadModel
from gophermart.adapters.sql.secrets import stored_database_id, stored_token_secret
from gophermart.adapters.sql.throttle import SqlLoginThrottle
from gophermart.adapters.sql.unit_of_work import SqlUnitOfWork
from gophermart.adapters.sql.url import parse_database_uri
from gophermart.application.accounts import Withdraw
from gophermart.application.accrual_sync import AccrualSync
from gophermart.application.orders import UploadOrder
from gophermart.application.reconcile import ReconcileReport
from gophermart.application.users import LogIn, Register
from gophermart.entrypoints.http.app import Api, create_app
from gophermart.settings import ConfigError, Settings

log = logging.getLogger("gophermart")


class WakeUp:
    """In-process wake-up of the worker when an upload commits (the OrderEvents port)."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def order_uploaded(self) -> None:
        self.event.set()


def _uow_factory(
    database: Database, pool: PgPool | None
) -> partial[SqlUnitOfWork] | partial[PgUnitOfWork]:
    if pool is not None:
        return partial(PgUnitOfWork, pool)
    return partial(SqlUnitOfWork, database.write)


# PostgreSQL's hot paths go straight through asyncpg (pg_unit_of_work.py and
# pg_read_model.py); SQLite, and PostgreSQL's cold paths (migrations, the accrual gate,
# secrets, reconcile), through SQLAlchemy.


def _pg_pool(database: Database) -> PgPool | None:
    return PgPool(database.target.location) if database.is_postgres else None


def _read_model(database: Database, pool: PgPool | None) -> SqlReadModel | PgReadModel:
    return PgReadModel(pool) if pool is not None else SqlReadModel(database.read)


def _database(settings: Settings) -> Database:
    return Database(parse_database_uri(settings.database_uri))


class Container(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)

    database = providers.Singleton(_database, settings)
    clock = providers.Singleton(SystemClock)
    pg_pool = providers.Singleton(_pg_pool, database)
    uow = providers.Singleton(_uow_factory, database, pg_pool)
    read_model = providers.Singleton(_read_model, database, pg_pool)
    hasher = providers.Singleton(Argon2Hasher)
    tokens = providers.Singleton(
        JwtTokens,
        settings.provided.secret,
        settings.provided.token_ttl,
        settings.provided.database_id,
    )
    throttle = providers.Singleton(SqlLoginThrottle, database.provided.write)
    wakeup = providers.Singleton(WakeUp)

    register = providers.Singleton(Register, uow, hasher, tokens)
    log_in = providers.Singleton(LogIn, uow, hasher, tokens, throttle)
    upload_order = providers.Singleton(UploadOrder, uow, clock, wakeup)
    withdraw = providers.Singleton(Withdraw, uow, clock)

    accrual_client = providers.Singleton(HttpAccrualClient, settings.provided.accrual_address)
    gate = providers.Singleton(SqlAccrualGate, database.provided.write)
    accrual_sync = providers.Singleton(
        AccrualSync,
        uow,
        accrual_client,
        gate,
        clock,
        concurrency=settings.provided.accrual_concurrency,
    )


async def prepare(settings: Settings) -> Settings:
    """Before serving: check the database, migrate it, settle the token secret.

    Returns the settings with ``secret`` filled in (the operator's, or the one stored in
    the database) and ``database_id`` (stored in the database), so every process of the
    deployment signs with the same key, bound to this database. Any problem is a
    :class:`ConfigError`, printed as one line by the CLI.
    """
    database = _database(settings)
    try:
        await database.check()
        try:
            await migrate(database)
        except Exception as exc:
            raise ConfigError(
                f"DATABASE_URI: migrating {database.target.display} failed: {exc}"
            ) from None
        log.info("database %s is ready", database.target.display)
        secret = settings.secret or await stored_token_secret(database.write)
        database_id = await stored_database_id(database.write)
        return replace(settings, secret=secret, database_id=database_id)
    finally:
        await database.dispose()


async def reconcile(settings: Settings) -> ReconcileReport:
    """Audit the database named by ``settings`` (after migrating it, like any start)."""
    await prepare(settings)
    database = _database(settings)
    try:
        return await SqlLedgerAudit(database.read).reconcile()
    finally:
        await database.dispose()


class Runtime:
    """One process of the service: container, start-up, background worker, shutdown."""

    def __init__(self, settings: Settings, container: Container | None = None) -> None:
        if not settings.secret:
            raise ConfigError("GOPHERMART_SECRET: no token secret (run prepare() first)")
        self.settings = settings
        self.container = container or Container(settings=settings)
        self._stop = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._listener: PgOrderListener | None = None

    async def start(self, *, run_worker: bool) -> None:
        c = self.container
        database: Database = c.database()
        await database.check()
        if run_worker:
            if not self.settings.accrual_address:
                log.warning("ACCRUAL_SYSTEM_ADDRESS is not set: orders stay NEW until it is")
                return
            wakeup = c.wakeup()
            if database.is_postgres:
                self._listener = PgOrderListener(database.target.location, wakeup.event)
                self._listener.start()
            sync: AccrualSync = c.accrual_sync()
            self._worker = asyncio.create_task(
                sync.run_until(self._stop, wakeup.event), name="accrual-sync"
            )

    async def stop(self, grace: float = 10.0) -> None:
        """Let the worker finish the orders it is applying, then release everything."""
        self._stop.set()
        if self._worker is not None:
            try:
                await asyncio.wait_for(self._worker, grace)
            except TimeoutError:
                log.warning("accrual worker did not stop within %.0fs; leases will expire", grace)
        if self._listener is not None:
            await self._listener.stop()
        c = self.container
        if self.settings.accrual_address:
            with contextlib.suppress(Exception):
                await c.accrual_client().aclose()
        c.hasher().close()
        pool = c.pg_pool()
        if pool is not None:
            await pool.close()
        await c.database().dispose()

    @contextlib.asynccontextmanager
    async def running(self, *, run_worker: bool) -> AsyncIterator[Runtime]:
        await self.start(run_worker=run_worker)
        try:
            yield self
        finally:
            await self.stop()

    async def wait_stopped(self) -> None:
        await self._stop.wait()

    def request_stop(self) -> None:
        self._stop.set()


def _settle_garbage_collector() -> None:
    """Move everything alive after start-up (modules, the app, pools) out of the GC's
    sight, and collect young objects less eagerly: full collections walking those
    long-lived objects were the server's worst latency spikes (docs/performance.md)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def api_of(container: Container) -> Api:
    """The HTTP layer's view of the container."""
    settings: Settings = container.settings()
    return Api(
        register=container.register(),
        log_in=container.log_in(),
        upload_order=container.upload_order(),
        withdraw=container.withdraw(),
        read_model=container.read_model(),
        tokens=container.tokens(),
        token_ttl_seconds=int(settings.token_ttl.total_seconds()),
        cookie_secure=settings.cookie_secure,
    )


def http_app(settings: Settings, container: Container | None = None) -> Litestar:
    """The ASGI app of one server process, with the runtime in its lifespan."""
    runtime = Runtime(settings, container)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Litestar) -> AsyncIterator[None]:
        async with runtime.running(run_worker=settings.run_worker):
            _settle_garbage_collector()
            yield

    app = create_app(api_of(runtime.container), lifespan=[lifespan])
    app.state.runtime = runtime
    return app
