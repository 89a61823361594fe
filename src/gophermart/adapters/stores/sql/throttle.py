"""The login throttle's counters in ``login_failures`` and its remembered successes in
``login_successes``, shared by every process.

Per-process counters gave an attacker N times the budget with N server processes
(with ``-w 2``, 10 of 20 guesses reached a real password check). Here every process
reads and writes the same rows; the decisions are
:class:`~gophermart.application.throttling.ThrottlePolicy`'s.

A read (before an attempt queues for the hasher) takes no lock and writes nothing. One
update is one short transaction: make sure the rows exist, lock them (in key order,
the same order everywhere, so two attempts never deadlock), read the successes, let the
policy decide, write the new counters and delete the ones it dropped. Logins cost an
argon2 hash (~100 ms of CPU), so these few round trips are noise; the hot read
endpoints never touch these tables.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gophermart.adapters.stores.sql.schema import login_failures as t
from gophermart.adapters.stores.sql.schema import login_successes as s
from gophermart.application.throttling import Counter, Decision, Seen, ThrottleKeys

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_SELECT = select(t).where(t.c.key.in_(bindparam("keys", expanding=True))).order_by(t.c.key)
_WRITE = (
    update(t)
    .where(t.c.key == bindparam("k"))
    .values(failures=bindparam("f"), last_at=bindparam("l"), locked_until=bindparam("u"))
)
_DROP = delete(t).where(t.c.key.in_(bindparam("keys", expanding=True)))
_PURGE = delete(t).where(t.c.last_at < bindparam("before"), t.c.locked_until < bindparam("before"))

_KNOWN = select(s.c.key, s.c.last_at).where(
    s.c.login == bindparam("login"), s.c.key.in_(bindparam("known", expanding=True))
)
_FORGET_KNOWN = delete(s).where(s.c.last_at < bindparam("before"))


def _dialect(conn: AsyncConnection) -> Any:
    return postgresql if conn.dialect.name == "postgresql" else sqlite


def _touch(conn: AsyncConnection) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING: the rows exist afterwards, so they can be locked."""
    return _dialect(conn).insert(t).on_conflict_do_nothing(index_elements=["key"])


def _record(conn: AsyncConnection) -> Any:
    """INSERT ... ON CONFLICT DO UPDATE: a success, new or seen again."""
    insert = _dialect(conn).insert(s)
    return insert.on_conflict_do_update(
        index_elements=["login", "key"], set_={"last_at": insert.excluded.last_at}
    )


def _trim(keep: int) -> Any:
    """Of one login's remembered keys, all but the ``keep`` most recent."""
    newest = (
        select(s.c.key)
        .where(s.c.login == bindparam("login"))
        .order_by(s.c.last_at.desc(), s.c.key)
        .limit(keep)
    )
    return delete(s).where(s.c.login == bindparam("login"), s.c.key.not_in(newest))


class _Refused(Exception):
    def __init__(self, decision: Decision) -> None:
        super().__init__("refused")
        self.decision = decision


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


async def _known(conn: AsyncConnection, keys: ThrottleKeys) -> dict[str, float]:
    if not keys.known:
        return {}
    rows = await conn.execute(_KNOWN, {"login": keys.account, "known": list(keys.known)})
    return {r.key: r.last_at.timestamp() for r in rows}


def _counters(rows: Any) -> dict[str, Counter]:
    return {
        r.key: Counter(r.failures, r.last_at.timestamp(), r.locked_until.timestamp()) for r in rows
    }


class SqlThrottleCounters:
    def __init__(self, engine: AsyncEngine, read: AsyncEngine | None = None) -> None:
        self._engine = engine
        self._read = read or engine

    async def read(self, keys: ThrottleKeys) -> Seen:
        async with self._read.connect() as conn:
            rows = await conn.execute(_SELECT, {"keys": sorted(keys.all())})
            return Seen(_counters(rows), await _known(conn, keys))

    async def update(self, keys: ThrottleKeys, decide: Callable[[Seen], Decision]) -> Decision:
        try:
            return await self._update(keys, decide)
        except _Refused as refused:  # rolled back: nothing counted
            return refused.decision

    async def _update(self, keys: ThrottleKeys, decide: Callable[[Seen], Decision]) -> Decision:
        ordered = sorted(keys.all())
        async with self._engine.begin() as conn:
            fresh = {"failures": 0, "last_at": _EPOCH, "locked_until": _EPOCH}
            await conn.execute(_touch(conn), [{"key": k, **fresh} for k in ordered])
            rows = await conn.execute(_SELECT.with_for_update(), {"keys": ordered})
            seen = Seen(_counters(rows), await _known(conn, keys))
            decision = decide(seen)
            if decision.retry_after is not None:
                raise _Refused(decision)
            # Rows made only to be locked, that the decision left alone, go again.
            made = {k for k, c in seen.counters.items() if c.failures == 0 and c.last_at == 0}
            dropped = (decision.dropped | made) - decision.counters.keys()
            if decision.counters:
                await conn.execute(
                    _WRITE,
                    [
                        {"k": key, "f": c.failures, "l": _at(c.last_at), "u": _at(c.locked_until)}
                        for key, c in sorted(decision.counters.items())
                    ],
                )
            if dropped:
                await conn.execute(_DROP, {"keys": sorted(dropped)})
        return decision

    async def remember(self, keys: ThrottleKeys, at: float, keep: int) -> None:
        if not keys.known:
            return
        async with self._engine.begin() as conn:
            when = _at(at)
            rows = [{"login": keys.account, "key": k, "last_at": when} for k in keys.known]
            await conn.execute(_record(conn), rows)
            await conn.execute(_trim(keep), {"login": keys.account})

    async def forget(self, before: float, known_before: float) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(_PURGE, {"before": _at(before)})
            await conn.execute(_FORGET_KNOWN, {"before": _at(known_before)})
