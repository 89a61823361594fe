"""The schema, tested against the running service: schemathesis generates requests for
every documented operation from /schema/openapi.json and sends them over a real socket,
on SQLite and on PostgreSQL.

Checks on every answer: no 5xx; the status code is documented for the operation (an
undocumented one is a failure); the Content-Type, the body and the documented headers
conform to the schema. Protected operations carry a real token of a user with points, so
withdrawals can succeed too. Then the register → upload → balance → withdraw flow, each
step validated the same way.

Bounded: ``MAX_EXAMPLES`` generated cases per operation and engine (a few seconds each).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks
from schemathesis.generation.case import Case

from gophermart import BlockingGophermart, Gophermart
from gophermart.entrypoints.http.app import http_app
from tests.conftest import TEST_SECRET, Service, start_service, throwaway_postgres
from tests.integration.seeding import luhn, seed_points

#: Per operation and engine; GOPHERMART_FUZZ_EXAMPLES=1000 for a deeper hunt by hand.
MAX_EXAMPLES = int(os.environ.get("GOPHERMART_FUZZ_EXAMPLES", "60"))
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]


@dataclass
class Live:
    service: Service
    token: str
    #: An operator's key (issue 17), made on the service's database: the admin routes'.
    key: str

    def headers_for(self, path: str) -> dict[str, str]:
        """The credential a route takes: an operator key under /api/admin/, else a token."""
        credential = self.key if path.startswith("/api/admin/") else self.token
        return {"Authorization": f"Bearer {credential}"}


def _register(url: str, login: str, password: str) -> str:
    response = httpx.post(
        url + "/api/user/register", json={"login": login, "password": password}, timeout=30
    )
    assert response.status_code == 200, response.text
    return response.headers["authorization"].removeprefix("Bearer ")


def _live(svc: Service) -> Iterator[Live]:
    try:
        login = f"fuzz-{uuid.uuid4().hex[:8]}"
        token = _register(svc.url, login, "fuzz password")
        seed_points(svc.database_uri, login, 10**12)  # 10 billion points: withdrawals succeed
        with BlockingGophermart.open(svc.database_uri, secret=TEST_SECRET) as beside:
            key = beside.add_operator(f"fuzz-{uuid.uuid4().hex[:8]}")
        yield Live(svc, token, key)
    finally:
        code = svc.stop()
        assert code == 0, f"service exited with {code}:\n{svc.output()}"
        output = svc.output()
        assert "Traceback" not in output, output[-5000:]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    if request.param == "sqlite":
        db: Path = tmp_path_factory.mktemp("contract") / "contract.db"
        yield from _live(start_service(f"sqlite:///{db}"))
    else:
        request.getfixturevalue("postgres_available")
        with throwaway_postgres() as uri:
            yield from _live(start_service(uri))


def _document() -> dict[str, Any]:
    """The document the service serves, built in-process at collection time (schemathesis'
    lazy ``from_fixture`` loader does not run under pytest 9); the test below checks that
    the live service serves exactly this document."""
    document: dict[str, Any] = http_app(
        Gophermart.in_memory(secret="s" * 40)
    ).openapi_schema.to_schema()
    return json.loads(json.dumps(document))


DOCUMENT = _document()
schema = schemathesis.openapi.from_dict(DOCUMENT)


@pytest.fixture(scope="module")
def api_schema() -> schemathesis.schemas.BaseSchema:
    return schema


def test_the_live_service_serves_the_fuzzed_document(live: Live) -> None:
    served = httpx.get(live.service.url + "/schema/openapi.json", timeout=10)
    assert served.status_code == 200
    assert served.json() == DOCUMENT


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=MAX_EXAMPLES <= 60,  # CI: the same cases every run, a failure reproduces
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_every_operation_conforms_to_the_schema(case: Case, live: Live) -> None:
    # The real credential, unless the generated case deliberately sends its own.
    headers = (
        {} if case.headers and "Authorization" in case.headers else live.headers_for(case.path)
    )
    response = case.call(base_url=live.service.url, headers=headers, timeout=30)
    case.validate_response(response, checks=CHECKS, headers=headers)


def test_every_spec_operation_is_fuzzed(api_schema: schemathesis.schemas.BaseSchema) -> None:
    """The parametrised test above covers what the schema lists: make sure that is all of it."""
    operations = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert operations == {
        ("POST", "/api/user/register"),
        ("POST", "/api/user/login"),
        ("POST", "/api/user/orders"),
        ("GET", "/api/user/orders"),
        ("GET", "/api/user/balance"),
        ("POST", "/api/user/balance/withdraw"),
        ("GET", "/api/user/withdrawals"),
        ("GET", "/api/user/history"),
        ("POST", "/api/user/balance/holds"),
        ("POST", "/api/user/balance/holds/{hold_id}/capture"),
        ("POST", "/api/user/balance/holds/{hold_id}/release"),
        ("GET", "/api/admin/users/{login}"),
        ("GET", "/api/admin/orders/{number}"),
        ("POST", "/api/admin/orders/{number}/retry"),
        ("GET", "/api/admin/users/{login}/history"),
        ("POST", "/api/admin/users/{login}/adjustments"),
        ("POST", "/api/admin/orders/{number}/reversals"),
        ("POST", "/api/admin/withdrawals/{number}/refunds"),
        ("POST", "/api/admin/webhooks"),
        ("GET", "/api/admin/webhooks"),
        ("DELETE", "/api/admin/webhooks/{endpoint_id}"),
        ("GET", "/api/admin/webhooks/{endpoint_id}/deliveries"),
        ("POST", "/api/admin/events/{event_id}/redeliver"),
        ("GET", "/livez"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),  # served by the server's wrapper (metrics are on by default)
    }


def test_the_register_upload_balance_withdraw_flow_conforms(
    api_schema: schemathesis.schemas.BaseSchema, live: Live
) -> None:
    url = live.service.url

    def step(method: str, path: str, status: int, headers: dict[str, str], **kwargs: object) -> Any:
        case = api_schema[path][method].Case(headers=headers, **kwargs)  # type: ignore[arg-type]
        response = case.call(base_url=url, timeout=30)
        case.validate_response(response, checks=CHECKS)
        assert response.status_code == status, response.text
        return response

    login = f"flow-{uuid.uuid4().hex[:8]}"
    credentials = {"login": login, "password": "flow password"}
    registered = step("POST", "/api/user/register", 200, {}, body=credentials)
    auth = {"Authorization": registered.headers["authorization"][0]}
    step("POST", "/api/user/login", 200, {}, body=credentials)
    number = luhn("7" + uuid.uuid4().int.__str__()[:12])
    step(
        "POST",
        "/api/user/orders",
        202,
        {**auth, "Content-Type": "text/plain"},
        body=number,
        media_type="text/plain",
    )
    step("GET", "/api/user/orders", 200, auth)
    step("GET", "/api/user/withdrawals", 204, auth)
    seed_points(live.service.database_uri, login, 100_000)
    assert step("GET", "/api/user/balance", 200, auth).json() == {
        "current": 1000,
        "withdrawn": 0,
        "held": 0,
        "owed": 0,
    }
    spend = luhn("8" + uuid.uuid4().int.__str__()[:12])
    step("POST", "/api/user/balance/withdraw", 200, auth, body={"order": spend, "sum": 751})
    step("POST", "/api/user/balance/withdraw", 402, auth, body={"order": luhn("91"), "sum": 751})
    assert step("GET", "/api/user/balance", 200, auth).json() == {
        "current": 249,
        "withdrawn": 751,
        "held": 0,
        "owed": 0,
    }
    step("GET", "/api/user/withdrawals", 200, auth)
    # an operator looks the user and the order up, and has the order polled again now
    operator = live.headers_for("/api/admin/")
    user = step("GET", "/api/admin/users/{login}", 200, operator, path_parameters={"login": login})
    assert user.json()["current"] == 249
    on_number = {"number": number}
    step("GET", "/api/admin/orders/{number}", 200, operator, path_parameters=on_number)
    once = {**operator, "Idempotency-Key": str(uuid.uuid4())}  # required on operator writes
    step("POST", "/api/admin/orders/{number}/retry", 200, once, path_parameters=on_number)
    replayed = step(
        "POST", "/api/admin/orders/{number}/retry", 200, once, path_parameters=on_number
    )
    assert replayed.headers["idempotent-replayed"] == ["true"]
