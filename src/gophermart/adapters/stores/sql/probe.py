"""What the metrics scrape reads, on the read engine, not a hot path: how deep the accrual
queue is (one aggregate over the partial ``ix_orders_due`` index: non-final orders
only), and the ledger's open positions (open holds, accounts that owe: partial indexes
too, so a scrape costs what is open, not what the ledger ever held)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Integer, and_, bindparam, case, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gophermart.adapters.stores.sql.schema import IS_OPEN, IS_OWING, accounts, holds, orders
from gophermart.adapters.stores.sql.types import UtcDateTime
from gophermart.application.ports import LedgerGauges, QueueDepth
from gophermart.domain.points import Points

_now = bindparam("now", type_=UtcDateTime())
_overdue_before = bindparam("overdue_before", type_=UtcDateTime())
_queued = orders.c.next_attempt_at
#: A claim not yet ended whose lease still runs: a worker is polling the order. (An
#: unended claim whose lease ran out is due: the next claim takes it over.)
_held = orders.c.open_claims > 0


def _count(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0).cast(Integer)


QUEUE_DEPTH = select(
    _count(_queued <= _now),
    _count(_queued <= _overdue_before),
    _count(and_(_queued > _now, ~_held)),
    _count(and_(_queued > _now, _held)),
).where(_queued.is_not(None))

HOLDS_OPEN = select(func.count(), func.coalesce(func.sum(holds.c.amount), 0)).where(IS_OPEN)
OWING = select(func.count(), func.coalesce(func.sum(accounts.c.owed), 0)).where(IS_OWING)


class SqlQueueProbe:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def depth(self, now: datetime, overdue_after: float) -> QueueDepth:
        params = {"now": now, "overdue_before": now - timedelta(seconds=overdue_after)}
        async with self._engine.connect() as conn:
            row = (await conn.execute(QUEUE_DEPTH, params)).one()
        return QueueDepth(
            due=int(row[0]), overdue=int(row[1]), scheduled=int(row[2]), leased=int(row[3])
        )

    async def ledger_gauges(self) -> LedgerGauges:
        async with self._engine.connect() as conn:
            open_holds = (await conn.execute(HOLDS_OPEN)).one()
            owing = (await conn.execute(OWING)).one()
        return LedgerGauges(  # int(): PostgreSQL's SUM of a BIGINT is a NUMERIC
            holds_open=int(open_holds[0]),
            held=Points(int(open_holds[1])),
            accounts_owing=int(owing[0]),
            owed=Points(int(owing[1])),
        )
