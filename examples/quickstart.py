"""Ten lines of loyalty points on SQLite: register, upload, accrue, spend."""

import asyncio
import sys

from gophermart import Gophermart


async def main(url: str) -> None:
    async with Gophermart.open(url) as loyalty:
        alice = await loyalty.register("alice", "correct horse")
        await loyalty.upload_order(alice.user_id, "9278923470")
        await loyalty.record_accrual("9278923470", "729.98")  # the shop's own reward rule
        await loyalty.withdraw(alice.user_id, "2377225624", "500")
        balance = await loyalty.balance(alice.user_id)
        print(f"current {balance.current}, withdrawn {balance.withdrawn}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "sqlite:///quickstart.db"))
