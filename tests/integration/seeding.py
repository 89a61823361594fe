"""Putting points on an account the way the worker would, straight into the database.

The HTTP tests of withdrawals need a balance without waiting for an accrual round;
this writes a PROCESSED order, its ledger credit and the balance in one transaction,
so ``gophermart reconcile`` still finds everything consistent.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime

from sqlalchemy import insert, select, update

from gophermart.adapters.stores.sql.schema import accounts, ledger, orders, users
from tests.luhn_reference import with_check_digit
from tests.sql_database import database_for

luhn = with_check_digit  # the tests' name for it: `prefix` plus its check digit

_counter = itertools.count(1)


async def _seed(database_uri: str, login: str, cents: int) -> str:
    database = database_for(database_uri)
    number = with_check_digit(f"77{next(_counter):08d}{abs(hash(login)) % 10**6:06d}")
    now = datetime.now(UTC)
    try:
        async with database.write.begin() as conn:
            user_id = await conn.scalar(select(users.c.id).where(users.c.login == login))
            assert user_id is not None, f"no user {login}"
            await conn.execute(
                insert(orders).values(
                    number=number,
                    user_id=user_id,
                    status="PROCESSED",
                    accrual=cents,
                    uploaded_at=now,
                    attempts=1,
                )
            )
            await conn.execute(
                insert(ledger).values(
                    user_id=user_id,
                    kind="accrual",
                    order_number=number,
                    amount=cents,
                    created_at=now,
                )
            )
            await conn.execute(
                update(accounts)
                .where(accounts.c.user_id == user_id)
                .values(balance=accounts.c.balance + cents)
            )
    finally:
        await database.dispose()
    return number


def seed_points(database_uri: str, login: str, cents: int) -> str:
    """Credit ``cents`` to ``login``; returns the order number that earned them."""
    return asyncio.run(_seed(database_uri, login, cents))
