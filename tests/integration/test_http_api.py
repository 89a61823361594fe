"""The whole SPEC.md API over a real socket, on SQLite and on PostgreSQL.

One server process per engine serves the module (starting one costs a second); every
test works with its own fresh users, so tests stay independent.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import uuid
from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest

from gophermart import Gophermart, ReconcileReport
from tests.conftest import TEST_SECRET, Service, start_service, throwaway_postgres
from tests.integration.seeding import luhn, seed_points

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    if request.param == "sqlite":
        uri = f"sqlite:///{tmp_path_factory.mktemp('http') / 'api.db'}"
        svc = start_service(uri)
        yield from _serve(svc)
    else:
        request.getfixturevalue("postgres_available")
        with throwaway_postgres() as uri:
            svc = start_service(uri)
            yield from _serve(svc)


def _serve(svc: Service) -> Iterator[Service]:
    try:
        yield svc
    finally:
        code = svc.stop()
        assert code == 0, f"service exited with {code}:\n{svc.output()}"


@pytest.fixture
def client(api: Service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.url, timeout=30) as c:
        yield c


def fresh_login() -> str:
    return f"user-{uuid.uuid4().hex[:10]}"


def register(client: httpx.Client, login: str | None = None, password: str = "s3cret!") -> str:  # noqa: S107
    """Registers a user; returns the bearer token."""
    response = client.post(
        "/api/user/register", json={"login": login or fresh_login(), "password": password}
    )
    assert response.status_code == 200, response.text
    return bearer(response)


def bearer(response: httpx.Response) -> str:
    scheme, _, token = response.headers["authorization"].partition(" ")
    assert scheme == "Bearer" and token
    return token


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- register and login ---------------------------------------------------------


def test_register_returns_the_credential_in_header_and_httponly_cookie(
    client: httpx.Client,
) -> None:
    response = client.post("/api/user/register", json={"login": fresh_login(), "password": "pw"})
    assert response.status_code == 200
    token = bearer(response)
    cookie = response.headers["set-cookie"]
    assert f"token={token}" in cookie
    assert "HttpOnly" in cookie
    assert client.cookies.get("token") == token


def test_register_twice_is_409_and_login_then_works(client: httpx.Client) -> None:
    login = fresh_login()
    register(client, login, "right")
    again = client.post("/api/user/register", json={"login": login, "password": "other"})
    assert again.status_code == 409
    ok = client.post("/api/user/login", json={"login": login, "password": "right"})
    assert ok.status_code == 200
    assert "HttpOnly" in ok.headers["set-cookie"]
    assert client.get("/api/user/balance", headers=auth(bearer(ok))).status_code == 200


def test_login_with_wrong_password_or_unknown_user_is_401(client: httpx.Client) -> None:
    login = fresh_login()
    register(client, login, "right")
    wrong = client.post("/api/user/login", json={"login": login, "password": "wrong"})
    unknown = client.post("/api/user/login", json={"login": fresh_login(), "password": "x"})
    assert (wrong.status_code, unknown.status_code) == (401, 401)
    assert "authorization" not in wrong.headers
    assert "set-cookie" not in wrong.headers


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"",
        b"[]",
        b'{"login": "a"}',
        b'{"password": "a"}',
        b'{"login": 1, "password": "a"}',
        b'{"login": "a", "password": null}',
        b'{"login": "", "password": "a"}',
        b'{"login": "a", "password": ""}',
        b'{"login": "   ", "password": "a"}',
        b'{"login": "' + b"x" * 65 + b'", "password": "a"}',
        b'{"login": "a", "password": "' + b"p" * 257 + b'"}',
        b'{"login": "a\\u0000b", "password": "a"}',
        b'\xff\xfe{"login": "a", "password": "b"}',
    ],
)
def test_malformed_credentials_are_400_and_register_nobody(
    client: httpx.Client, body: bytes
) -> None:
    for path in ("/api/user/register", "/api/user/login"):
        response = client.post(path, content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, (path, body, response.text)
        assert response.headers["content-type"].startswith("application/json")


def test_repeated_login_failures_are_refused_with_429_and_retry_after(client: httpx.Client) -> None:
    login = fresh_login()
    register(client, login, "right")
    codes = [
        client.post("/api/user/login", json={"login": login, "password": f"guess{i}"}).status_code
        for i in range(7)
    ]
    assert codes[:5] == [401] * 5
    assert 429 in codes[5:]
    refused = client.post("/api/user/login", json={"login": login, "password": "right"})
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1


# --- authentication guard -------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/user/orders", "/api/user/balance", "/api/user/withdrawals"])
def test_protected_reads_need_a_valid_credential(client: httpx.Client, path: str) -> None:
    token = register(client)
    client.cookies.clear()
    header, payload, signature = token.split(".")
    tampered = f"{header}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    assert client.get(path).status_code == 401
    for bad in ("garbage", tampered, token + "x", "a.b.c"):
        assert client.get(path, headers=auth(bad)).status_code == 401, bad
    assert client.get(path, headers={"Authorization": f"Basic {token}"}).status_code == 401
    assert client.get(path, headers=auth(token)).status_code in (200, 204)
    assert client.get(path, headers={"Cookie": f"token={token}"}).status_code in (200, 204)
    assert client.get(path, headers={"Cookie": f"token={tampered}"}).status_code == 401


def test_protected_writes_need_a_credential(client: httpx.Client) -> None:
    client.cookies.clear()
    assert client.post("/api/user/orders", content="12345678903").status_code == 401
    withdraw = client.post("/api/user/balance/withdraw", json={"order": "2377225624", "sum": 1})
    assert withdraw.status_code == 401


# --- orders ---------------------------------------------------------------------


def test_order_upload_codes(client: httpx.Client) -> None:
    alice, bob = register(client), register(client)
    client.cookies.clear()
    number = luhn(f"4{uuid.uuid4().int % 10**12:012d}")
    text = {"Content-Type": "text/plain"}
    assert (
        client.post("/api/user/orders", content=number, headers={**auth(alice), **text}).status_code
        == 202
    )
    assert (
        client.post(
            "/api/user/orders", content=number + "\n", headers={**auth(alice), **text}
        ).status_code
        == 200
    )
    assert (
        client.post("/api/user/orders", content=number, headers={**auth(bob), **text}).status_code
        == 409
    )
    assert (
        client.post(
            "/api/user/orders", content="12345678901", headers={**auth(alice), **text}
        ).status_code
        == 422
    )
    assert (
        client.post(
            "/api/user/orders", content="12a45", headers={**auth(alice), **text}
        ).status_code
        == 422
    )
    assert (
        client.post("/api/user/orders", content="", headers={**auth(alice), **text}).status_code
        == 400
    )
    assert (
        client.post("/api/user/orders", content="  \n", headers={**auth(alice), **text}).status_code
        == 400
    )
    listed = client.get("/api/user/orders", headers=auth(bob))
    assert listed.status_code == 204  # bob's 409 recorded nothing


def test_orders_are_listed_newest_first_with_rfc3339_times(client: httpx.Client) -> None:
    token = register(client)
    client.cookies.clear()
    assert client.get("/api/user/orders", headers=auth(token)).status_code == 204
    numbers = [luhn(f"5{uuid.uuid4().int % 10**12:012d}") for _ in range(3)]
    for number in numbers:
        response = client.post("/api/user/orders", content=number, headers=auth(token))
        assert response.status_code == 202
    response = client.get("/api/user/orders", headers=auth(token))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    orders = response.json()
    assert [o["number"] for o in orders] == numbers[::-1]
    for order in orders:
        assert order["status"] == "NEW"
        assert "accrual" not in order
        assert RFC3339.match(order["uploaded_at"]), order["uploaded_at"]
        assert datetime.fromisoformat(order["uploaded_at"]).tzinfo is not None


def test_orders_come_in_pages_on_request(client: httpx.Client) -> None:
    """?limit= and ?before= (the last number of the previous page); without them the
    answer is the whole list, as before."""
    token = register(client)
    client.cookies.clear()
    numbers = [luhn(f"6{uuid.uuid4().int % 10**12:012d}") for _ in range(5)]
    for number in numbers:
        assert (
            client.post("/api/user/orders", content=number, headers=auth(token)).status_code == 202
        )
    newest_first = numbers[::-1]
    whole = client.get("/api/user/orders", headers=auth(token)).json()
    assert [o["number"] for o in whole] == newest_first
    seen: list[str] = []
    params: dict[str, str | int] = {"limit": 2}
    while True:
        page = client.get("/api/user/orders", params=params, headers=auth(token))
        if page.status_code == 204:
            break
        assert page.status_code == 200
        seen += [o["number"] for o in page.json()]
        params = {"limit": 2, "before": seen[-1]}
    assert seen == newest_first
    after = client.get("/api/user/orders", params={"before": seen[1]}, headers=auth(token))
    assert [o["number"] for o in after.json()] == newest_first[2:]
    for bad in ({"limit": 0}, {"limit": "x"}, {"limit": 10_001}, {"before": "12a"}):
        refused = client.get("/api/user/orders", params=bad, headers=auth(token))
        assert refused.status_code == 400, (bad, refused.text)
        assert "error" in refused.json()
    assert client.get("/api/user/orders", params={"limit": 2}).status_code == 401


def test_new_account_balance_is_zero(client: httpx.Client) -> None:
    token = register(client)
    response = client.get("/api/user/balance", headers=auth(token))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"current": 0, "withdrawn": 0, "held": 0, "owed": 0}


# --- withdrawals ----------------------------------------------------------------


def test_withdraw_flow_exact_amounts_and_listing(api: Service, client: httpx.Client) -> None:
    login = fresh_login()
    token = register(client, login)
    client.cookies.clear()
    seed_points(api.database_uri, login, 72_998)  # 729.98
    h = auth(token)
    assert client.get("/api/user/withdrawals", headers=h).status_code == 204
    first, second = luhn("2377225"), luhn(f"88{uuid.uuid4().int % 10**9:09d}")
    ok = client.post("/api/user/balance/withdraw", json={"order": first, "sum": 751}, headers=h)
    assert ok.status_code == 402  # 751 > 729.98: nothing changes
    assert client.get("/api/user/balance", headers=h).json() == {
        "current": 729.98,
        "withdrawn": 0,
        "held": 0,
        "owed": 0,
    }
    body = b'{"order": "' + first.encode() + b'", "sum": 0.1}'
    assert client.post("/api/user/balance/withdraw", content=body, headers=h).status_code == 200
    body = b'{"order": "' + second.encode() + b'", "sum": 500.55}'
    assert client.post("/api/user/balance/withdraw", content=body, headers=h).status_code == 200
    balance = client.get("/api/user/balance", headers=h)
    assert (
        balance.text.replace(" ", "") == '{"current":229.33,"withdrawn":500.65,"held":0,"owed":0}'
    )
    listed = client.get("/api/user/withdrawals", headers=h)
    assert listed.status_code == 200
    items = listed.json()
    assert [(w["order"], w["sum"]) for w in items] == [(second, 500.55), (first, 0.1)]
    assert all(RFC3339.match(w["processed_at"]) for w in items)


#: Withdrawals refused whatever the balance: (body, status).
WITHDRAW_REFUSALS: list[tuple[dict[str, object], int]] = [
    ({"order": "12345678901", "sum": 1}, 422),  # Luhn fails
    ({"order": "12a4", "sum": 1}, 422),
    ({"order": "2377225624", "sum": 0}, 422),
    ({"order": "2377225624", "sum": -5}, 422),
    ({"order": "2377225624", "sum": 1.005}, 422),  # more than two decimals
    ({"order": "2377225624", "sum": 1e30}, 422),  # absurdly large
    ({"order": "2377225624", "sum": "5"}, 400),  # wrong type
    ({"order": "2377225624", "sum": None}, 400),
    ({"order": "2377225624"}, 400),
    ({"sum": 5}, 400),
    ({"order": 2377225624, "sum": 5}, 400),
]


def test_withdraw_validation(api: Service, client: httpx.Client) -> None:
    """Each refusal, one after another on one funded account: each answers its status
    and leaves the balance as it was (one account, not one per case: a registration
    hashes a password, and the balance check after each case is the same proof)."""
    login = fresh_login()
    token = register(client, login)
    client.cookies.clear()
    seed_points(api.database_uri, login, 10_000)
    for body, status in WITHDRAW_REFUSALS:
        response = client.post("/api/user/balance/withdraw", json=body, headers=auth(token))
        assert response.status_code == status, (body, response.text)
        assert client.get("/api/user/balance", headers=auth(token)).json() == {
            "current": 100,
            "withdrawn": 0,
            "held": 0,
            "owed": 0,
        }, body


def test_withdraw_malformed_json_is_400(client: httpx.Client) -> None:
    token = register(client)
    response = client.post("/api/user/balance/withdraw", content=b"{oops", headers=auth(token))
    assert response.status_code == 400


def test_identical_withdrawal_is_charged_once_and_a_different_one_conflicts(
    api: Service, client: httpx.Client
) -> None:
    login = fresh_login()
    token = register(client, login)
    client.cookies.clear()
    seed_points(api.database_uri, login, 10_000)
    h, order = auth(token), luhn(f"66{uuid.uuid4().int % 10**9:09d}")
    for _ in range(3):
        response = client.post(
            "/api/user/balance/withdraw", json={"order": order, "sum": 30}, headers=h
        )
        assert response.status_code == 200
    conflict = client.post(
        "/api/user/balance/withdraw", json={"order": order, "sum": 31}, headers=h
    )
    assert conflict.status_code == 409
    other = register(client)
    client.cookies.clear()
    stolen = client.post(
        "/api/user/balance/withdraw", json={"order": order, "sum": 30}, headers=auth(other)
    )
    assert stolen.status_code == 409
    assert client.get("/api/user/balance", headers=h).json() == {
        "current": 70,
        "withdrawn": 30,
        "held": 0,
        "owed": 0,
    }


def test_concurrent_withdrawals_never_overdraw(api: Service, client: httpx.Client) -> None:
    login = fresh_login()
    token = register(client, login)
    seed_points(api.database_uri, login, 10_000)  # 100.00

    async def storm() -> list[int]:
        async with httpx.AsyncClient(base_url=api.url, timeout=60, headers=auth(token)) as c:
            requests = [
                c.post(
                    "/api/user/balance/withdraw",
                    json={"order": luhn(f"9{i:03d}{uuid.uuid4().int % 10**8:08d}"), "sum": 10},
                )
                for i in range(30)
            ]
            return [r.status_code for r in await asyncio.gather(*requests)]

    codes = asyncio.run(storm())
    assert sorted(codes) == [200] * 10 + [402] * 20
    assert client.get("/api/user/balance", headers=auth(token)).json() == {
        "current": 0,
        "withdrawn": 100,
        "held": 0,
        "owed": 0,
    }
    assert_reconciled(api)


def test_the_same_withdrawal_sent_concurrently_is_charged_once(
    api: Service, client: httpx.Client
) -> None:
    login = fresh_login()
    token = register(client, login)
    seed_points(api.database_uri, login, 10_000)
    order = luhn(f"31{uuid.uuid4().int % 10**9:09d}")

    async def twice() -> list[int]:
        async with httpx.AsyncClient(base_url=api.url, timeout=60, headers=auth(token)) as c:
            body = {"order": order, "sum": 25.5}
            responses = await asyncio.gather(
                *(c.post("/api/user/balance/withdraw", json=body) for _ in range(8))
            )
            return [r.status_code for r in responses]

    assert asyncio.run(twice()) == [200] * 8
    assert client.get("/api/user/balance", headers=auth(token)).json() == {
        "current": 74.5,
        "withdrawn": 25.5,
        "held": 0,
        "owed": 0,
    }
    assert len(client.get("/api/user/withdrawals", headers=auth(token)).json()) == 1
    assert_reconciled(api)


def assert_reconciled(api: Service) -> None:
    """Every balance matches the ledger: the audit `gophermart reconcile` runs, through the
    library face in this process (the command itself: test_accrual_e2e, test_db_faults)."""

    async def audit() -> ReconcileReport:
        async with Gophermart.open(api.database_uri, secret=TEST_SECRET) as loyalty:
            return await loyalty.reconcile()

    report = asyncio.run(audit())
    assert report.ok, report.summary()


# --- wire details ---------------------------------------------------------------


def test_gzip_both_ways(client: httpx.Client) -> None:
    login = fresh_login()
    body = gzip.compress(json.dumps({"login": login, "password": "pw"}).encode())
    response = client.post(
        "/api/user/register",
        content=body,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert response.status_code == 200
    token = bearer(response)
    number = luhn(f"3{uuid.uuid4().int % 10**10:010d}")
    upload = client.post(
        "/api/user/orders",
        content=gzip.compress(number.encode()),
        headers={**auth(token), "Content-Encoding": "gzip", "Content-Type": "text/plain"},
    )
    assert upload.status_code == 202
    raw = httpx.get(
        client.base_url.join("/api/user/orders"),
        headers={**auth(token), "Accept-Encoding": "gzip"},
    )
    assert raw.headers.get("content-encoding") == "gzip"
    assert raw.json()[0]["number"] == number  # httpx inflates it for us
    broken = client.post(
        "/api/user/login",
        content=b"\x1f\x8bnot really gzip",
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert broken.status_code == 400


def test_odd_requests_never_cause_a_500(client: httpx.Client) -> None:
    token = register(client)
    odd_bodies = [
        b"",
        b"{",
        b"null",
        b"[1,2]",
        b'{"order": []}',
        b"\x00\x01",
        "ж".encode(),
        b"9" * 70000,
    ]
    for body in odd_bodies:
        for method, path in [
            ("POST", "/api/user/register"),
            ("POST", "/api/user/login"),
            ("POST", "/api/user/orders"),
            ("POST", "/api/user/balance/withdraw"),
        ]:
            response = client.request(method, path, content=body, headers=auth(token))
            assert response.status_code < 500, (
                path,
                body[:20],
                response.status_code,
                response.text,
            )
