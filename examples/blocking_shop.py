"""The same verbs from synchronous code (a Django or Flask shop): no event loop in sight."""

import sys

from gophermart import BlockingGophermart, InsufficientPoints, Points


def checkout(loyalty: BlockingGophermart, token: str, order: str, spend: str) -> str:
    """What a shop's checkout view would do with a shopper's token."""
    user_id = loyalty.authenticate(token)
    try:
        loyalty.withdraw(user_id, order, Points.exact(spend))
    except InsufficientPoints:
        return "not enough points"
    return f"paid {spend} with points; {loyalty.balance(user_id).current} left"


def main(url: str) -> None:
    with BlockingGophermart.open(url) as loyalty:
        bob = loyalty.register("bob", "hunter22")
        loyalty.upload_order(bob.user_id, "12345678903")
        loyalty.record_accrual("12345678903", "100")
        print(checkout(loyalty, bob.token, "2377225624", "42.5"))
        print(checkout(loyalty, bob.token, "79927398713", "1000"))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "sqlite:///blocking_shop.db")
