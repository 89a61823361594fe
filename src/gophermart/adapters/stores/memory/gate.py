"""The accrual gate of one process (the in-memory store's)."""

from __future__ import annotations

from datetime import datetime, timedelta


class MemoryGate:
    """The fleet-wide accrual gate of one process: pause, then pace to N per minute.

    Like the SQL gate, a learnt rate is forgotten ``rate_ttl`` seconds after the pause it
    came with ends (each further 429 pushes that on).
    """

    def __init__(self, margin: float = 1.02, rate_ttl: float = 60.0) -> None:
        self.paused_until: datetime | None = None
        self.per_minute: int | None = None
        self.rate_expires_at: datetime | None = None
        self._next_slot: datetime | None = None
        self._margin = margin
        self._rate_ttl = timedelta(seconds=rate_ttl)

    async def pause(self, until: datetime, per_minute: int | None) -> None:
        if self.paused_until is None or until > self.paused_until:
            self.paused_until = until
        live = self.rate_expires_at is not None and self.rate_expires_at > self.paused_until
        self.per_minute = per_minute or (self.per_minute if live else None)
        self.rate_expires_at = self.paused_until + self._rate_ttl if self.per_minute else None
        if self._next_slot is None or self._next_slot < self.paused_until:
            self._next_slot = self.paused_until

    def rate(self) -> int | None:
        return self.per_minute

    async def reserve(self, now: datetime) -> datetime:
        if self.rate_expires_at is not None and self.rate_expires_at <= now:
            self.per_minute = self.rate_expires_at = self._next_slot = None
        start = now
        if self.paused_until is not None and self.paused_until > start:
            start = self.paused_until
        if self.per_minute:
            if self._next_slot is not None and self._next_slot > start:
                start = self._next_slot
            if self.rate_expires_at is not None and start >= self.rate_expires_at:
                return max(now, self.rate_expires_at)  # forgotten before this slot comes
            self._next_slot = start + timedelta(seconds=60.0 * self._margin / self.per_minute)
        return start
