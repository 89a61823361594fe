"""The PostgreSQL store: every storage port on PostgreSQL, and the speed machinery that
only PostgreSQL gets (asyncpg pools, coalesced reads, group commit, LISTEN/NOTIFY).

The hot paths (units of work, the read model) run on asyncpg's pool (pool.py) with the
shared statements compiled once for it (runner.py); the cold paths (the accrual gate,
the login throttle, reconcile, the queue probe, migrations) on SQLAlchemy Core through
a small engine (engine.py). docs/performance.md says why each piece is here.
"""

from __future__ import annotations

from functools import partial

import asyncpg
from dependency_injector import containers, providers
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gophermart.adapters.stores.guard import DatabaseGuard, guarded, guarded_unit_of_work
from gophermart.adapters.stores.postgres.engine import borrowed_postgres, postgres_database
from gophermart.adapters.stores.postgres.events import PgEventFeed
from gophermart.adapters.stores.postgres.group_commit import PgGroupCommit
from gophermart.adapters.stores.postgres.listener import PgOrderListener
from gophermart.adapters.stores.postgres.pool import PgPool
from gophermart.adapters.stores.postgres.reads import PgReads
from gophermart.adapters.stores.postgres.runner import PgRunner
from gophermart.adapters.stores.postgres.statements import orders_channel
from gophermart.adapters.stores.postgres.unit_of_work import PgUnitOfWork, within
from gophermart.adapters.stores.postgres.webhooks import PgWebhooks
from gophermart.adapters.stores.sql.cold import SqlColdPaths
from gophermart.adapters.stores.sql.engine import Database
from gophermart.adapters.stores.sql.lifecycle import SqlLifecycle
from gophermart.adapters.stores.sql.readiness import SqlReadiness
from gophermart.adapters.stores.sql.statements import REVISION
from gophermart.application.errors import StoreMisconfigured

__all__ = ["Store"]

#: Batches of withdrawals written at the same time per process (group_commit.py).
COMMIT_CONNECTIONS = 2
#: How long a batch waits for an account row before it passes the row by (seconds):
#: another batch holds a row for a statement and its flush (milliseconds); longer is a
#: row held elsewhere (group_commit.py).
COMMIT_LOCK_TIMEOUT = 0.25


def _database(
    dsn: str, display: str, timeout: float, schema: str | None, engine: AsyncEngine | None
) -> Database:
    if engine is not None:
        return borrowed_postgres(engine, display, schema)
    return postgres_database(dsn, display, timeout, schema)


def _hot_pool(
    dsn: str, timeout: float, schema: str | None, borrowed: asyncpg.Pool | None
) -> PgPool:
    if borrowed is not None:
        return PgPool(pool=borrowed, timeout=timeout)
    return PgPool(dsn, timeout=timeout, schema=schema)


def _commit_pool(dsn: str, timeout: float, schema: str | None) -> PgPool:
    """The group commit's own connections: a unit of work waiting for its batch holds
    one of the hot pool's, so sharing it could leave a batch no connection to run on.
    All opened at once: none to open under load."""
    size = COMMIT_CONNECTIONS + 2  # and one each for the holds' placements and captures
    return PgPool(
        dsn,
        min_size=size,
        max_size=size,
        timeout=timeout,
        schema=schema,
        name="asyncpg_commit",
        lock_timeout=COMMIT_LOCK_TIMEOUT,
    )


#: The webhook delivery worker's connections per process (stores/postgres/webhooks.py):
#: the streams' settles, the queue's claims, and one group commit of outcomes.
WEBHOOK_CONNECTIONS = 3


def _webhook_pool(dsn: str, timeout: float, schema: str | None) -> PgPool:
    """The delivery worker's own few connections: never the API's (the hot pool), so
    a backlog of deliveries cannot make a request wait for a connection. Opened by the
    first delivery (a process that delivers nothing never opens it).

    Its statements are planned for their parameters on every run (``custom_plans``):
    after five runs PostgreSQL may keep a prepared statement's generic plan, and the
    outcomes' (webhooks.RECORD) then found each user's next delivery through the
    ``due`` index, sorting the endpoint's backlog per user: 85-124 ms per group commit
    at 45,000 pending, against 0.6-2 ms planned for the values (docs/performance.md,
    "Webhooks"). A plan costs well under a millisecond, once per batch.

    Its commits do not wait for the disk (``async_commit``): what it writes is the
    record of deliveries, and losing the last few to a crash of PostgreSQL only sends
    them again (at least once, as after a worker's crash); the events themselves were
    committed durably by the API's transactions. Waiting would add a flush per settle
    and per group commit to the ones the API's writes queue behind."""
    return PgPool(
        dsn,
        min_size=1,
        max_size=WEBHOOK_CONNECTIONS,
        timeout=timeout,
        schema=schema,
        name="asyncpg_webhooks",
        custom_plans=True,
        async_commit=True,
    )


async def answers(dsn: str, timeout: float) -> None:  # noqa: ASYNC109 - asyncpg's own
    """The guard's probe: a fresh connection (not the pool's, which stuck statements may
    hold) answers ``SELECT 1`` (no table named: no schema needed)."""
    conn = await asyncpg.connect(dsn, timeout=timeout)
    try:
        await conn.fetchval("SELECT 1", timeout=timeout)
    finally:
        conn.terminate()


async def revision_on_pool(pool: PgPool) -> str | None:
    """The database's Alembic revision through the hot pool (``None``: never migrated)."""
    async with pool.connection() as conn:
        try:
            value = await PgRunner(conn).fetchval(REVISION, {})
        except asyncpg.UndefinedTableError:
            return None
    return str(value) if value is not None else None


async def agree(database: Database, pool: PgPool) -> None:
    """The hot paths (asyncpg, compiled once, unqualified names) find our tables where
    the cold paths (SQLAlchemy) and the migrations put them: a host's engine or pool
    with another ``search_path`` would otherwise split our data across two schemas."""
    hot = await pool.current_schema()
    if database.schema is not None:
        if hot != database.schema:
            raise StoreMisconfigured(
                f"the asyncpg pool's connections find tables in schema {hot!r}, not "
                f"{database.schema!r}: create it with "
                f"server_settings={{'search_path': {database.schema!r}}}"
            )
        return
    async with database.read.connect() as conn:
        cold = await conn.scalar(select(func.current_schema()))
    if cold != hot:
        raise StoreMisconfigured(
            f"the engine's connections find tables in schema {cold!r}, the asyncpg "
            f"pool's in {hot!r}: set the db_schema option to the schema meant"
        )


class Store(containers.DeclarativeContainer):
    """Every port on PostgreSQL, behind one guard: each operation under
    ``GOPHERMART_DB_TIMEOUT``, an outage answered at once while it lasts (guard.py).

    ``engine`` and ``pool``: a host's SQLAlchemy engine and asyncpg pool, borrowed
    instead of opening our own (never closed here)."""

    dsn = providers.Dependency(instance_of=str)
    display = providers.Dependency(instance_of=str)
    timeout = providers.Dependency(instance_of=float)
    #: Our tables' schema (``None``: the connections' own ``search_path``).
    schema: providers.Dependency[str | None] = providers.Dependency(default=None)
    engine: providers.Dependency[AsyncEngine | None] = providers.Dependency(default=None)
    pool: providers.Dependency[asyncpg.Pool | None] = providers.Dependency(default=None)

    #: Uploads are announced on the channel of our schema (channels are per database).
    channel = providers.Callable(orders_channel, schema)

    database = providers.Singleton(_database, dsn, display, timeout, schema, engine)
    hot_pool = providers.Singleton(_hot_pool, dsn, timeout, schema, pool)
    commit_pool = providers.Singleton(_commit_pool, dsn, timeout, schema)
    group_commit = providers.Singleton(
        PgGroupCommit, commit_pool, read_pool=hot_pool, connections=COMMIT_CONNECTIONS
    )
    guard = providers.Singleton(
        DatabaseGuard, timeout, probe=providers.Callable(partial, answers, dsn, timeout)
    )

    uow = providers.Factory(
        guarded_unit_of_work,
        providers.Factory(PgUnitOfWork, hot_pool, group_commit, channel).provider,
        providers.Callable(partial, within, schema=schema),
        guard,
    )
    read_model = providers.Singleton(guarded, providers.Singleton(PgReads, hot_pool), guard)
    #: The feed (EventFeed, EventUpkeep): the sequencer's runs and a LISTEN connection
    #: of its own, opened by the first wait and closed with the store.
    event_feed = providers.Singleton(
        PgEventFeed,
        database.provided.write,
        database.provided.read,
        dsn,
        schema,
        timeout=timeout,
    )
    events = providers.Singleton(guarded, event_feed, guard)
    webhook_pool = providers.Singleton(_webhook_pool, dsn, timeout, schema)
    #: The shared cold paths, but for the webhooks: the delivery worker's statements
    #: set-based on asyncpg (stores/postgres/webhooks.py).
    cold = providers.Container(
        SqlColdPaths,
        write=database.provided.write,
        read=database.provided.read,
        long=database.provided.long,
        guard=guard,
        webhooks=providers.Singleton(
            guarded,
            providers.Singleton(
                PgWebhooks, database.provided.write, database.provided.read, guard, webhook_pool
            ),
            guard,
        ),
    )
    readiness = providers.Singleton(
        SqlReadiness, providers.Callable(partial, revision_on_pool, hot_pool), timeout
    )
    listener = providers.Singleton(PgOrderListener, dsn, channel, timeout=timeout)
    lifecycle = providers.Singleton(
        SqlLifecycle,
        database,
        guard,
        providers.List(hot_pool, commit_pool, webhook_pool, event_feed),
        providers.Callable(partial, agree, database, hot_pool),
    )
