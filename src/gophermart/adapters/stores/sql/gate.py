"""The fleet-wide accrual gate, kept in the single-row ``accrual_gate`` table.

A 429 seen by any worker process pauses every process until ``paused_until``; after
that, each request reserves the next ``next_slot`` in the row, so all processes
together keep within the announced N requests per minute.

A learnt rate is a hint that expires: it holds until ``rate_expires_at``, ``rate_ttl``
seconds after the pause it came with ends, and is then forgotten (full speed again).
Every further 429 pushes the expiry on, so a limit that is really there stays learnt,
and one odd answer cannot throttle the fleet for good.

The row is read at most once per ``refresh`` seconds while nothing is limited, so the
common case (no rate limit known) costs no round trip per request.

The migration seeds the row; a gate also creates it (once, if missing) for a host that
built the schema with ``metadata.create_all`` instead.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gophermart.adapters.stores.sql.schema import accrual_gate
from gophermart.adapters.stores.sql.statements import insert_if_absent

#: How long a learnt rate outlives its pause (docs/failure-behaviour.md): one full
#: minute at the announced rate, then probe at full speed.
DEFAULT_RATE_TTL = 60.0


async def _locked_row(conn: AsyncConnection) -> Any:
    """The gate's row, locked until the transaction ends (every process writes it)."""
    return (
        await conn.execute(select(accrual_gate).where(accrual_gate.c.id == 1).with_for_update())
    ).one()


def _live_rate(row: Any, at: datetime) -> int | None:
    """The row's rate if it has not expired at ``at`` (a rate without an expiry predates
    expiries, migration 0002, and counts as expired)."""
    expires = row.rate_expires_at
    return row.per_minute if expires is not None and expires > at else None


class SqlAccrualGate:
    def __init__(
        self,
        engine: AsyncEngine,
        refresh: float = 1.0,
        margin: float = 1.02,
        rate_ttl: float = DEFAULT_RATE_TTL,
    ) -> None:
        self._engine = engine
        self._refresh = refresh
        #: Slots are spaced a little wider than 60/N s, so clock skew between us and the
        #: accrual system's window never tips a minute over N.
        self._margin = margin
        self._rate_ttl = timedelta(seconds=rate_ttl)
        self._paused_until: datetime | None = None
        self._per_minute: int | None = None
        self._rate_expires_at: datetime | None = None
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
            row = await _locked_row(conn)
            paused_until = max(until, row.paused_until) if row.paused_until else until
            # A 429 without a number keeps the rate already learnt, if that is still
            # live when this pause ends.
            rate = per_minute or _live_rate(row, paused_until)
            expires = paused_until + self._rate_ttl if rate else None
            # Pacing resumes after the pause, but never earlier than the schedule already
            # says: a Retry-After shorter than 60/N must not reset the spacing.
            next_slot = max(paused_until, row.next_slot) if row.next_slot else paused_until
            await conn.execute(
                update(accrual_gate)
                .where(accrual_gate.c.id == 1)
                .values(
                    paused_until=paused_until,
                    per_minute=rate,
                    next_slot=next_slot,
                    rate_expires_at=expires,
                )
            )
        self._paused_until, self._per_minute, self._rate_expires_at = paused_until, rate, expires
        self._read_at = time.monotonic()

    def rate(self) -> int | None:
        """The learnt rate as of the last :meth:`reserve` (``None`` once it expired)."""
        return self._per_minute

    async def reserve(self, now: datetime) -> datetime:
        if time.monotonic() - self._read_at > self._refresh:
            await self._read()
        if not self._per_minute:
            if self._paused_until is not None and self._paused_until > now:
                return self._paused_until
            return now
        # The row decides: it paces, or (once expired) forgets the rate for everyone.
        return await self._take_slot(now)

    async def _read(self) -> None:
        await self._seed()
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(accrual_gate).where(accrual_gate.c.id == 1))).one()
        self._remember(row)

    def _remember(self, row: Any) -> None:
        self._paused_until, self._per_minute = row.paused_until, row.per_minute
        self._rate_expires_at = row.rate_expires_at
        self._read_at = time.monotonic()

    async def _take_slot(self, now: datetime) -> datetime:
        await self._seed()
        async with self._engine.begin() as conn:
            row = await _locked_row(conn)
            start = max(d for d in (now, row.paused_until) if d is not None)
            rate = _live_rate(row, now)
            if rate is None:
                # Expired (or never learnt, if another process just forgot it): forget it
                # in the row too, so every process and an operator see full speed.
                await conn.execute(
                    update(accrual_gate)
                    .where(accrual_gate.c.id == 1)
                    .values(per_minute=None, next_slot=None, rate_expires_at=None)
                )
                self._per_minute = self._rate_expires_at = None
                self._paused_until = row.paused_until
                self._read_at = time.monotonic()
                return start
            if row.next_slot is not None:
                start = max(start, row.next_slot)
            expires: datetime = row.rate_expires_at  # not None: the rate is live
            if start >= expires:
                # The rate is forgotten before this slot comes: no point waiting past that.
                self._remember(row)
                return max(now, expires)
            spacing = timedelta(seconds=60.0 * self._margin / rate)
            await conn.execute(
                update(accrual_gate).where(accrual_gate.c.id == 1).values(next_slot=start + spacing)
            )
        self._remember(row)
        return start
