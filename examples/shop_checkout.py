"""A shop's checkout in one transaction: the shop's order row and the points it spends
commit together, or not at all (docs/embedding.md, "Points in the shop's transaction").

The shop keeps its own tables on its own engine, named ``users`` and ``orders`` like
anyone's, and its own Alembic history if it has one; Gophermart lives beside them on the
same engine (its tables are named ``gophermart_*``) and touches none of them.

Run with a database URL: ``python shop_checkout.py sqlite:///shop.db`` or
``python shop_checkout.py postgresql://user@host/shop`` (``gophermart[postgres]``).
"""

import asyncio
import sys

from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from gophermart import Gophermart, InsufficientPoints, Points

# --- the shop's own schema (the shop's business, not ours) --------------------------------

shop = MetaData()
customers = Table(
    "users",
    shop,
    Column("id", Integer, primary_key=True),
    Column("email", String(200), nullable=False),
    Column("loyalty_id", Integer, nullable=False),  # the user id Gophermart gave them
)
purchases = Table(
    "orders",
    shop,
    Column("number", String(32), primary_key=True),
    Column("customer_id", ForeignKey("users.id"), nullable=False),
    Column("total_cents", Integer, nullable=False),
    Column("points_cents", Integer, nullable=False),
)


class CardDeclined(Exception):
    """The card payment for the rest of the total failed."""


async def checkout(
    engine: AsyncEngine,
    loyalty: Gophermart,
    customer_id: int,
    number: str,
    total: Points,
    points: Points,
    card_ok: bool,
) -> str:
    """The order row, the points and the card charge: all of it, or none of it."""
    try:
        async with engine.begin() as conn:  # the shop's own transaction
            loyalty_id = await conn.scalar(
                select(customers.c.loyalty_id).where(customers.c.id == customer_id)
            )
            assert loyalty_id is not None
            await conn.execute(
                insert(purchases).values(
                    number=number,
                    customer_id=customer_id,
                    total_cents=total.cents,
                    points_cents=points.cents,
                )
            )
            # The points move in this transaction: they commit with the order row above,
            # or roll back with it.
            await loyalty.withdraw(loyalty_id, number, points, connection=conn)
            if not card_ok:
                raise CardDeclined(number)  # the shop's transaction rolls back
    except CardDeclined:
        return f"{number}: card declined, nothing charged, {points} points kept"
    except InsufficientPoints as short:
        return f"{number}: {short.requested} points asked, {short.available} available"
    return f"{number}: {points} points and {total - points} by card"


def engine_for(url: str) -> AsyncEngine:
    """The shop's engine on ``url`` (a plain sqlite:/// or postgresql:// URL)."""
    scheme, rest = url.split("://", 1)
    driver = "sqlite+aiosqlite" if scheme.startswith("sqlite") else "postgresql+asyncpg"
    return create_async_engine(f"{driver}://{rest}")


async def main(url: str) -> None:
    engine = engine_for(url)
    async with engine.begin() as conn:
        await conn.run_sync(shop.create_all)
    try:
        async with Gophermart.on_engine(engine) as loyalty:  # our tables beside the shop's
            member = await loyalty.register("erin", "correct horse")
            await loyalty.upload_order(member.user_id, "9278923470")
            await loyalty.record_accrual("9278923470", "50")
            async with engine.begin() as conn:
                await conn.execute(
                    insert(customers).values(
                        id=1, email="erin@example.com", loyalty_id=member.user_id
                    )
                )
            hundred = Points.exact("100")
            for number, points, card_ok in (
                ("2377225624", Points.exact("20"), False),  # declined: no order, no points
                ("2377225624", Points.exact("20"), True),  # the same order, paid this time
                ("79927398713", Points.exact("40"), True),  # more than the 30 left
            ):
                print(await checkout(engine, loyalty, 1, number, hundred, points, card_ok))
            balance = await loyalty.balance(member.user_id)
            async with engine.connect() as conn:
                orders = (await conn.execute(select(purchases.c.number))).scalars().all()
            print(
                f"orders {list(orders)}; points {balance.current} left, {balance.withdrawn} spent"
            )
            assert list(orders) == ["2377225624"]
            assert (balance.current, balance.withdrawn) == (Points.exact(30), Points.exact(20))
    finally:
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "sqlite:///shop_checkout.db"))
