"""Issue 9, findings 5, 6 and 10a, replayed over a real socket on SQLite and PostgreSQL.

Each input here gave a 500 (or a wrong answer) before: deep nesting in an ignored
field, a 5,000-digit sum, a signed token whose subject overflows the id column, a
token outliving its user or its database, and ``HEAD``. Now every one gets a 4xx with
a JSON error and changes nothing, or (the 5,000-digit ``1.000…``) its exact answer.
The database reset (finding 5) runs the API in process: it needs two starts of the
store, not of a process.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient

from gophermart import Gophermart
from gophermart.entrypoints.http.app import http_app
from tests.conftest import TEST_SECRET, Service, start_service, throwaway_postgres
from tests.integration.backdoor import delete_user, mint_token, recreate_postgres_database
from tests.integration.seeding import luhn, seed_points

PROTECTED = [
    ("GET", "/api/user/orders"),
    ("GET", "/api/user/balance"),
    ("GET", "/api/user/withdrawals"),
    ("POST", "/api/user/orders"),
    ("POST", "/api/user/balance/withdraw"),
]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    if request.param == "sqlite":
        uri = f"sqlite:///{tmp_path_factory.mktemp('hostile') / 'api.db'}"
        yield from _serve(start_service(uri))
    else:
        request.getfixturevalue("postgres_available")
        with throwaway_postgres() as uri:
            yield from _serve(start_service(uri))


def _serve(svc: Service) -> Iterator[Service]:
    try:
        yield svc
    finally:
        code = svc.stop()
        assert code == 0, f"service exited with {code}:\n{svc.output()}"
    assert "Traceback" not in svc.output(), svc.output()


@pytest.fixture
def client(api: Service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.url, timeout=30) as c:
        yield c


def signed_up(client: httpx.Client) -> tuple[str, dict[str, str]]:
    login = f"hostile-{uuid.uuid4().hex[:10]}"
    response = client.post("/api/user/register", json={"login": login, "password": "pw"})
    assert response.status_code == 200, response.text
    client.cookies.clear()
    return login, {"Authorization": response.headers["authorization"]}


def state(client: httpx.Client, auth: dict[str, str]) -> tuple[object, ...]:
    return tuple(
        (r.status_code, r.content)
        for r in (
            client.get(path, headers=auth)
            for path in ("/api/user/balance", "/api/user/orders", "/api/user/withdrawals")
        )
    )


def body_for(path: str) -> bytes:
    if path == "/api/user/orders":
        return luhn(f"7{uuid.uuid4().int % 10**12:012d}").encode()
    return b'{"order": "' + luhn("2377225").encode() + b'", "sum": 1}'


def assert_json_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, (response.request.url, response.text)
    assert response.headers["content-type"].startswith("application/json")
    assert isinstance(response.json()["error"], str)


# --- finding 6: inputs that gave 500 ---------------------------------------------

DEEP = b"[" * 2000 + b"]" * 2000


@pytest.mark.parametrize("path", ["/api/user/register", "/api/user/login"])
@pytest.mark.parametrize("nested", [DEEP, b'{"a":' * 2000 + b"1" + b"}" * 2000])
def test_deep_nesting_in_an_extra_credentials_field_is_400(
    client: httpx.Client, path: str, nested: bytes
) -> None:
    login = f"deep-{uuid.uuid4().hex[:10]}"
    body = b'{"login": "' + login.encode() + b'", "password": "pw", "extra": ' + nested + b"}"
    assert_json_error(client.post(path, content=body), 400)
    # nobody was registered under that login
    fresh = client.post("/api/user/register", json={"login": login, "password": "pw"})
    assert fresh.status_code == 200


def test_deep_nesting_in_an_extra_withdraw_field_is_400_and_charges_nothing(
    api: Service, client: httpx.Client
) -> None:
    login, auth = signed_up(client)
    seed_points(api.database_uri, login, 10_000)
    before = state(client, auth)
    body = b'{"order": "' + luhn("2377225").encode() + b'", "sum": 1, "x": ' + DEEP + b"}"
    assert_json_error(client.post("/api/user/balance/withdraw", content=body, headers=auth), 400)
    assert state(client, auth) == before


def test_a_sum_of_one_and_5000_zeros_is_exactly_one_point(
    api: Service, client: httpx.Client
) -> None:
    login, auth = signed_up(client)
    seed_points(api.database_uri, login, 10_000)
    order = luhn(f"61{uuid.uuid4().int % 10**9:09d}")
    body = b'{"order": "' + order.encode() + b'", "sum": 1.' + b"0" * 5000 + b"}"
    response = client.post("/api/user/balance/withdraw", content=body, headers=auth)
    assert response.status_code == 200, response.text
    assert client.get("/api/user/balance", headers=auth).json() == {
        "current": 99,
        "withdrawn": 1,
        "held": 0,
        "owed": 0,
    }
    # the same request again is a replay of the same 1.00, charged once
    again = client.post("/api/user/balance/withdraw", content=body, headers=auth)
    assert again.status_code == 200
    assert client.get("/api/user/balance", headers=auth).json() == {
        "current": 99,
        "withdrawn": 1,
        "held": 0,
        "owed": 0,
    }


#: Sums no withdrawal can have, as the raw JSON number texts that gave 500s.
ABSURD_SUMS = [
    b"1e999999999",
    b"1E99999999999999999999",
    b"1e-999999999",
    b"1." + b"0" * 5000 + b"1",
    b"0." + b"0" * 5000 + b"1",
    b"9" * 5000,
    b"-1e999999999",
    b"0e999999999",
]


def test_absurd_sums_are_422_and_charge_nothing(api: Service, client: httpx.Client) -> None:
    """Each sum in turn on one funded account (one sign-up, not one per sum: the state
    read after each is the same proof)."""
    login, auth = signed_up(client)
    seed_points(api.database_uri, login, 10_000)
    before = state(client, auth)
    for number in ABSURD_SUMS:
        body = b'{"order": "' + luhn("2377225").encode() + b'", "sum": ' + number + b"}"
        response = client.post("/api/user/balance/withdraw", content=body, headers=auth)
        assert response.status_code == 422, (number[:40], response.text)
        assert_json_error(response, 422)
        assert state(client, auth) == before, number[:40]


@pytest.mark.parametrize(
    "subject",
    [
        str(2**63),  # overflows the BIGINT id (the database refused it: 500)
        str(2**64 + 1),
        "9" * 5000,
        "0",
        "-1",
        "01",
        "alice",
        "1.5",
        "",
    ],
)
def test_a_signed_token_with_an_absurd_subject_is_401_everywhere(
    api: Service, client: httpx.Client, subject: str
) -> None:
    token = mint_token(api.database_uri, {"sub": subject})
    for method, path in PROTECTED:
        for auth in ({"Authorization": f"Bearer {token}"}, {"Cookie": f"token={token}"}):
            response = client.request(method, path, content=body_for(path), headers=auth)
            assert_json_error(response, 401)


def test_a_signed_token_of_a_user_that_does_not_exist_is_401_everywhere(
    api: Service, client: httpx.Client
) -> None:
    token = mint_token(api.database_uri, {"sub": str(2**63 - 1)})
    for method, path in PROTECTED:
        response = client.request(
            method, path, content=body_for(path), headers={"Authorization": f"Bearer {token}"}
        )
        assert_json_error(response, 401)


def test_the_token_of_a_deleted_user_is_401_on_every_route_gets_included(
    api: Service, client: httpx.Client
) -> None:
    """The listings answered 204 ("no orders") for a user that no longer exists."""
    login, auth = signed_up(client)
    assert client.get("/api/user/orders", headers=auth).status_code == 204  # token cached
    delete_user(api.database_uri, login)
    for method, path in PROTECTED:
        response = client.request(method, path, content=body_for(path), headers=auth)
        assert_json_error(response, 401)


# --- finding 10a: HEAD -------------------------------------------------------------


def test_head_answers_like_get_without_a_body(client: httpx.Client) -> None:
    head, get = client.head("/healthz"), client.get("/healthz")
    assert (head.status_code, get.status_code) == (200, 200)
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["content-length"] == get.headers["content-length"]

    _, auth = signed_up(client)
    assert client.post("/api/user/orders", content=body_for("/api/user/orders"), headers=auth)
    for path in ("/api/user/orders", "/api/user/balance", "/api/user/withdrawals"):
        head, get = client.head(path, headers=auth), client.get(path, headers=auth)
        assert head.status_code == get.status_code, path
        assert head.content == b""
        assert head.headers.get("content-length") == get.headers.get("content-length")
        refused = client.head(path)  # no credential: 401, still no body
        assert (refused.status_code, refused.content) == (401, b"")
    assert client.head("/api/user/register").status_code == 405  # POST-only stays POST-only
    assert client.head("/no/such/route").status_code == 404


# --- finding 5: tokens die with their database -------------------------------------


def test_a_token_minted_before_a_database_reset_is_401(database_uri: str) -> None:
    """With GOPHERMART_SECRET fixed, drop and recreate the database: the first user of
    the new one is id 1 again, and the old token of the first user of the old one
    must not speak for them. The API in this process, started on the store and stopped
    around the reset as the service would be (the key's binding to the database is the
    store's and the app's, not the process's)."""

    def api() -> TestClient[Any]:
        return TestClient(http_app(Gophermart.open(database_uri, secret=TEST_SECRET)))

    with api() as c:
        first = c.post("/api/user/register", json={"login": "first", "password": "pw"})
        assert first.status_code == 200
        stale = {"Authorization": first.headers["authorization"]}
        assert c.get("/api/user/balance", headers=stale).status_code == 200

    if database_uri.startswith("sqlite"):
        path = Path(database_uri.removeprefix("sqlite:///"))
        for leftover in path.parent.glob(path.name + "*"):  # the file, -wal and -shm
            leftover.unlink()
    else:
        recreate_postgres_database(database_uri)

    with api() as c:  # the same TEST_SECRET
        other = c.post("/api/user/register", json={"login": "newcomer", "password": "pw"})
        assert other.status_code == 200
        c.cookies.clear()
        for method, path in PROTECTED:
            response = c.request(method, path, content=body_for(path), headers=stale)
            assert response.status_code == 401, (path, response.text)
            assert response.headers["content-type"].startswith("application/json")
            assert isinstance(response.json()["error"], str)
        own = {"Authorization": other.headers["authorization"]}
        assert c.get("/api/user/orders", headers=own).status_code == 204  # untouched
