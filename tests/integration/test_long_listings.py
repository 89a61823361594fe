"""A long list of orders is read and rendered a chunk at a time (Queries.CHUNK), on
every store: the library's whole list, and the API's (streamed past one chunk), hold
every order exactly once, newest first, and pages still page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import insert, select

from gophermart import http_app
from gophermart.adapters.stores.sql.schema import orders, users
from gophermart.application.queries import Queries
from gophermart.testing import loyalty_for_tests
from tests.luhn_reference import with_check_digit
from tests.sql_database import database_for

MANY = 2 * Queries.CHUNK + 137
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _number(i: int) -> str:
    return with_check_digit(f"5{i:09d}")


async def _seed(database_uri: str, login: str) -> list[str]:
    """``MANY`` orders of ``login``, straight into the database; newest first back."""
    database = database_for(database_uri)
    try:
        async with database.write.begin() as conn:
            user_id = await conn.scalar(select(users.c.id).where(users.c.login == login))
            rows = [
                {
                    "number": _number(i),
                    "user_id": user_id,
                    "status": "NEW",
                    "uploaded_at": T0 + timedelta(seconds=i // 3),  # ties broken by id
                    "next_attempt_at": T0,
                }
                for i in range(MANY)
            ]
            await conn.execute(insert(orders), rows)
    finally:
        await database.dispose()
    return [_number(i) for i in reversed(range(MANY))]


async def test_the_library_lists_every_order_of_a_long_list(database_uri: str) -> None:
    async with loyalty_for_tests(database_uri=database_uri) as loyalty:
        alice = await loyalty.register("alice", "pw")
        expected = await _seed(database_uri, "alice")
        whole = await loyalty.orders(alice.user_id)
        assert [v.number for v in whole] == expected
        page = await loyalty.orders(alice.user_id, Queries.CHUNK + 1)  # past one chunk
        assert [v.number for v in page] == expected[: Queries.CHUNK + 1]
        rest = await loyalty.orders(alice.user_id, before=expected[99])
        assert [v.number for v in rest] == expected[100:]


async def test_the_api_streams_a_long_list_whole(database_uri: str) -> None:
    loyalty = loyalty_for_tests(database_uri=database_uri)
    async with AsyncTestClient(app=http_app(loyalty)) as client:
        signed = await client.post("/api/user/register", json={"login": "bob", "password": "p"})
        headers = {"Authorization": signed.headers["authorization"]}
        expected = await _seed(database_uri, "bob")
        answer = await client.get("/api/user/orders", headers=headers)
        assert answer.status_code == 200
        assert "content-length" not in answer.headers  # streamed, a chunk at a time
        listed: list[dict[str, Any]] = answer.json()
        assert [o["number"] for o in listed] == expected
        assert listed[0] == {
            "number": expected[0],
            "status": "NEW",
            "uploaded_at": listed[0]["uploaded_at"],
        }
        zipped = await client.get(
            "/api/user/orders", headers={**headers, "Accept-Encoding": "gzip"}
        )
        assert zipped.headers.get("content-encoding") == "gzip"
        assert [o["number"] for o in zipped.json()] == expected
        short = await client.get("/api/user/orders?limit=5", headers=headers)
        assert "content-length" in short.headers  # one chunk: answered in one go
        assert [o["number"] for o in short.json()] == expected[:5]
