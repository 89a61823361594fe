"""A host's own test, written with gophermart.testing: in memory, fast doubles, no server.

Run with `pytest examples/test_host_checkout.py`.
"""

import asyncio

import pytest

from gophermart import InsufficientPoints, OrderStatus, UploadOutcome
from gophermart.testing import ScriptedAccrual, loyalty_for_tests


def test_points_pay_for_the_next_order() -> None:
    async def scenario() -> None:
        async with loyalty_for_tests() as loyalty:
            carol = await loyalty.register("carol", "pw")
            assert await loyalty.upload_order(carol.user_id, "9278923470") is (
                UploadOutcome.ACCEPTED
            )
            await loyalty.record_accrual("9278923470", "120.5")
            assert await loyalty.withdraw(carol.user_id, "2377225624", "100")
            balance = await loyalty.balance(carol.user_id)
            assert str(balance.current) == "20.5"
            with pytest.raises(InsufficientPoints):
                await loyalty.withdraw(carol.user_id, "79927398713", "21")
            assert (await loyalty.reconcile()).ok

    asyncio.run(scenario())


def test_the_worker_credits_what_the_accrual_system_says() -> None:
    async def scenario() -> None:
        accrual = ScriptedAccrual()
        accrual.will_credit("12345678903", "42")
        async with loyalty_for_tests(accrual=accrual) as loyalty:
            dave = await loyalty.register("dave", "pw")
            await loyalty.upload_order(dave.user_id, "12345678903")
            async with loyalty.running_worker():
                for _ in range(200):
                    orders = await loyalty.orders(dave.user_id)
                    if orders[0].status is OrderStatus.PROCESSED:
                        break
                    await asyncio.sleep(0.01)
            assert orders[0].status is OrderStatus.PROCESSED
            assert str((await loyalty.balance(dave.user_id)).current) == "42"

    asyncio.run(scenario())
