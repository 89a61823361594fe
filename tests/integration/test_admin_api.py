"""The operators' routes (``/api/admin/``, issue 17) in process, on SQLite and PostgreSQL.

Auth: an operator key opens them and nothing else opens them (no key, another scheme, a
malformed, unknown or revoked key, a shopper's token or cookie: 401 with JSON and
``WWW-Authenticate``); a key never opens a shopper route. The routes: a user by login
(as log-in folds it), an order and where it stands in the queue (why it is parked,
after a real worker parked it), and a retry; with their 400/404/409/422. A handler
knows which operator it serves (``operator_of``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from dependency_injector import providers
from litestar import Controller, Litestar, Request, Router, get
from litestar.testing import TestClient

from gophermart import Gophermart
from gophermart.application.ports import AccrualReply
from gophermart.bootstrap import build
from gophermart.domain.orders import AccrualVerdict
from gophermart.domain.points import Points
from gophermart.entrypoints.http.app import http_app, loyalty_lifespan
from gophermart.entrypoints.http.auth import OPERATOR_KEY, operator_of, requires
from gophermart.entrypoints.http.errors import EXCEPTION_HANDLERS
from gophermart.entrypoints.http.mount import Mount
from gophermart.settings import Settings
from gophermart.testing import TEST_SECRET, PlainPasswordHasher, ScriptedAccrual
from tests.conftest import throwaway_postgres
from tests.integration.seeding import luhn, seed_points

BIGINT_MAX = 2**63 - 1
ADMIN_ROUTES = [
    ("GET", "/api/admin/users/alice"),
    ("GET", "/api/admin/orders/12345678903"),
    ("POST", "/api/admin/orders/12345678903/retry"),
]
SHOPPER_ROUTES = [
    ("GET", "/api/user/balance"),
    ("GET", "/api/user/orders"),
    ("GET", "/api/user/withdrawals"),
    ("POST", "/api/user/orders"),
    ("POST", "/api/user/balance/withdraw"),
]


@dataclass
class Admin:
    client: TestClient[Any]
    loyalty: Gophermart
    accrual: ScriptedAccrual
    database_uri: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        """The key, and a fresh Idempotency-Key (required on operator writes)."""
        return {"Authorization": f"Bearer {self.key}", "Idempotency-Key": uuid.uuid4().hex}

    def call(self, verb: Any, *args: Any) -> Any:
        """A verb of the app's facade, on the app's event loop."""
        with self.client.portal() as portal:
            return portal.call(verb, *args)

    def shopper(self) -> tuple[str, dict[str, str]]:
        """A new user: (login, their Bearer header); the client keeps no cookie."""
        login = f"shopper-{uuid.uuid4().hex[:8]}"
        registered = self.client.post("/api/user/register", json={"login": login, "password": "pw"})
        assert registered.status_code == 200, registered.text
        self.client.cookies.clear()
        return login, {"Authorization": registered.headers["authorization"]}


def _admin(database_uri: str) -> Iterator[Admin]:
    """The real stores and tokens; a plain hasher, and a scripted accrual system for the
    worker the tests run by hand."""
    container = build(Settings.for_database(database_uri, secret=TEST_SECRET))
    accrual = ScriptedAccrual()
    container.hasher.override(providers.Object(PlainPasswordHasher()))
    container.accrual_client.override(providers.Object(accrual))
    loyalty = Gophermart(container)
    with TestClient(http_app(loyalty)) as client:
        admin = Admin(client, loyalty, accrual, database_uri, "")
        admin.key = admin.call(loyalty.add_operator, "support")
        yield admin


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def admin(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Admin]:
    if request.param == "sqlite":
        yield from _admin(f"sqlite:///{tmp_path_factory.mktemp('admin') / 'admin.db'}")
    else:
        request.getfixturevalue("postgres_available")
        with throwaway_postgres() as uri:
            yield from _admin(uri)


def _refused(response: Any) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["content-type"].startswith("application/json")
    assert set(response.json()) == {"error"}


# --- who gets in ----------------------------------------------------------------------


def test_only_an_operator_key_opens_the_admin_routes(admin: Admin) -> None:
    _login, shopper = admin.shopper()
    token = shopper["Authorization"].removeprefix("Bearer ")
    wrong: list[dict[str, str]] = [
        {},
        {"Authorization": f"Basic {admin.key}"},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {admin.key[:-1]}"},
        {"Authorization": "Bearer gmo_" + "A" * 43},  # well-formed, unknown
        shopper,  # a shopper's token never opens an admin route
    ]
    for method, path in ADMIN_ROUTES:
        for headers in wrong:
            _refused(admin.client.request(method, path, headers=headers))
        admin.client.cookies.set("token", token)  # nor the shopper's cookie
        _refused(admin.client.request(method, path))
        admin.client.cookies.clear()
        opened = admin.client.request(method, path, headers=admin.headers)
        assert opened.status_code == 404, opened.text  # in: nobody is alice, no such order


def test_an_operator_key_never_opens_a_shopper_route(admin: Admin) -> None:
    for method, path in SHOPPER_ROUTES:
        _refused(admin.client.request(method, path, headers=admin.headers, content=b"{}"))
        admin.client.cookies.set("token", admin.key)
        _refused(admin.client.request(method, path, content=b"{}"))
        admin.client.cookies.clear()


def test_a_revoked_key_is_refused_at_once(admin: Admin) -> None:
    key = admin.call(admin.loyalty.add_operator, "temp")
    headers = {"Authorization": f"Bearer {key}"}
    assert admin.client.get("/api/admin/users/nobody", headers=headers).status_code == 404
    admin.call(admin.loyalty.revoke_operator, "temp")
    for method, path in ADMIN_ROUTES:
        _refused(admin.client.request(method, path, headers=headers))
    assert admin.client.get("/api/admin/users/nobody", headers=admin.headers).status_code == 404


# --- the routes -----------------------------------------------------------------------


def test_a_user_is_found_by_login_as_log_in_finds_it(admin: Admin) -> None:
    login, _ = admin.shopper()
    seed_points(admin.database_uri, login, 500_50)
    fullwidth = "".join(chr(ord(c) + 0xFEE0) if c.isalnum() else c for c in login)
    found = admin.client.get(f"/api/admin/users/{fullwidth}", headers=admin.headers)
    assert found.status_code == 200, found.text
    body = found.json()
    assert isinstance(body.pop("id"), int)
    assert body == {
        "login": login,
        "current": 500.5,
        "withdrawn": 0,
        "held": 0,
        "owed": 0,
        "holds": [],
    }
    assert Decimal(found.text.split('"current":')[1].split(",")[0]) == Decimal("500.5")
    decomposed = uuid.uuid4().hex[:6] + "e\u0301" * 50  # 56 characters once composed
    registered = admin.client.post(
        "/api/user/register", json={"login": decomposed, "password": "pw"}
    )
    assert registered.status_code == 200, registered.text
    admin.client.cookies.clear()
    typed = admin.client.get(f"/api/admin/users/{decomposed}", headers=admin.headers)
    assert typed.status_code == 200, typed.text  # 106 code points as typed
    assert typed.json()["login"] == decomposed[:6] + "\u00e9" * 50
    unknown = admin.client.get("/api/admin/users/nobody-at-all", headers=admin.headers)
    assert (unknown.status_code, set(unknown.json())) == (404, {"error"})
    malformed = admin.client.get("/api/admin/users/%20padded", headers=admin.headers)
    assert malformed.status_code == 400, malformed.text


def test_an_order_and_its_place_in_the_queue(admin: Admin) -> None:
    login, shopper = admin.shopper()
    number = luhn("31" + uuid.uuid4().hex[:8].translate(str.maketrans("abcdef", "123456")))
    admin.client.post("/api/user/orders", content=number, headers=shopper)
    found = admin.client.get(f"/api/admin/orders/{number}", headers=admin.headers)
    assert found.status_code == 200, found.text
    body = found.json()
    due = datetime.fromisoformat(body.pop("next_attempt_at"))
    assert abs(due - datetime.now(UTC)) < timedelta(minutes=1)
    assert body == {
        "number": number,
        "login": login,
        "status": "NEW",
        "accrual": None,
        "reversed": 0,
        "attempts": 0,
        "parked": None,
    }
    for path, status in (("12a3", 400), ("1" * 65, 400), ("12345678902", 422)):
        answer = admin.client.get(f"/api/admin/orders/{path}", headers=admin.headers)
        assert answer.status_code == status, (path, answer.text)
        assert set(answer.json()) == {"error"}


def test_a_parked_order_says_why_and_a_retry_polls_it_again(admin: Admin) -> None:
    login, shopper = admin.shopper()
    seed_points(admin.database_uri, login, BIGINT_MAX)  # no credit fits any more
    number = luhn("32" + uuid.uuid4().hex[:8].translate(str.maketrans("abcdef", "123456")))
    assert admin.client.post("/api/user/orders", content=number, headers=shopper).status_code == 202
    admin.accrual.will_answer(number, AccrualReply(AccrualVerdict.PROCESSED, Points(1_00)))
    sync = admin.loyalty.container.accrual_sync()
    while admin.call(sync.run_once):  # the real worker, on the real store: it parks it
        pass
    parked = admin.client.get(f"/api/admin/orders/{number}", headers=admin.headers).json()
    assert parked["parked"].startswith("its accrual of 1 cannot be credited")
    assert parked["attempts"] >= 1 and parked["status"] == "NEW"
    later = datetime.fromisoformat(parked["next_attempt_at"]) - datetime.now(UTC)
    assert later > timedelta(minutes=50)  # asked again hourly

    retried = admin.client.post(f"/api/admin/orders/{number}/retry", headers=admin.headers)
    assert retried.status_code == 200, retried.text
    body = retried.json()
    assert body["parked"] is None and body["number"] == number
    assert datetime.fromisoformat(body["next_attempt_at"]) <= datetime.now(UTC)
    assert admin.client.get(f"/api/admin/orders/{number}", headers=admin.headers).json() == body


def test_a_final_unknown_or_malformed_order_is_not_retried(admin: Admin) -> None:
    final = seed_points(admin.database_uri, admin.shopper()[0], 1_00)  # a PROCESSED order
    refused = admin.client.post(f"/api/admin/orders/{final}/retry", headers=admin.headers)
    assert refused.status_code == 409, refused.text
    assert "final" in refused.json()["error"]
    for number, status in (("9278923470", 404), ("12345678902", 422), ("x1", 400)):
        answer = admin.client.post(f"/api/admin/orders/{number}/retry", headers=admin.headers)
        assert answer.status_code == status, (number, answer.text)


# --- the operator's name, for the handlers ------------------------------------------


@requires(OPERATOR_KEY)
class WhoAmI(Controller):
    @get("/whoami")
    async def whoami(self, request: Request[Any, Any, Any]) -> str:
        return operator_of(request)


def test_a_handler_knows_which_operator_it_serves() -> None:
    loyalty = Gophermart.in_memory(secret=TEST_SECRET)
    router = Router(
        path="/",
        route_handlers=[WhoAmI],
        opt=Mount(loyalty).opt(),
        exception_handlers=dict(EXCEPTION_HANDLERS),
    )
    with TestClient(Litestar([router], lifespan=[loyalty_lifespan(loyalty)])) as client:
        with client.portal() as portal:
            key = portal.call(loyalty.add_operator, "Renée")
        answer = client.get("/whoami", headers={"Authorization": f"Bearer {key}"})
        assert (answer.status_code, answer.text) == (200, "Renée")
        _refused(client.get("/whoami"))
