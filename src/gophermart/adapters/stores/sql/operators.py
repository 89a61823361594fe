"""Operators' names and key hashes in ``operators``, on both SQL stores (a cold path:
SQLAlchemy Core on the store's engines, like the throttle and the gate).

Adding is one upsert: a new name is inserted; a revoked name is given the new key in
the same row (``ON CONFLICT (name) DO UPDATE ... WHERE revoked_at IS NOT NULL``); a name
holding a key is left alone and nothing comes back, which is how two operators added
at once under one name are told apart: one gets the row, the other ``False``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gophermart.adapters.stores.sql.schema import operators as t
from gophermart.application.ports import StoredOperator
from gophermart.domain.operators import OperatorName

_BY_HASH = select(t.c.name, t.c.key_hash, t.c.created_at, t.c.revoked_at)


def _upsert(conn: AsyncConnection, name: str, key_hash: str, at: datetime) -> Any:
    insert = (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(t)
    return (
        insert.values(name=name, key_hash=key_hash, created_at=at)
        .on_conflict_do_update(
            index_elements=[t.c.name],
            set_={
                "key_hash": insert.excluded.key_hash,
                "created_at": insert.excluded.created_at,
                "revoked_at": None,
            },
            where=t.c.revoked_at.is_not(None),
        )
        .returning(t.c.id)
    )


class SqlOperatorKeys:
    def __init__(self, engine: AsyncEngine, read: AsyncEngine | None = None) -> None:
        self._engine = engine
        self._read = read or engine

    async def add(self, name: OperatorName, key_hash: str, at: datetime) -> bool:
        async with self._engine.begin() as conn:
            added = await conn.execute(_upsert(conn, name, key_hash, at))
            return added.first() is not None

    async def revoke(self, name: OperatorName, at: datetime) -> bool:
        async with self._engine.begin() as conn:
            revoked = await conn.execute(
                update(t).where(t.c.name == name, t.c.revoked_at.is_(None)).values(revoked_at=at)
            )
            return revoked.rowcount == 1

    async def by_hash(self, key_hash: str) -> StoredOperator | None:
        async with self._read.connect() as conn:
            row = (await conn.execute(_BY_HASH.where(t.c.key_hash == key_hash))).first()
        if row is None:
            return None
        return StoredOperator(OperatorName(row.name), row.key_hash, row.created_at, row.revoked_at)
