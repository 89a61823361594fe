"""Idempotency keys in ``idempotency_keys``, on both SQL stores (SQLAlchemy Core on the
store's engines, like the operators' keys; written once for SQLite and PostgreSQL).

A claim is ``INSERT ... ON CONFLICT DO NOTHING RETURNING``: a row back means this claim
took the key; none means another request holds it, and the row then read says which
(another fingerprint, no answer yet, or the answer to replay). Two claims at once are
settled by the primary key: one inserts, the other (on PostgreSQL, after waiting for the
first's transaction) finds its row. Completing and abandoning touch a row only while it
is in progress (``status IS NULL``), so a stored answer is never overwritten or lost.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from gophermart.adapters.stores.sql.schema import idempotency_keys as t
from gophermart.application.ports import Claim, ClaimOutcome

_HELD = select(t.c.fingerprint, t.c.status, t.c.body, t.c.content_type)


def _claim(dialect: Any) -> Any:
    return (
        dialect.insert(t)
        .on_conflict_do_nothing(index_elements=[t.c.caller, t.c.key])
        .returning(t.c.caller)
    )


#: The claim's statement per dialect (the same SQL shape; each dialect's own insert).
_CLAIM = {"postgresql": _claim(postgresql), "sqlite": _claim(sqlite)}


class SqlIdempotencyKeys:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._insert = _CLAIM["postgresql" if engine.dialect.name == "postgresql" else "sqlite"]

    async def claim(self, caller: str, key: str, fingerprint: str, now: datetime) -> Claim:
        values = {"caller": caller, "key": key, "fingerprint": fingerprint, "created_at": now}
        async with self._engine.begin() as conn:
            if (await conn.execute(self._insert, values)).first() is not None:
                return Claim(ClaimOutcome.NEW)
            row = (await conn.execute(_HELD.where(t.c.caller == caller, t.c.key == key))).first()
        if row is None:  # pruned or abandoned in between: taken by the next claim
            return await self.claim(caller, key, fingerprint, now)
        if row.fingerprint != fingerprint:
            return Claim(ClaimOutcome.MISMATCH)
        if row.status is None:
            return Claim(ClaimOutcome.IN_PROGRESS)
        return Claim(ClaimOutcome.REPLAY, row.status, bytes(row.body or b""), row.content_type)

    async def complete(
        self, caller: str, key: str, status: int, body: bytes, content_type: str
    ) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                update(t)
                .where(t.c.caller == caller, t.c.key == key, t.c.status.is_(None))
                .values(status=status, body=body, content_type=content_type)
            )

    async def abandon(self, caller: str, key: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                delete(t).where(t.c.caller == caller, t.c.key == key, t.c.status.is_(None))
            )

    async def prune(self, older_than: datetime, limit: int) -> int:
        oldest = (
            select(t.c.caller, t.c.key)
            .where(t.c.created_at < older_than)
            .order_by(t.c.created_at)
            .limit(limit)
        )
        async with self._engine.begin() as conn:
            pruned = await conn.execute(delete(t).where(tuple_(t.c.caller, t.c.key).in_(oldest)))
            return int(pruned.rowcount)
