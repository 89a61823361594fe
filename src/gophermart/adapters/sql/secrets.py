"""The token signing secret, generated once per deployment and kept in the database.

Every process of one deployment reads the same value, so any of them verifies any
token, and a restart does not log everyone out. An operator-supplied secret
(``GOPHERMART_SECRET``) takes precedence and is never written here.
"""

from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from gophermart.adapters.sql.schema import service_state

_KEY = "token_secret"


async def stored_token_secret(engine: AsyncEngine) -> str:
    """The deployment's secret: created by the first process to ask, read by the rest."""
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    async with engine.begin() as conn:
        await conn.execute(
            dialect.insert(service_state)
            .values(key=_KEY, value=secrets.token_urlsafe(48))
            .on_conflict_do_nothing(index_elements=["key"])
        )
        value = await conn.scalar(select(service_state.c.value).where(service_state.c.key == _KEY))
    assert isinstance(value, str)
    return value
