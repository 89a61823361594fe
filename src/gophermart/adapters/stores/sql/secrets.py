"""Values generated once per database and kept in it: the token secret and the
database's identity.

Every process of one deployment reads the same values, so any of them verifies any
token, and a restart does not log everyone out. An operator-supplied secret
(``GOPHERMART_SECRET``) takes precedence and is never written here.

The database id is generated whatever the secret: tokens are signed with a key bound
to it (``adapters.security.signing_key``), so a token minted before the database was
dropped and recreated is refused afterwards, even with a fixed ``GOPHERMART_SECRET``.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gophermart.adapters.stores.sql.schema import service_state
from gophermart.adapters.stores.sql.statements import insert_if_absent

_SECRET = "token_secret"  # noqa: S105 - a key name, not a secret
_DATABASE_ID = "database_id"


async def stored_token_secret(engine: AsyncEngine) -> str:
    """The deployment's secret: created by the first process to ask, read by the rest."""
    async with engine.begin() as conn:
        return await _stored(conn, _SECRET, lambda: secrets.token_urlsafe(48))


async def stored_database_id(engine: AsyncEngine) -> str:
    """This database's identity: a random id created by the first process to ask."""
    async with engine.begin() as conn:
        return await _stored(conn, _DATABASE_ID, lambda: uuid.uuid4().hex)


async def _stored(conn: AsyncConnection, key: str, make: Callable[[], str]) -> str:
    await conn.execute(insert_if_absent(conn.dialect, service_state, key=key, value=make()))
    value = await conn.scalar(select(service_state.c.value).where(service_state.c.key == key))
    assert isinstance(value, str)
    return value
