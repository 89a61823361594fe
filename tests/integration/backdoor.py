"""Reaching behind a running service: its database and its signing key.

What a hostile client (or an unlucky operator) can bring about, made on purpose: a
validly signed token with any claims, a user deleted while their token lives on, a
database dropped and recreated under a fixed ``GOPHERMART_SECRET``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlsplit

import jwt
from sqlalchemy import delete, select

from gophermart.adapters.security import signing_key
from gophermart.adapters.stores.sql.schema import accounts, service_state, users
from tests.conftest import TEST_SECRET, _admin
from tests.sql_database import database_for


async def _database_id(database_uri: str) -> str:
    database = database_for(database_uri)
    try:
        async with database.read.connect() as conn:
            value = await conn.scalar(
                select(service_state.c.value).where(service_state.c.key == "database_id")
            )
    finally:
        await database.dispose()
    assert isinstance(value, str), "the service has not settled its database id"
    return value


def database_id(database_uri: str) -> str:
    return asyncio.run(_database_id(database_uri))


def mint_token(database_uri: str, claims: dict[str, Any], secret: str = TEST_SECRET) -> str:
    """A token signed exactly as the service signs them, carrying ``claims``
    (``exp`` an hour ahead unless given)."""
    key = signing_key(secret, database_id(database_uri))
    return jwt.encode({"exp": int(time.time()) + 3600, **claims}, key, algorithm="HS256")


async def _delete_user(database_uri: str, login: str) -> int:
    database = database_for(database_uri)
    try:
        async with database.write.begin() as conn:
            user_id = await conn.scalar(select(users.c.id).where(users.c.login == login))
            assert user_id is not None, f"no user {login}"
            await conn.execute(delete(accounts).where(accounts.c.user_id == user_id))
            await conn.execute(delete(users).where(users.c.id == user_id))
    finally:
        await database.dispose()
    return int(user_id)


def delete_user(database_uri: str, login: str) -> int:
    """Delete a user without orders or ledger entries (and their account); their id."""
    return asyncio.run(_delete_user(database_uri, login))


def recreate_postgres_database(database_uri: str) -> None:
    """Drop the PostgreSQL database behind ``database_uri`` and create it again, empty."""
    name = urlsplit(database_uri).path.lstrip("/")
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _admin(f'CREATE DATABASE "{name}"')
