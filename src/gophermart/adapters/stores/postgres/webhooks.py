"""The delivery worker's side of the webhooks on PostgreSQL: set-based, on asyncpg.

The operators' verbs stay the shared SQL store's (stores/sql/webhooks.py, SQLAlchemy on
the cold paths' engines); what the delivery worker does for every event runs here, on
a small asyncpg pool of its own (never the API's connections), each as one statement
compiled once (runner.py):

* **settling the stream** (:data:`SETTLE`): the endpoint's cursor moved by
  compare-and-set and all the batch's deliveries inserted from arrays (``unnest``), as
  their first try left them, in one statement; and the users among a batch's with a
  delivery still queued (:data:`QUEUED`), whose events wait behind it;
* **claims** (:data:`~gophermart.adapters.stores.sql.webhooks.CLAIM`, the shared
  statement): each user's oldest pending delivery, leased;
* **outcomes** (:data:`RECORD`): every outcome of a group commit written by one
  ``UPDATE ... FROM unnest(...)``, and in the same statement the next delivery of each
  user whose delivery ended (when it is now the user's oldest pending one and due),
  leased: so a busy endpoint costs one statement per batch of POSTs, where the shared
  store pays two per POST (SQLite keeps that: its writers are serial anyway).

Every promise of the shared store holds: an outcome is written only if its delivery
was not claimed again since (``attempts``), a next delivery is claimed only if no
earlier one of its user is still pending (it is the user's *oldest* pending one, the
ended ones aside, which the statement's snapshot still shows pending), and a row that
another process holds is passed by (``SKIP LOCKED``), never waited for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    LargeBinary,
    String,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal_column,
    select,
    true,
    update,
)

from gophermart.adapters.stores.guard import DatabaseGuard
from gophermart.adapters.stores.postgres.arrays import unnest_rows
from gophermart.adapters.stores.postgres.pool import PgPool
from gophermart.adapters.stores.postgres.runner import PgRunner
from gophermart.adapters.stores.sql.schema import webhook_deliveries as d
from gophermart.adapters.stores.sql.schema import webhooks as w
from gophermart.adapters.stores.sql.statements import Statement
from gophermart.adapters.stores.sql.types import UtcDateTime
from gophermart.adapters.stores.sql.webhooks import (
    CLAIM,
    CLAIMED,
    TARGETS,
    Outcome,
    SqlWebhooks,
    claimed_of,
    target_of,
)
from gophermart.application.ports import ClaimedDelivery, DeliveryTarget, NewDelivery

# Written into the SQL, not bound: the partial indexes' predicate (``state =
# 'pending'``) must be provable from the statement's text, or a prepared statement's
# generic plan could not use them.
_PENDING_STATE: Any = literal_column("'pending'")
_DELIVERED_STATE: Any = literal_column("'delivered'")


def _settle() -> Any:
    """The cursor moved from ``seen`` to ``upto`` and the stream kept until ``until``
    (compare-and-set, only while ``owner`` holds it) and, only if it moved, one delivery
    per array element, as its first try left it; back: whether it moved."""
    moved = (
        update(w)
        .where(
            w.c.id == bindparam("endpoint"),
            w.c.cursor == bindparam("seen"),
            w.c.stream_owner == bindparam("owner"),
        )
        .values(cursor=bindparam("upto"), stream_until=bindparam("until", type_=UtcDateTime))
        .returning(w.c.id)
        .cte("moved")
    )
    new = unnest_rows(
        "new",
        ("event_ids", "event_id", BigInteger),
        ("user_ids", "user_id", BigInteger),
        ("types", "event_type", String),
        ("event_ats", "event_at", UtcDateTime),
        ("bodies", "body", LargeBinary),
        ("states", "state", String),
        ("attempts", "attempts", Integer),
        ("failures", "failures", Integer),
        ("next_ats", "next_attempt_at", UtcDateTime),
        ("tried_ats", "first_attempt_at", UtcDateTime),
        ("statuses", "last_status", Integer),
        ("errors", "last_error", String),
        ("delivered_ats", "delivered_at", UtcDateTime),
    )
    columns = [c.name for c in new.c]
    inserted = (
        insert(d)
        .from_select(
            ["endpoint_id", *columns, "last_attempt_at", "created_at"],
            select(
                moved.c.id,
                *new.c,
                new.c.first_attempt_at,
                bindparam("at", type_=UtcDateTime),
            )
            .select_from(moved.join(new, true()))
            .order_by(new.c.event_id),
        )
        .returning(d.c.id)
        .cte("inserted")
    )
    # Both CTEs named in the answer: SQLAlchemy renders only the CTEs a query names.
    return select(
        select(func.count()).select_from(moved).scalar_subquery(),
        select(func.count()).select_from(inserted).scalar_subquery(),
    )


SETTLE = Statement(_settle())

#: The users (of an array) with a pending delivery to the endpoint, each found by one
#: probe of the ``user_order`` index.
QUEUED = Statement(
    select(literal_column("u.user_id"))
    .select_from(unnest_rows("u", ("users", "user_id", BigInteger)))
    .where(
        exists().where(
            d.c.endpoint_id == bindparam("endpoint"),
            d.c.user_id == literal_column("u.user_id"),
            d.c.state == _PENDING_STATE,
        )
    )
)

_outcomes = unnest_rows(
    "outcome",
    ("ids", "id", BigInteger),
    ("attempts", "attempts", Integer),
    ("states", "state", String),
    ("ats", "at", UtcDateTime),
    ("next_ats", "next_at", UtcDateTime),
    ("statuses", "status", Integer),
    ("errors", "error", String),
    ("leases", "lease", UtcDateTime),
)


def _record() -> Any:
    """Every outcome of a batch (unless its delivery was claimed again since) and, for
    each that ended with a lease asked for, its user's next delivery claimed when it is
    the user's oldest pending one and due. Back: one row per outcome written, with the
    next delivery's columns (NULL when none was claimed)."""
    o = _outcomes
    delivered = o.c.state == _DELIVERED_STATE
    done = (
        update(d)
        .where(d.c.id == o.c.id, d.c.attempts == o.c.attempts, d.c.state == _PENDING_STATE)
        .values(
            state=o.c.state,
            next_attempt_at=o.c.next_at,
            last_status=o.c.status,
            last_error=o.c.error,
            failures=d.c.failures + case((delivered, 0), else_=1),
            delivered_at=case((delivered, o.c.at), else_=d.c.delivered_at),
        )
        .returning(d.c.id, d.c.endpoint_id, d.c.user_id, d.c.state, o.c.at, o.c.lease)
        .cte("done")
    )
    return _following(done)


def _following(done: Any) -> Any:
    """The statement's second half: the users' next deliveries after ``done``."""
    x = d.alias("later")
    head = (
        select(x.c.id)
        .where(
            x.c.endpoint_id == done.c.endpoint_id,
            x.c.user_id == done.c.user_id,
            x.c.state == _PENDING_STATE,
            x.c.id.not_in(select(done.c.id).scalar_subquery()),
        )
        .order_by(x.c.event_id)
        .limit(1)
        .lateral("head")
    )
    heads = (
        select(head.c.id, done.c.id.label("after"), done.c.at, done.c.lease)
        .select_from(done.join(head, true()))
        .where(done.c.lease.is_not(None), done.c.state != _PENDING_STATE)
        .cte("heads")
    )
    locked = (
        select(d.c.id)
        .where(d.c.id.in_(select(heads.c.id).scalar_subquery()))
        .with_for_update(skip_locked=True)
        .cte("locked")
    )
    claimed = (
        update(d)
        .where(
            d.c.id == heads.c.id,
            d.c.id.in_(select(locked.c.id).scalar_subquery()),
            d.c.state == _PENDING_STATE,
            d.c.next_attempt_at <= heads.c.at,
        )
        .values(
            next_attempt_at=heads.c.lease,
            attempts=d.c.attempts + 1,
            first_attempt_at=func.coalesce(d.c.first_attempt_at, heads.c.at),
            last_attempt_at=heads.c.at,
        )
        .returning(heads.c.after, *CLAIMED)
        .cte("claimed")
    )
    following = [c for c in claimed.c if c.name != "after"]
    return select(done.c.id, *following).select_from(
        done.outerjoin(claimed, claimed.c.after == done.c.id)
    )


RECORD = Statement(_record())

log = logging.getLogger("gophermart.webhooks")

#: Every delivery is updated twice (claimed, then its outcome), so a busy endpoint leaves
#: dead row versions in the deliveries' partial indexes faster than autovacuum (a look
#: per database each minute) removes them, and each claim and each user's next delivery
#: walks past them: a 30 s withdraw bench ended 125-165 s behind (docs/performance.md,
#: "Webhooks"). So the worker vacuums the table itself after this many outcomes...
VACUUM_AFTER = 10_000
#: ...at most once per this many seconds per process (SKIP_LOCKED: one at a time).
VACUUM_EVERY = 2.0
VACUUM_DELIVERIES = f"VACUUM (SKIP_LOCKED) {d.name}"
#: The shared store's claim (each user's oldest pending delivery, leased), on asyncpg.
CLAIM_HEADS = Statement(CLAIM)
#: The live endpoints (each second).
LIVE_TARGETS = Statement(TARGETS)


class PgWebhooks(SqlWebhooks):
    """The WebhookStore port on PostgreSQL: the shared store's verbs, with settles,
    claims and outcomes set-based on ``pool`` (the module docstring)."""

    def __init__(self, write: Any, read: Any, guard: DatabaseGuard, pool: PgPool) -> None:
        super().__init__(write, read, guard)
        self._pool = pool
        self._outcomes_since_vacuum = 0
        self._vacuumed_at = 0.0
        self._vacuum: asyncio.Task[None] | None = None

    async def targets(self) -> list[DeliveryTarget]:
        async with self._pool.connection() as conn:
            return [target_of(row) for row in await PgRunner(conn).fetch(LIVE_TARGETS, {})]

    async def queued(self, endpoint_id: int, user_ids: Collection[int]) -> set[int]:
        if not user_ids:
            return set()
        params = {"endpoint": endpoint_id, "users": list(user_ids)}
        async with self._pool.connection() as conn:
            return {row[0] for row in await PgRunner(conn).fetch(QUEUED, params)}

    async def settle(
        self,
        endpoint_id: int,
        owner: str,
        seen: int,
        upto: int,
        deliveries: Sequence[NewDelivery],
        at: datetime,
        until: datetime,
    ) -> bool:
        recorded = [n.recorded(at) for n in deliveries]
        params = {
            "endpoint": endpoint_id,
            "owner": owner,
            "seen": seen,
            "upto": upto,
            "until": until,
            "at": at,
            "event_ids": [n.event_id for n in deliveries],
            "user_ids": [n.user_id for n in deliveries],
            "types": [n.event_type for n in deliveries],
            "event_ats": [n.event_at for n in deliveries],
            "bodies": [n.body for n in deliveries],
            "states": [r.state for r in recorded],
            "attempts": [r.attempts for r in recorded],
            "failures": [r.failures for r in recorded],
            "next_ats": [r.next_attempt_at for r in recorded],
            "tried_ats": [r.tried_at for r in recorded],
            "statuses": [r.last_status for r in recorded],
            "errors": [r.last_error for r in recorded],
            "delivered_ats": [r.delivered_at for r in recorded],
        }
        async with self._pool.connection() as conn:
            row = await PgRunner(conn).fetchrow(SETTLE, params)
        return row is not None and row[0] == 1

    async def claim(
        self, endpoint_id: int, now: datetime, lease_until: datetime, limit: int
    ) -> list[ClaimedDelivery]:
        params = {"endpoint": endpoint_id, "now": now, "lease_until": lease_until, "limit": limit}
        async with self._pool.connection() as conn:
            rows = await PgRunner(conn).fetch(CLAIM_HEADS, params)
        return sorted((claimed_of(row) for row in rows), key=lambda c: c.event_id)

    async def _write_outcomes(self, batch: Sequence[Outcome]) -> list[ClaimedDelivery | None]:
        params = {
            "ids": [o.claimed.id for o in batch],
            "attempts": [o.claimed.attempts for o in batch],
            "states": [o.state for o in batch],
            "ats": [o.at for o in batch],
            "next_ats": [o.next_at for o in batch],
            "statuses": [o.status for o in batch],
            "errors": [o.error for o in batch],
            "leases": [o.lease_until for o in batch],
        }
        async with self._pool.connection() as conn:
            rows = await PgRunner(conn).fetch(RECORD, params)
        self._outcomes_since_vacuum += len(batch)
        self._tidy()
        following = {row[0]: claimed_of(row[1:]) for row in rows if row[1] is not None}
        return [following.get(o.claimed.id) for o in batch]

    def _tidy(self) -> None:
        """Vacuum the deliveries in the background when enough outcomes were written
        since the last time (:data:`VACUUM_AFTER`)."""
        now = time.monotonic()
        if (
            self._outcomes_since_vacuum < VACUUM_AFTER
            or now - self._vacuumed_at < VACUUM_EVERY
            or (self._vacuum is not None and not self._vacuum.done())
        ):
            return
        self._outcomes_since_vacuum, self._vacuumed_at = 0, now
        self._vacuum = asyncio.create_task(self._vacuum_deliveries(), name="webhooks-vacuum")

    async def _vacuum_deliveries(self) -> None:
        try:
            await self._pool.run_alone(VACUUM_DELIVERIES)
        except Exception as exc:  # autovacuum still runs; the next one is tried later
            log.debug("webhooks: vacuuming the deliveries failed: %s", exc)
