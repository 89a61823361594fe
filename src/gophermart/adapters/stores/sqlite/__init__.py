"""The SQLite store: every storage port on one SQLite file (the embedded default).

Units of work run on the single-connection write engine (``BEGIN IMMEDIATE``: writers
queue instead of failing on a lock upgrade), reads on a WAL read engine whose
connections read concurrently (engine.py); statements are the shared ones
(stores/sql), run through SQLAlchemy Core.
"""

from __future__ import annotations

from functools import partial

from dependency_injector import containers, providers
from sqlalchemy.ext.asyncio import AsyncEngine

from gophermart.adapters.stores import NoListener
from gophermart.adapters.stores.guard import DatabaseGuard, guarded, guarded_unit_of_work
from gophermart.adapters.stores.sql.cold import SqlColdPaths
from gophermart.adapters.stores.sql.engine import Database
from gophermart.adapters.stores.sql.events import SqlEventFeed
from gophermart.adapters.stores.sql.lifecycle import SqlLifecycle
from gophermart.adapters.stores.sql.readiness import SqlReadiness, revision_on_engine
from gophermart.adapters.stores.sql.reads import SqlReads
from gophermart.adapters.stores.sqlite.engine import borrowed_sqlite, sqlite_database
from gophermart.adapters.stores.sqlite.unit_of_work import SqliteUnitOfWork, within

__all__ = ["Store"]


def _database(path: str, timeout: float, engine: AsyncEngine | None) -> Database:
    return borrowed_sqlite(engine) if engine is not None else sqlite_database(path, timeout)


class Store(containers.DeclarativeContainer):
    """Every port on SQLite, behind one guard. SQLite's waits are bounded by its busy
    and pool timeouts (``GOPHERMART_DB_TIMEOUT``) rather than a deadline: cancelling an
    aiosqlite call would only leave its thread running on.

    ``engine``: a host's SQLAlchemy engine, borrowed instead of opening our own."""

    path = providers.Dependency(instance_of=str)
    timeout = providers.Dependency(instance_of=float)
    engine: providers.Dependency[AsyncEngine | None] = providers.Dependency(default=None)

    database = providers.Singleton(_database, path, timeout, engine)
    guard = providers.Singleton(DatabaseGuard, None)

    uow = providers.Factory(
        guarded_unit_of_work,
        providers.Factory(SqliteUnitOfWork, database.provided.write).provider,
        providers.Object(within),
        guard,
    )
    read_model = providers.Singleton(
        guarded, providers.Singleton(SqlReads, database.provided.read), guard
    )
    #: The feed of events (EventFeed) and its upkeep (EventUpkeep): polled for news.
    events = providers.Singleton(
        guarded,
        providers.Singleton(SqlEventFeed, database.provided.write, database.provided.read),
        guard,
    )
    cold = providers.Container(
        SqlColdPaths,
        write=database.provided.write,
        read=database.provided.read,
        long=database.provided.long,
        guard=guard,
    )
    readiness = providers.Singleton(
        SqlReadiness,
        providers.Callable(partial, revision_on_engine, database.provided.read),
        timeout,
    )
    listener = providers.Singleton(NoListener)
    lifecycle = providers.Singleton(SqlLifecycle, database, guard)
