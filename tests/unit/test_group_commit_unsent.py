"""A batch of withdrawals that cannot even be sent (no connection to be had) fails
its debits with that error at once, rather than trying each alone."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from gophermart.adapters.stores.postgres.group_commit import PgGroupCommit
from gophermart.adapters.stores.postgres.pool import PgPool
from gophermart.domain.accounts import EntryKind, LedgerEntry
from gophermart.domain.orders import OrderNumber
from gophermart.domain.points import Points
from gophermart.domain.users import UserId


class NoConnections:
    def __init__(self) -> None:
        self.asked = 0

    async def get(self) -> Any:
        return self

    async def acquire(self) -> Any:
        self.asked += 1
        raise ConnectionRefusedError("sorry, too many clients already")


async def test_no_connection_fails_the_batch_with_that_error_once() -> None:
    pool = NoConnections()
    group = PgGroupCommit(cast(PgPool, pool))
    entries = [
        LedgerEntry(
            UserId(1),
            EntryKind.WITHDRAWAL,
            OrderNumber(number),
            Points(100),
            datetime.now(UTC),
        )
        for number in ("79927398713", "12345678903", "9278923470")
    ]
    results = await asyncio.gather(*(group.debit(e) for e in entries), return_exceptions=True)
    assert all(isinstance(r, ConnectionRefusedError) for r in results)
    assert pool.asked == 1  # one batch, one attempt: not once more per debit
    with pytest.raises(ConnectionRefusedError):  # and the next batch tries again
        await group.debit(entries[0])
