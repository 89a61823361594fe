"""Operators' names and key hashes in one process's memory (the in-memory store's)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from gophermart.application.ports import StoredOperator
from gophermart.domain.operators import OperatorName


class MemoryOperatorKeys:
    """As the SQL table: one entry per name; a revoked name may be given a new key."""

    def __init__(self) -> None:
        self._by_name: dict[str, StoredOperator] = {}

    async def add(self, name: OperatorName, key_hash: str, at: datetime) -> bool:
        held = self._by_name.get(name)
        if held is not None and held.revoked_at is None:
            return False
        self._by_name[name] = StoredOperator(name, key_hash, at)
        return True

    async def revoke(self, name: OperatorName, at: datetime) -> bool:
        held = self._by_name.get(name)
        if held is None or held.revoked_at is not None:
            return False
        self._by_name[name] = replace(held, revoked_at=at)
        return True

    async def by_hash(self, key_hash: str) -> StoredOperator | None:
        return next((op for op in self._by_name.values() if op.key_hash == key_hash), None)
