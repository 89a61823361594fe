"""Our SQLAlchemy engines on a test database's URI, as the SQL stores make them."""

from __future__ import annotations

from gophermart.adapters.stores.postgres.engine import postgres_database
from gophermart.adapters.stores.sql.engine import Database
from gophermart.adapters.stores.sqlite.engine import sqlite_database
from gophermart.settings import DatabaseTarget


def database_for(uri: str, timeout: float | None = None) -> Database:
    target = DatabaseTarget.parse(uri)
    if target.kind == "postgresql":
        return postgres_database(target.location, target.display, timeout)
    return sqlite_database(target.location, timeout)
