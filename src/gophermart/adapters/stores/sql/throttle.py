"""The login throttle's counters in the ``login_failures`` table, shared by every process.

Per-process counters gave an attacker N times the budget with N server processes
(with ``-w 2``, 10 of 20 guesses reached a real password check). Here every process
reads and writes the same rows; the decisions are
:class:`~gophermart.application.throttling.ThrottlePolicy`'s.

One update is one short transaction: make sure the rows exist, lock them (in key order,
the same order everywhere, so two attempts never deadlock), let the policy decide,
write the new counters. Logins cost an argon2 hash (~100 ms of CPU), so these few round
trips are noise; the hot read endpoints never touch this table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gophermart.adapters.stores.sql.schema import login_failures as t
from gophermart.application.throttling import Counter, Decision, ThrottleKeys

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_SELECT = select(t).where(t.c.key.in_(bindparam("keys", expanding=True))).order_by(t.c.key)
_WRITE = (
    update(t)
    .where(t.c.key == bindparam("k"))
    .values(failures=bindparam("f"), last_at=bindparam("l"), locked_until=bindparam("u"))
)
_UNCOUNT = (
    update(t).where(t.c.key == bindparam("k"), t.c.failures > 0).values(failures=t.c.failures - 1)
)
_CLEAR = delete(t).where(t.c.key.in_(bindparam("keys", expanding=True)))
_PURGE = delete(t).where(t.c.last_at < bindparam("before"), t.c.locked_until < bindparam("before"))


def _touch(conn: AsyncConnection) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING: the rows exist afterwards, so they can be locked."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(t).on_conflict_do_nothing(index_elements=["key"])


class _Refused(Exception):
    def __init__(self, decision: Decision) -> None:
        super().__init__("refused")
        self.decision = decision


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class SqlThrottleCounters:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def update(
        self, keys: ThrottleKeys, decide: Callable[[Mapping[str, Counter]], Decision]
    ) -> Decision:
        ordered = sorted(keys.all())
        try:
            return await self._update(ordered, decide)
        except _Refused as refused:  # rolled back: nothing counted
            return refused.decision

    async def _update(
        self, ordered: list[str], decide: Callable[[Mapping[str, Counter]], Decision]
    ) -> Decision:
        async with self._engine.begin() as conn:
            fresh = {"failures": 0, "last_at": _EPOCH, "locked_until": _EPOCH}
            await conn.execute(_touch(conn), [{"key": k, **fresh} for k in ordered])
            rows = await conn.execute(_SELECT.with_for_update(), {"keys": ordered})
            stored = {
                r.key: Counter(r.failures, r.last_at.timestamp(), r.locked_until.timestamp())
                for r in rows
            }
            decision = decide(stored)
            if decision.retry_after is not None:
                raise _Refused(decision)
            await conn.execute(
                _WRITE,
                [
                    {"k": key, "f": c.failures, "l": _at(c.last_at), "u": _at(c.locked_until)}
                    for key, c in sorted(decision.counters.items())
                ],
            )
        return decision

    async def cleared(self, keys: ThrottleKeys) -> None:
        async with self._engine.begin() as conn:
            # Key order again (client < login < pair), as update() locks them.
            await conn.execute(_UNCOUNT, {"k": keys.client})
            await conn.execute(_CLEAR, {"keys": sorted([keys.login, keys.pair])})

    async def forget(self, before: float) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(_PURGE, {"before": _at(before)})
