"""Webhook endpoints and deliveries on both SQL stores (SQLAlchemy Core on the store's
engines, like the operators' keys; written once for SQLite and PostgreSQL).

The deliveries table is a queue like the orders' (``CLAIM_DUE``): a claim is one
``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)`` that moves
``next_attempt_at`` on by the lease, so workers in several processes never take the same
delivery while its lease runs, and a killed worker's deliveries come due again when it
ends. SQLite's writers are serial (``BEGIN IMMEDIATE``), so it needs no locking clause.

A user's later event waits for the earlier one: a delivery is claimable only if no
earlier delivery of the same user to the same endpoint is still pending (the
``user_order`` partial index answers that).

One worker process at a time holds an endpoint's *stream* (``stream_owner``, leased
until ``stream_until``): it POSTs the endpoint's events straight from the feed and then
records each delivery once, as its first try left it (delivered; pending with its retry
due; or pending and untried, queued behind its user's earlier event), moving the
endpoint's cursor by compare-and-set in the same transaction (:meth:`SqlWebhooks.settle`).
Only what did not go through on the first try is claimed from the queue.

Outcomes are group-committed (:class:`_Outcomes`): those arriving while a transaction
writes others go together in the next one, and each may claim its user's next due
delivery in it (``CLAIM_NEXT``): a user's backlog goes out without a claim's round trip
between two POSTs, and a busy endpoint costs a transaction per batch, not per POST.
Here each outcome of a batch is two statements in that transaction (SQLite's way);
PostgreSQL's store writes the batch as one set-based statement on asyncpg instead
(stores/postgres/webhooks.py), and settles, claims and looks up queued users there too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gophermart.adapters.stores.guard import DatabaseGuard
from gophermart.adapters.stores.sql.schema import webhook_deliveries as d
from gophermart.adapters.stores.sql.schema import webhooks as w
from gophermart.application.ports import (
    ClaimedDelivery,
    DeliveryTarget,
    DeliveryView,
    NewDelivery,
    WebhookEndpoint,
    WebhookLag,
)
from gophermart.domain.webhooks import DeliveryState

_PENDING = d.c.state == literal_column("'pending'")
_LIVE = w.c.deleted_at.is_(None)
_earlier = d.alias("earlier")


def _heads() -> Any:
    """Each user's oldest pending delivery to the endpoint (the only one of theirs that
    may go), found by walking the users of the ``user_order`` index: one probe for the
    next user, one for their first delivery. Checking every pending delivery for an
    earlier one of its user cost a probe per delivery of the backlog, per claim: 20,000
    pending deliveries of 64 users drained at ~10 a second (benchmarks/
    webhook_throughput.py).

    The next user is ``ORDER BY endpoint_id, user_id LIMIT 1``, not ``min(user_id)``:
    on a table PostgreSQL has no statistics for yet (a new database, the bench's) the
    planner answered ``min()`` from the ``due`` index, reading every pending delivery of
    the endpoint for each user: 376 ms for 16,000 pending deliveries of 64 users,
    against 1.2 ms when the order asked for is the ``user_order`` index's own."""
    endpoint: Any = bindparam("endpoint")

    def next_user(*after: Any) -> Any:
        return (
            select(d.c.user_id)
            .where(d.c.endpoint_id == endpoint, _PENDING, *after)
            .order_by(d.c.endpoint_id, d.c.user_id)
            .limit(literal_column("1"))  # written, not bound: a generic plan knows it too
            .scalar_subquery()
        )

    users = select(next_user().label("user_id")).cte("users", recursive=True)
    following = next_user(d.c.user_id > users.c.user_id)
    users = users.union_all(select(following).where(users.c.user_id.is_not(None)))
    head = (
        select(d.c.id)
        .where(d.c.endpoint_id == endpoint, _PENDING, d.c.user_id == users.c.user_id)
        .order_by(d.c.event_id)
        .limit(1)
        .scalar_subquery()
    )
    return select(head).where(users.c.user_id.is_not(None))


def _due(one_user: bool) -> Any:
    """Each user's oldest pending delivery that is due, in event order (see the module);
    ``one_user``: only the user named by the ``user`` parameter's."""
    query = select(d.c.id).where(
        d.c.endpoint_id == bindparam("endpoint"),
        _PENDING,
        d.c.next_attempt_at <= bindparam("now"),
    )
    if one_user:
        query = query.where(
            d.c.user_id == bindparam("user"),
            ~exists().where(
                _earlier.c.endpoint_id == d.c.endpoint_id,
                _earlier.c.user_id == d.c.user_id,
                _earlier.c.event_id < d.c.event_id,
                _earlier.c.state == literal_column("'pending'"),
            ),
        )
    else:
        query = query.where(d.c.id.in_(_heads()))
    return (
        query.order_by(d.c.event_id)
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True)  # PostgreSQL; SQLite's writers are serial anyway
        .scalar_subquery()
    )


#: A claimed delivery's columns, in :func:`claimed_of`'s order (every claim answers them).
CLAIMED = (
    d.c.id,
    d.c.endpoint_id,
    d.c.event_id,
    d.c.user_id,
    d.c.body,
    d.c.attempts,
    d.c.failures,
    d.c.first_attempt_at,
)


def _claim(due: Any) -> Any:
    """Lease what ``due`` selects: due again at ``lease_until``, one more attempt."""
    return (
        update(d)
        .where(d.c.id.in_(due))
        .values(
            next_attempt_at=bindparam("lease_until"),
            attempts=d.c.attempts + 1,
            first_attempt_at=func.coalesce(d.c.first_attempt_at, bindparam("now")),
            last_attempt_at=bindparam("now"),
        )
        .returning(*CLAIMED)
    )


CLAIM = _claim(_due(one_user=False))
#: After a user's delivery ended, in the same transaction: that user's next one.
CLAIM_NEXT = _claim(_due(one_user=True))


def claimed_of(row: Sequence[Any]) -> ClaimedDelivery:
    return ClaimedDelivery(row[0], row[1], row[2], row[3], bytes(row[4]), *row[5:])


_ENDPOINT = (w.c.id, w.c.url, w.c.events, w.c.created_at, w.c.deleted_at)
_VIEW = (
    d.c.event_id,
    d.c.event_type,
    d.c.user_id,
    d.c.state,
    d.c.attempts,
    d.c.created_at,
    d.c.last_attempt_at,
    d.c.last_status,
    d.c.last_error,
    d.c.next_attempt_at,
    d.c.delivered_at,
)


TARGETS = select(w.c.id, w.c.url, w.c.events, w.c.secret).where(_LIVE).order_by(w.c.id)


def target_of(row: Sequence[Any]) -> DeliveryTarget:
    return DeliveryTarget(row[0], row[1], tuple(row[2].split()), row[3])


def _endpoint_of(row: Sequence[Any]) -> WebhookEndpoint:
    return WebhookEndpoint(row[0], row[1], tuple(row[2].split()), row[3], row[4])


class SqlWebhooks:
    """The WebhookStore port on a SQL store's write and read engines."""

    def __init__(self, write: AsyncEngine, read: AsyncEngine, guard: DatabaseGuard) -> None:
        self._write = write
        self._read = read
        self._outcomes = _Outcomes(guard, self._write_outcomes)

    async def _write_outcomes(self, batch: Sequence[Outcome]) -> list[ClaimedDelivery | None]:
        """A group commit's outcomes, one transaction: a statement or two each."""
        async with self._write.begin() as conn:
            return [await _write_outcome(conn, o) for o in batch]

    async def add(
        self, url: str, events: tuple[str, ...], secret: str, cursor: int, at: datetime
    ) -> WebhookEndpoint:
        values = {"url": url, "events": " ".join(events), "secret": secret, "cursor": cursor}
        async with self._write.begin() as conn:
            new = await conn.execute(insert(w).values(created_at=at, **values).returning(w.c.id))
            return WebhookEndpoint(new.scalar_one(), url, events, at)

    async def endpoints(self) -> list[WebhookEndpoint]:
        async with self._read.connect() as conn:
            rows = await conn.execute(select(*_ENDPOINT).order_by(w.c.id))
            return [_endpoint_of(row) for row in rows]

    async def endpoint(self, endpoint_id: int) -> WebhookEndpoint | None:
        async with self._read.connect() as conn:
            row = (await conn.execute(select(*_ENDPOINT).where(w.c.id == endpoint_id))).first()
        return _endpoint_of(row) if row is not None else None

    async def delete(self, endpoint_id: int, at: datetime) -> bool:
        async with self._write.begin() as conn:
            if (await conn.execute(select(w.c.id).where(w.c.id == endpoint_id))).first() is None:
                return False
            await conn.execute(update(w).where(w.c.id == endpoint_id, _LIVE).values(deleted_at=at))
            return True

    async def targets(self) -> list[DeliveryTarget]:
        async with self._write.connect() as conn:
            return [target_of(r) for r in await conn.execute(TARGETS)]

    async def stream(
        self, endpoint_id: int, owner: str, now: datetime, until: datetime
    ) -> int | None:
        free = or_(w.c.stream_owner == owner, w.c.stream_owner.is_(None), w.c.stream_until <= now)
        take = update(w).where(w.c.id == endpoint_id, _LIVE, free)
        async with self._write.begin() as conn:
            row = await conn.execute(
                take.values(stream_owner=owner, stream_until=until).returning(w.c.cursor)
            )
            cursor = row.scalar()
        return int(cursor) if cursor is not None else None

    async def queued(self, endpoint_id: int, user_ids: Collection[int]) -> set[int]:
        if not user_ids:
            return set()
        query = (
            select(d.c.user_id)
            .distinct()
            .where(d.c.endpoint_id == endpoint_id, _PENDING, d.c.user_id.in_(list(user_ids)))
        )
        async with self._write.connect() as conn:  # as last written, like the cursor
            return set((await conn.execute(query)).scalars())

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
        move = update(w).where(w.c.id == endpoint_id, w.c.cursor == seen, w.c.stream_owner == owner)
        async with self._write.begin() as conn:
            moved = await conn.execute(move.values(cursor=upto, stream_until=until))
            if moved.rowcount != 1:
                return False  # the stream was taken over
            if deliveries:
                await conn.execute(insert(d), [_row(endpoint_id, new, at) for new in deliveries])
        return True

    async def claim(
        self, endpoint_id: int, now: datetime, lease_until: datetime, limit: int
    ) -> list[ClaimedDelivery]:
        params = {
            "endpoint": endpoint_id,
            "now": now,
            "lease_until": lease_until,
            "limit": limit,
        }
        async with self._write.begin() as conn:
            rows = (await conn.execute(CLAIM, params)).all()
        return sorted((claimed_of(row) for row in rows), key=lambda c: c.event_id)

    async def record(
        self,
        claimed: ClaimedDelivery,
        state: str,
        at: datetime,
        next_at: datetime | None,
        status: int | None,
        error: str | None,
        lease_until: datetime | None = None,
    ) -> ClaimedDelivery | None:
        outcome = Outcome(claimed, state, at, next_at, status, error, lease_until)
        return await self._outcomes.record(outcome)

    async def deliveries(
        self, endpoint_id: int, limit: int, before: int | None
    ) -> list[DeliveryView]:
        query = select(*_VIEW).where(d.c.endpoint_id == endpoint_id)
        if before is not None:
            query = query.where(d.c.event_id < before)
        async with self._read.connect() as conn:
            rows = await conn.execute(query.order_by(d.c.event_id.desc()).limit(limit))
            return [DeliveryView(*row) for row in rows]

    async def redeliver(self, event_id: int, now: datetime) -> int:
        live = d.c.endpoint_id.in_(select(w.c.id).where(_LIVE))
        ended = d.c.state.in_([DeliveryState.DELIVERED.value, DeliveryState.FAILED.value])
        again = update(d).where(d.c.event_id == event_id, ended, live)
        pending = select(func.count()).where(d.c.event_id == event_id, _PENDING, live)
        async with self._write.begin() as conn:
            await conn.execute(
                again.values(
                    state=DeliveryState.PENDING.value,
                    next_attempt_at=now,
                    failures=0,
                    first_attempt_at=None,
                    delivered_at=None,
                )
            )
            return int((await conn.execute(pending)).scalar_one())

    async def lag(self) -> list[WebhookLag]:
        joined = w.outerjoin(d, and_(d.c.endpoint_id == w.c.id, _PENDING))
        query = (
            select(w.c.id, func.count(d.c.id), func.min(d.c.event_at), w.c.cursor)
            .select_from(joined)
            .where(_LIVE)
            .group_by(w.c.id, w.c.cursor)
            .order_by(w.c.id)
        )
        async with self._read.connect() as conn:
            rows = await conn.execute(query)
            return [WebhookLag(r[0], r[1], r[2], r[3]) for r in rows]

    async def prune(self, older_than: datetime, limit: int) -> int:
        gone = select(w.c.id).where(w.c.deleted_at < older_than)
        doomed = (
            select(d.c.id)
            .where(
                or_(
                    and_(d.c.state == literal_column("'delivered'"), d.c.delivered_at < older_than),
                    d.c.endpoint_id.in_(gone),
                )
            )
            .limit(limit)
        )
        async with self._write.begin() as conn:
            result = await conn.execute(delete(d).where(d.c.id.in_(doomed.scalar_subquery())))
        return int(result.rowcount or 0)

    async def retained_after(self) -> int | None:
        async with self._read.connect() as conn:
            lowest = (await conn.execute(select(func.min(w.c.cursor)).where(_LIVE))).scalar()
        return int(lowest) if lowest is not None else None


def _row(endpoint_id: int, new: NewDelivery, at: datetime) -> dict[str, Any]:
    r = new.recorded(at)
    return {
        "endpoint_id": endpoint_id,
        "event_id": new.event_id,
        "user_id": new.user_id,
        "event_type": new.event_type,
        "event_at": new.event_at,
        "body": new.body,
        "state": r.state,
        "attempts": r.attempts,
        "failures": r.failures,
        "next_attempt_at": r.next_attempt_at,
        "first_attempt_at": r.tried_at,
        "last_attempt_at": r.tried_at,
        "last_status": r.last_status,
        "last_error": r.last_error,
        "delivered_at": r.delivered_at,
        "created_at": at,
    }


@dataclass(frozen=True, slots=True)
class Outcome:
    claimed: ClaimedDelivery
    state: str
    at: datetime
    next_at: datetime | None
    status: int | None
    error: str | None
    lease_until: datetime | None


async def _write_outcome(conn: AsyncConnection, o: Outcome) -> ClaimedDelivery | None:
    """One outcome (unless the delivery was claimed again since); with a lease, the
    user's next due delivery claimed when this one ended."""
    delivered = o.state == DeliveryState.DELIVERED.value
    values: dict[str, Any] = {
        "state": o.state,
        "next_attempt_at": o.next_at,
        "last_status": o.status,
        "last_error": o.error,
        "failures": d.c.failures + (0 if delivered else 1),
    }
    if delivered:
        values["delivered_at"] = o.at
    c = o.claimed
    ours = and_(d.c.id == c.id, d.c.attempts == c.attempts, _PENDING)
    written = (await conn.execute(update(d).where(ours).values(**values))).rowcount
    if written != 1 or o.lease_until is None or o.state == DeliveryState.PENDING.value:
        return None
    params = {
        "endpoint": c.endpoint_id,
        "user": c.user_id,
        "now": o.at,
        "lease_until": o.lease_until,
        "limit": 1,
    }
    row = (await conn.execute(CLAIM_NEXT, params)).first()
    return claimed_of(row) if row is not None else None


#: Writes a group commit's outcomes; back, per outcome, the next delivery it claimed.
OutcomeWriter = Callable[[Sequence[Outcome]], Awaitable[list[ClaimedDelivery | None]]]


class _Outcomes:
    """Group commit of outcomes: those that arrive while a batch is being written wait
    for the next one, written all together by ``write`` (one transaction). Under load
    that is a transaction per batch, not per POST."""

    def __init__(self, guard: DatabaseGuard, write: OutcomeWriter) -> None:
        self._guard = guard
        self._write = write
        self._queue: list[tuple[Outcome, asyncio.Future[ClaimedDelivery | None]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def record(self, outcome: Outcome) -> ClaimedDelivery | None:
        future: asyncio.Future[ClaimedDelivery | None] = asyncio.get_running_loop().create_future()
        self._queue.append((outcome, future))
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush(), name="webhook-outcomes")
        return await future

    async def _flush(self) -> None:
        batch: list[tuple[Outcome, asyncio.Future[ClaimedDelivery | None]]] = []
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    async with self._guard.watch():
                        results = await self._write([o for o, _ in batch])
                except Exception as exc:  # every outcome of the batch failed with it
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():  # its caller may have given up (a deadline)
                        future.set_result(result)
        finally:
            self._flushing = None
            for _, future in batch + self._queue:  # cancelled (shutdown): nobody waits
                if not future.done():
                    future.set_exception(RuntimeError("the outcome was not recorded"))
