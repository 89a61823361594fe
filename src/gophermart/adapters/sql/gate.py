"""The fleet-wide accrual gate, kept in the single-row ``accrual_gate`` table.

A 429 seen by any worker process pauses every process until ``paused_until``; after
that, each request reserves the next ``next_slot`` in the row, so all processes
together keep within the announced N requests per minute.

The row is read at most once per ``refresh`` seconds while nothing is limited, so the
common case (no rate limit known) costs no round trip per request.

The migration seeds the row; a gate also creates it (once, if missing) for a host that
built the schema with ``metadata.create_all`` instead.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gophermart.adapters.sql.schema import accrual_gate
from gophermart.adapters.sql.statements import insert_if_absent


class SqlAccrualGate:
    def __init__(self, engine: AsyncEngine, refresh: float = 1.0, margin: float = 1.02) -> None:
        self._engine = engine
        self._refresh = refresh
        #: Slots are spaced a little wider than 60/N s, so clock skew between us and the
        #: accrual system's window never tips a minute over N.
        self._margin = margin
        self._paused_until: datetime | None = None
        self._per_minute: int | None = None
        self._read_at = float("-inf")
        self._seeded = False

    async def _seed(self) -> None:
        if not self._seeded:
            async with self._engine.begin() as conn:
                await conn.execute(insert_if_absent(self._engine.dialect, accrual_gate, id=1))
            self._seeded = True

    async def pause(self, until: datetime, per_minute: int | None) -> None:
        await self._seed()
        async with self._engine.begin() as conn:
            row = (
                await conn.execute(
                    select(accrual_gate).where(accrual_gate.c.id == 1).with_for_update()
                )
            ).one()
            paused_until = max(until, row.paused_until) if row.paused_until else until
            rate = per_minute or row.per_minute
            # Pacing resumes after the pause, but never earlier than the schedule already
            # says: a Retry-After shorter than 60/N must not reset the spacing.
            next_slot = max(paused_until, row.next_slot) if row.next_slot else paused_until
            await conn.execute(
                update(accrual_gate)
                .where(accrual_gate.c.id == 1)
                .values(paused_until=paused_until, per_minute=rate, next_slot=next_slot)
            )
        self._paused_until, self._per_minute = paused_until, rate
        self._read_at = time.monotonic()

    def rate(self) -> int | None:
        return self._per_minute

    async def reserve(self, now: datetime) -> datetime:
        if time.monotonic() - self._read_at > self._refresh:
            await self._read()
        if not self._per_minute:
            if self._paused_until is not None and self._paused_until > now:
                return self._paused_until
            return now
        return await self._take_slot(now)

    async def _read(self) -> None:
        await self._seed()
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(accrual_gate).where(accrual_gate.c.id == 1))).one()
        self._paused_until, self._per_minute = row.paused_until, row.per_minute
        self._read_at = time.monotonic()

    async def _take_slot(self, now: datetime) -> datetime:
        await self._seed()
        async with self._engine.begin() as conn:
            row = (
                await conn.execute(
                    select(accrual_gate).where(accrual_gate.c.id == 1).with_for_update()
                )
            ).one()
            start = max(d for d in (now, row.paused_until, row.next_slot) if d is not None)
            rate = row.per_minute or self._per_minute
            assert rate
            spacing = timedelta(seconds=60.0 * self._margin / rate)
            await conn.execute(
                update(accrual_gate).where(accrual_gate.c.id == 1).values(next_slot=start + spacing)
            )
        self._paused_until, self._per_minute = row.paused_until, row.per_minute
        return start
