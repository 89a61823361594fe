"""The HTTP layer's own wiring, in process: each router finds its own facade, one
authentication path guards exactly the routes the document says are protected, and
``@requires`` cannot be silently bypassed."""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from litestar import Controller, Litestar, Request, get
from litestar.testing import AsyncTestClient, TestClient

from gophermart import Gophermart, http_app, http_router, loyalty_lifespan
from gophermart.entrypoints.http.app import health_app
from gophermart.entrypoints.http.auth import USER_TOKEN, requires

CREDENTIALS = {"login": "alice", "password": "correct horse"}


def _bearer(client: TestClient[Any], prefix: str) -> dict[str, str]:
    response = client.post(f"{prefix}/api/user/register", json=CREDENTIALS)
    assert response.status_code == 200, response.text
    client.cookies.clear()  # the header only, from here on
    return {"Authorization": response.headers["authorization"]}


def test_two_routers_in_one_host_each_use_their_own_facade() -> None:
    shop_a = Gophermart.in_memory(secret="a" * 40)
    shop_b = Gophermart.in_memory(secret="b" * 40)
    host = Litestar(
        route_handlers=[http_router(shop_a, path="/a"), http_router(shop_b, path="/b")],
        lifespan=[loyalty_lifespan(shop_a), loyalty_lifespan(shop_b)],
    )
    with TestClient(host) as client:
        alice_a = _bearer(client, "/a")
        alice_b = _bearer(client, "/b")  # no 409: the same login in another store
        upload = client.post("/a/api/user/orders", content="9278923470", headers=alice_a)
        assert upload.status_code == 202
        assert client.get("/a/api/user/orders", headers=alice_a).status_code == 200
        assert client.get("/b/api/user/orders", headers=alice_b).status_code == 204
        # each router checks tokens with its own facade's key
        assert client.get("/b/api/user/balance", headers=alice_a).status_code == 401
        assert client.get("/a/livez").status_code == client.get("/b/readyz").status_code == 200


@pytest.fixture(scope="module")
def app_client() -> Iterator[TestClient[Any]]:
    with TestClient(http_app(Gophermart.in_memory(secret="s" * 40))) as client:
        yield client


def test_what_the_document_protects_is_what_is_protected(app_client: TestClient[Any]) -> None:
    document = app_client.get("/schema/openapi.json").json()
    for path, item in document["paths"].items():
        if path == "/metrics":
            continue  # not served by the app (entrypoints/observe.py, when metrics are on)
        for method, operation in item.items():
            app_client.cookies.clear()
            concrete = path.replace("{hold_id}", "1")
            status = app_client.request(method.upper(), concrete, content=b"").status_code
            protected = bool(operation.get("security"))
            assert (status == 401) == protected, f"{method} {path}: {status}"


def test_options_needs_no_credential(app_client: TestClient[Any]) -> None:
    app_client.cookies.clear()
    response = app_client.options("/api/user/balance")
    assert response.status_code == 204
    assert "GET" in response.headers["allow"]


def test_a_handler_cannot_replace_the_authentication_hook() -> None:
    async def own_hook(_request: Request[Any, Any, Any]) -> None:
        return None

    class Sneaky(Controller):
        @get("/x", before_request=own_hook)
        async def x(self) -> str:
            return "no credential asked"

    with pytest.raises(TypeError, match="before_request"):
        requires(USER_TOKEN)(Sneaky)


async def test_the_worker_s_health_app_asks_its_facade() -> None:
    loyalty = Gophermart.in_memory(secret="s" * 40)
    async with loyalty, AsyncTestClient(health_app(loyalty)) as client:  # the owner starts it
        assert (await client.get("/livez")).json() == {"status": "ok"}
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "checks": ready.json()["checks"]}


# --- issue 15: the edges a hostile client found -------------------------------------


@pytest.fixture
def signed_up(app_client: TestClient[Any]) -> dict[str, str]:
    response = app_client.post(
        "/api/user/register", json={"login": f"edge-{uuid.uuid4().hex[:8]}", "password": "pw"}
    )
    assert response.status_code == 200, response.text
    app_client.cookies.clear()
    return {"Authorization": response.headers["authorization"]}


@pytest.mark.parametrize(
    ("accept", "gzipped"),
    [
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("deflate, GZIP;q=0.5", True),
        ("gzip;q=0", False),  # q=0: "not acceptable" (RFC 9110, 12.4.2)
        ("gzip; q=0.000", False),
        ("br, gzip;q=0, *;q=1", False),  # listed by name: the name's weight wins
        ("*", True),
        ("*;q=0", False),
        ("identity", False),
        ("x-gzip", True),  # the same coding (RFC 9110, 8.4.1.3)
        ("gzipped", False),
        ("", False),
    ],
)
def test_responses_are_gzipped_only_when_gzip_is_acceptable(
    app_client: TestClient[Any], signed_up: dict[str, str], accept: str, gzipped: bool
) -> None:
    """Before: any Accept-Encoding containing "gzip" got gzip, ``gzip;q=0`` included."""
    response = app_client.get("/api/user/balance", headers={**signed_up, "Accept-Encoding": accept})
    assert response.status_code == 200
    assert (response.headers.get("content-encoding") == "gzip") is gzipped, accept
    assert response.json() == {"current": 0, "withdrawn": 0, "held": 0, "owed": 0}


def _login_body() -> bytes:
    return json.dumps({"login": f"gz-{uuid.uuid4().hex[:8]}", "password": "pw"}).encode()


def test_a_gzip_body_of_several_members_is_inflated_whole(app_client: TestClient[Any]) -> None:
    """RFC 1952: a gzip stream may be several members, one after the other (``cat a.gz
    b.gz``). Before: ``400``."""
    body = _login_body()
    halves = gzip.compress(body[:10]) + gzip.compress(body[10:])
    response = app_client.post(
        "/api/user/register", content=halves, headers={"Content-Encoding": "gzip"}
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "tail", [b"garbage", b"\x00\x00\x00\x00", b"\x1f\x8b", gzip.compress(b"x", mtime=0)[:-3]]
)
def test_bytes_after_a_gzip_stream_are_refused(app_client: TestClient[Any], tail: bytes) -> None:
    """Before: whatever followed the first member was silently dropped."""
    response = app_client.post(
        "/api/user/register",
        content=gzip.compress(_login_body()) + tail,
        headers={"Content-Encoding": "gzip"},
    )
    assert response.status_code == 400, response.text
    assert response.json() == {"error": "malformed gzip body"}


@pytest.mark.parametrize(
    "query",
    [
        "limit=1e3",  # before: 1000
        "limit=1.0",
        "limit=+5",
        "limit=%205",
        "limit=5&limit=6",  # before: 6
        "limit=5&before=1&before=2",
        "before=12&%62efore=13",  # the same name, percent-encoded
        "limit=&limit=5",
    ],
)
def test_a_limit_is_plain_digits_and_no_parameter_comes_twice(
    app_client: TestClient[Any], signed_up: dict[str, str], query: str
) -> None:
    response = app_client.get(f"/api/user/orders?{query}", headers=signed_up)
    assert response.status_code == 400, (query, response.status_code, response.text)
    assert "error" in response.json()


def test_plain_pages_still_work(app_client: TestClient[Any], signed_up: dict[str, str]) -> None:
    for number in ("9278923470", "12345678903"):
        upload = app_client.post("/api/user/orders", content=number, headers=signed_up)
        assert upload.status_code == 202
    page = app_client.get("/api/user/orders?limit=1", headers=signed_up)
    assert [o["number"] for o in page.json()] == ["12345678903"]
    rest = app_client.get("/api/user/orders?limit=10&before=12345678903", headers=signed_up)
    assert [o["number"] for o in rest.json()] == ["9278923470"]


async def test_withdrawals_come_in_pages_too() -> None:
    loyalty = Gophermart.in_memory(secret="s" * 40)
    with TestClient(http_app(loyalty)) as client:
        signed = client.post("/api/user/register", json={"login": "payer", "password": "pw"})
        headers = {"Authorization": signed.headers["authorization"]}
        client.cookies.clear()
        assert (
            client.post("/api/user/orders", content="9278923470", headers=headers).status_code
            == 202
        )
        await loyalty.record_accrual("9278923470", 100)
        for number in ("2377225624", "12345678903", "79927398713"):
            body = {"order": number, "sum": 1}
            assert (
                client.post("/api/user/balance/withdraw", json=body, headers=headers).status_code
                == 200
            )
        page = client.get("/api/user/withdrawals?limit=2", headers=headers).json()
        assert [w["order"] for w in page] == ["79927398713", "12345678903"]
        rest = client.get("/api/user/withdrawals?before=12345678903", headers=headers).json()
        assert [w["order"] for w in rest] == ["2377225624"]
        bad = client.get("/api/user/withdrawals?limit=0", headers=headers)
        assert bad.status_code == 400 and "error" in bad.json()


async def test_the_worker_s_health_app_serves_no_schema_and_answers_errors_in_json() -> None:
    """Before: ``/schema`` (Swagger UI from a CDN) and ``{"status_code": 404, ...}``."""
    loyalty = Gophermart.in_memory(secret="s" * 40)
    async with loyalty, AsyncTestClient(health_app(loyalty)) as client:
        for path in ("/schema", "/schema/openapi.json", "/api/user/balance", "/nope"):
            response = await client.get(path)
            assert response.status_code == 404, path
            assert response.headers["content-type"] == "application/json"
            assert response.json() == {"error": "Not Found"}, path
        refused = await client.post("/livez")
        assert refused.status_code == 405
        assert "error" in refused.json()
