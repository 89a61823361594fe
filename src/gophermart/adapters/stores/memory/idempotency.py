"""Idempotency keys in one process's memory (the in-memory store's)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gophermart.application.ports import Claim, ClaimOutcome


@dataclass(slots=True)
class _Key:
    fingerprint: str
    created_at: datetime
    status: int | None = None
    body: bytes = b""
    content_type: str | None = None


class MemoryIdempotencyKeys:
    """As the SQL table: one entry per (caller, key); ``status`` is ``None`` while the
    request runs. No ``await`` between a look-up and a write: one claim wins."""

    def __init__(self) -> None:
        self._keys: dict[tuple[str, str], _Key] = {}

    async def claim(self, caller: str, key: str, fingerprint: str, now: datetime) -> Claim:
        held = self._keys.get((caller, key))
        if held is None:
            self._keys[caller, key] = _Key(fingerprint, now)
            return Claim(ClaimOutcome.NEW)
        if held.fingerprint != fingerprint:
            return Claim(ClaimOutcome.MISMATCH)
        if held.status is None:
            return Claim(ClaimOutcome.IN_PROGRESS)
        return Claim(ClaimOutcome.REPLAY, held.status, held.body, held.content_type)

    async def complete(
        self, caller: str, key: str, status: int, body: bytes, content_type: str
    ) -> None:
        held = self._keys.get((caller, key))
        if held is not None and held.status is None:
            held.status, held.body, held.content_type = status, body, content_type

    async def abandon(self, caller: str, key: str) -> None:
        held = self._keys.get((caller, key))
        if held is not None and held.status is None:
            del self._keys[caller, key]

    async def prune(self, older_than: datetime, limit: int) -> int:
        old = sorted(
            (k for k, v in self._keys.items() if v.created_at < older_than),
            key=lambda k: self._keys[k].created_at,
        )[:limit]
        for k in old:
            del self._keys[k]
        return len(old)
