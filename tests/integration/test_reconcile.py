"""``gophermart reconcile`` and ``Gophermart.reconcile()`` report what they find, on
every database: a tampered balance, an accrual credited wrongly, a credit without its
order; the command exits 1 with the list (SPEC: audit tools report, never crash)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from sqlalchemy import text

from gophermart import Gophermart, StoreUnavailable
from gophermart.settings import Settings
from gophermart.testing import TEST_SECRET, loyalty_for_tests
from tests.pg_proxy import PgProxy
from tests.sql_database import database_for

ORDER, SPENT, OTHER = "9278923470", "2377225624", "12345678903"


async def _tamper(database_uri: str, *statements: str) -> None:
    database = database_for(database_uri)
    try:
        async with database.write.begin() as conn:
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await database.dispose()


async def test_a_tampered_ledger_is_reported_item_by_item(database_uri: str) -> None:
    async with loyalty_for_tests(database_uri=database_uri) as loyalty:
        alice = await loyalty.register("alice", "pw")
        await loyalty.upload_order(alice.user_id, ORDER)
        await loyalty.upload_order(alice.user_id, OTHER)
        await loyalty.record_accrual(ORDER, "729.98")
        await loyalty.withdraw(alice.user_id, SPENT, "100.5")
        assert (await loyalty.reconcile()).ok
        await _tamper(
            database_uri,
            "UPDATE gophermart_accounts SET balance = balance + 5000",
            f"UPDATE gophermart_orders SET accrual = 72999 WHERE number = '{ORDER}'",
            "INSERT INTO gophermart_ledger (user_id, kind, order_number, amount, created_at) "
            f"VALUES ({alice.user_id}, 'accrual', '{OTHER}', 700, CURRENT_TIMESTAMP)",
        )
        report = await loyalty.reconcile()
    assert not report.ok
    user = alice.user_id
    assert report.problems == [
        f"user {user}: balance 679.48 but its entries add up to 636.48",
        f"order {ORDER}: accrual 729.99 for user {user}, credit 729.98 to user {user}",
        f"credit for order {OTHER} (user {user}) has no PROCESSED order",
    ]
    assert (report.accounts, report.processed_orders, report.ledger_entries) == (1, 1, 3)


async def test_a_withdrawal_refunded_beyond_its_amount_is_reported(database_uri: str) -> None:
    async with loyalty_for_tests(database_uri=database_uri) as loyalty:
        alice = await loyalty.register("alice", "pw")
        await loyalty.upload_order(alice.user_id, ORDER)
        await loyalty.record_accrual(ORDER, "729.98")
        await loyalty.withdraw(alice.user_id, SPENT, "100.5")
        await _tamper(
            database_uri,
            "INSERT INTO gophermart_ledger (user_id, kind, order_number, amount, created_at) "
            f"VALUES ({alice.user_id}, 'withdrawal_refund', '{SPENT}', 6000, CURRENT_TIMESTAMP),"
            f" ({alice.user_id}, 'withdrawal_refund', '{SPENT}', 5000, CURRENT_TIMESTAMP)",
        )
        report = await loyalty.reconcile()
    assert f"withdrawal for order {SPENT}: 100.5, refunded 110" in report.problems


async def test_the_command_lists_the_mismatches_and_exits_1(database_uri: str) -> None:
    async with loyalty_for_tests(database_uri=database_uri) as loyalty:
        bob = await loyalty.register("bob", "pw")
    await _tamper(database_uri, "UPDATE gophermart_accounts SET balance = balance + 5000")
    result = subprocess.run(
        [sys.executable, "-m", "gophermart", "reconcile", "-d", database_uri],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert f"user {bob.user_id}: balance 50 but its entries add up to 0" in result.stdout
    assert "1 problem(s)" in result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.postgres
async def test_an_audit_of_a_hung_database_ends_within_a_bound(postgres_uri: str) -> None:
    """Before: reconcile never answered (> 40 s) with the database hung. Its statements
    have no deadline (an audit may rightly run long), but probes notice a hung server."""
    with PgProxy() as proxy:
        settings = Settings.for_database(
            proxy.uri_for(postgres_uri), secret=TEST_SECRET, db_timeout=0.5
        )
        async with Gophermart.from_settings(settings) as audited:
            assert (await audited.reconcile()).ok
            proxy.freeze()
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await audited.reconcile()
            assert time.monotonic() - started < 5.0
            proxy.resume()
