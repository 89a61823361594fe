"""The OpenAPI document: valid 3.1, every SPEC.md route with every status SPEC.md names,
real bodies, the auth schemes, SPEC's examples; the simulator's too; and Swagger UI
rendering in a real headless browser (Debian's chromium: CI installs it, never skips)."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components
from litestar.testing import TestClient
from openapi_spec_validator import validate
from openapi_spec_validator.versions.shortcuts import get_spec_version

from gophermart import Gophermart
from gophermart.entrypoints.accrual_sim import SimSettings, create_sim_app
from gophermart.entrypoints.http.app import http_app, http_router
from gophermart.entrypoints.http.openapi import SECURITY_SCHEMES
from tests.conftest import Service, start_service

SPEC_MD = Path(__file__).resolve().parents[2] / "docs" / "SPEC.md"

#: SPEC.md's "HTTP API": route → the statuses it names. Kept here too, and checked
#: against the contract (docs/SPEC.md, the shared one's copy: tests/unit/test_packaging.py).
SPEC_ROUTES: dict[tuple[str, str], set[int]] = {
    ("post", "/api/user/register"): {200, 400, 409, 500},
    ("post", "/api/user/login"): {200, 400, 401, 429, 500},
    ("post", "/api/user/orders"): {202, 200, 409, 400, 401, 422, 500},
    ("get", "/api/user/orders"): {200, 204, 401, 500},
    ("get", "/api/user/balance"): {200, 401, 500},
    ("post", "/api/user/balance/withdraw"): {200, 401, 402, 422, 400, 409, 500},
    ("get", "/api/user/withdrawals"): {200, 204, 401, 500},
}
#: SPEC.md's "The ledger a shop runs on": the shopper's routes and the statuses it names.
LEDGER_ROUTES: dict[tuple[str, str], set[int]] = {
    ("get", "/api/user/history"): {200, 204, 400, 401},
    ("post", "/api/user/balance/holds"): {200, 201, 400, 401, 402, 409, 422},
    ("post", "/api/user/balance/holds/{hold_id}/capture"): {200, 401, 404, 409},
    ("post", "/api/user/balance/holds/{hold_id}/release"): {200, 401, 404, 409},
}
PROTECTED = {
    route for route in SPEC_ROUTES if route[1] not in ("/api/user/register", "/api/user/login")
}
#: The database can be down under any route (Failure behaviour)...
EVERYWHERE = {503}
#: ...and a body too large or wrongly encoded where there is one.
WITH_A_BODY = {
    ("post", "/api/user/register"),
    ("post", "/api/user/login"),
    ("post", "/api/user/orders"),
    ("post", "/api/user/balance/withdraw"),
    ("post", "/api/user/balance/holds"),
}
#: The operators' routes (SPEC.md, "Operators", issue 17: those that need no new ledger
#: movement) and the statuses each documents; an operator key opens them (operatorKey).
ADMIN_ROUTES: dict[tuple[str, str], set[int]] = {
    ("get", "/api/admin/users/{login}"): {200, 400, 401, 404, 500, 503},
    ("get", "/api/admin/orders/{number}"): {200, 400, 401, 404, 422, 500, 503},
    ("post", "/api/admin/orders/{number}/retry"): {200, 400, 401, 404, 409, 422, 500, 503},
    ("get", "/api/admin/users/{login}/history"): {200, 204, 400, 401, 404, 500, 503},
    ("post", "/api/admin/users/{login}/adjustments"): {
        200,
        400,
        401,
        402,
        404,
        409,  # the Idempotency-Key is still being processed
        413,
        415,
        422,
        500,
        503,
    },
    ("post", "/api/admin/orders/{number}/reversals"): {
        200,
        400,
        401,
        404,
        409,
        413,
        415,
        422,
        500,
        503,
    },
    ("post", "/api/admin/withdrawals/{number}/refunds"): {
        200,
        400,
        401,
        404,
        409,
        413,
        415,
        422,
        500,
        503,
    },
    # Webhooks (SPEC "Events", issue 18).
    ("post", "/api/admin/webhooks"): {201, 400, 401, 409, 413, 415, 422, 500, 503},
    ("get", "/api/admin/webhooks"): {200, 204, 401, 500, 503},
    ("delete", "/api/admin/webhooks/{endpoint_id}"): {200, 400, 401, 404, 409, 422, 500, 503},
    ("get", "/api/admin/webhooks/{endpoint_id}/deliveries"): {
        200,
        204,
        400,
        401,
        404,
        500,
        503,
    },
    ("post", "/api/admin/events/{event_id}/redeliver"): {200, 400, 401, 404, 409, 422, 500, 503},
}
#: Served beside the API, for operators: documented too.
OPERATIONS_ROUTES = {
    ("get", "/livez"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
}
#: operationId of each route: what a generated client names its functions after.
OPERATION_IDS = {
    ("post", "/api/user/register"): "register",
    ("post", "/api/user/login"): "log_in",
    ("post", "/api/user/orders"): "upload_order",
    ("get", "/api/user/orders"): "list_orders",
    ("get", "/api/user/balance"): "get_balance",
    ("post", "/api/user/balance/withdraw"): "withdraw",
    ("get", "/api/user/withdrawals"): "list_withdrawals",
    ("get", "/api/user/history"): "get_history",
    ("post", "/api/user/balance/holds"): "hold",
    ("post", "/api/user/balance/holds/{hold_id}/capture"): "capture_hold",
    ("post", "/api/user/balance/holds/{hold_id}/release"): "release_hold",
    ("get", "/api/admin/users/{login}"): "admin_get_user",
    ("get", "/api/admin/orders/{number}"): "admin_get_order",
    ("post", "/api/admin/orders/{number}/retry"): "admin_retry_order",
    ("get", "/api/admin/users/{login}/history"): "admin_get_history",
    ("post", "/api/admin/users/{login}/adjustments"): "admin_adjust",
    ("post", "/api/admin/orders/{number}/reversals"): "admin_reverse",
    ("post", "/api/admin/withdrawals/{number}/refunds"): "admin_refund",
    ("post", "/api/admin/webhooks"): "admin_add_webhook",
    ("get", "/api/admin/webhooks"): "admin_list_webhooks",
    ("delete", "/api/admin/webhooks/{endpoint_id}"): "admin_delete_webhook",
    ("get", "/api/admin/webhooks/{endpoint_id}/deliveries"): "admin_webhook_deliveries",
    ("post", "/api/admin/events/{event_id}/redeliver"): "admin_redeliver_event",
    ("get", "/livez"): "livez",
    ("get", "/healthz"): "healthz",
    ("get", "/readyz"): "readyz",
    ("get", "/metrics"): "metrics",
}


@pytest.fixture(scope="module")
def document() -> Iterator[dict[str, Any]]:
    app = http_app(Gophermart.in_memory(secret="s" * 40))
    with TestClient(app) as client:
        response = client.get("/schema/openapi.json")
        assert response.status_code == 200
        yield response.json()


def spec_md_routes(text: str) -> dict[tuple[str, str], set[int]]:
    """Parse SPEC.md: each ``### METHOD /path`` section and the `NNN` codes in it."""
    routes: dict[tuple[str, str], set[int]] = {}
    api = text.split("## HTTP API", 1)[1].split("\n## ", 1)[0]
    for section in re.split(r"\n(?=### )", api):
        heading = re.match(r"### (GET|POST) (/\S+)", section)
        if heading:
            codes = {int(code) for code in re.findall(r"`([1-5][0-9][0-9])`", section)}
            routes[(heading.group(1).lower(), heading.group(2))] = codes
    return routes


def test_the_expected_table_is_spec_md_s() -> None:
    assert spec_md_routes(SPEC_MD.read_text(encoding="utf-8")) == SPEC_ROUTES


def test_the_document_validates_as_openapi_3_1(document: dict[str, Any]) -> None:
    validate(document)  # raises on any violation
    assert get_spec_version(document).minor == "1"
    assert document["openapi"].startswith("3.1")


def test_every_spec_route_lists_every_status_spec_names(document: dict[str, Any]) -> None:
    paths = document["paths"]
    for (method, path), codes in {**SPEC_ROUTES, **LEDGER_ROUTES}.items():
        operation = paths[path][method]
        documented = {int(code) for code in operation["responses"]}
        expected = codes | EVERYWHERE | ({413, 415} if (method, path) in WITH_A_BODY else set())
        missing = expected - documented
        assert not missing, f"{method.upper()} {path} does not document {sorted(missing)}"
        if (method, path) not in WITH_A_BODY:  # a GET has no body to be too large
            assert not {413, 415} & documented, f"{method.upper()} {path}"
        for code, response in operation["responses"].items():
            assert response["description"].strip(), f"{method} {path} {code}: no description"
    # and nothing undocumented is served under /api
    served = {(m, p) for p, item in paths.items() for m in item if p.startswith("/api")}
    assert served == set(SPEC_ROUTES) | set(LEDGER_ROUTES) | set(ADMIN_ROUTES)


def test_every_admin_route_documents_its_statuses(document: dict[str, Any]) -> None:
    for (method, path), codes in ADMIN_ROUTES.items():
        operation = document["paths"][path][method]
        assert {int(code) for code in operation["responses"]} == codes, path
        assert operation["tags"] == ["admin"]
        assert operation["responses"]["401"]["headers"]["WWW-Authenticate"]["required"]
    user = document["paths"]["/api/admin/users/{login}"]["get"]["responses"]["200"]
    schema = _resolve(document, user["content"]["application/json"]["schema"])
    assert set(schema["required"]) == {
        "id",
        "login",
        "current",
        "withdrawn",
        "held",
        "owed",
        "holds",
    }
    assert {schema["properties"][p]["type"] for p in ("current", "withdrawn", "held", "owed")} == {
        "number"
    }
    order = document["paths"]["/api/admin/orders/{number}"]["get"]["responses"]["200"]
    schema = _resolve(document, order["content"]["application/json"]["schema"])
    assert set(schema["required"]) == {
        "number",
        "login",
        "status",
        "accrual",
        "reversed",
        "attempts",
        "next_attempt_at",
        "parked",
    }
    assert schema["properties"]["accrual"]["type"] == ["number", "null"]


#: The writes (SPEC "Idempotency keys"): required on an operator's, optional on a shopper's.
WRITES = {
    (method, path): path.startswith("/api/admin/")
    for (method, path) in {**SPEC_ROUTES, **LEDGER_ROUTES, **ADMIN_ROUTES}
    if method in ("post", "delete") and path not in ("/api/user/register", "/api/user/login")
}


def test_every_write_documents_its_idempotency_key(document: dict[str, Any]) -> None:
    assert len(WRITES) == 12
    for (method, path), required in WRITES.items():
        operation = document["paths"][path][method]
        (key,) = [p for p in operation["parameters"] if p["name"] == "Idempotency-Key"]
        assert key["in"] == "header" and key["required"] is required, path
        assert (key["schema"]["minLength"], key["schema"]["maxLength"]) == (1, 255)
        responses = operation["responses"]
        assert {"400", "409", "422"} <= set(responses), path
        assert "Idempotency-Key" in responses["409"]["description"], path
        assert "Idempotency-Key" in responses["422"]["description"], path
        for code, response in responses.items():
            replayed = "Idempotent-Replayed" in response.get("headers", {})
            assert replayed is (int(code) < 500), (path, code)
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if (method, path) not in WRITES:
                names = {p["name"] for p in operation.get("parameters", [])}
                assert "Idempotency-Key" not in names, (method, path)


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref:
        return document["components"]["schemas"][ref.rsplit("/", 1)[1]]  # type: ignore[no-any-return]
    return schema


def test_bodies_are_the_wire_structs_not_any(document: dict[str, Any]) -> None:
    paths = document["paths"]
    for path in ("/api/user/register", "/api/user/login"):
        body = paths[path]["post"]["requestBody"]["content"]["application/json"]
        assert _resolve(document, body["schema"])["required"] == ["login", "password"]
        assert body["examples"]
    withdraw = paths["/api/user/balance/withdraw"]["post"]["requestBody"]["content"]
    schema = _resolve(document, withdraw["application/json"]["schema"])
    assert schema["properties"]["sum"]["type"] == "number"
    assert schema["properties"]["order"]["type"] == "string"
    assert "text/plain" in paths["/api/user/orders"]["post"]["requestBody"]["content"]

    orders = paths["/api/user/orders"]["get"]["responses"]["200"]["content"]["application/json"]
    item = _resolve(document, orders["schema"]["items"])
    assert set(item["properties"]) == {"number", "status", "accrual", "uploaded_at"}
    assert item["properties"]["status"]["enum"] == ["NEW", "PROCESSING", "INVALID", "PROCESSED"]
    assert item["properties"]["accrual"]["type"] == "number"
    balance = paths["/api/user/balance"]["get"]["responses"]["200"]["content"]["application/json"]
    props = _resolve(document, balance["schema"])["properties"]
    assert props["current"]["type"] == props["withdrawn"]["type"] == "number"
    # SPEC.md's own examples
    assert [e["value"] for e in balance["examples"].values()] == [
        {"current": 500.5, "withdrawn": 42, "held": 0, "owed": 0}
    ]
    example = next(iter(orders["examples"].values()))["value"]
    assert example[0] == {
        "number": "9278923470",
        "status": "PROCESSED",
        "accrual": 500,
        "uploaded_at": "2020-12-10T15:15:45+03:00",
    }
    error = paths["/api/user/login"]["post"]["responses"]["429"]["content"]["application/json"]
    assert _resolve(document, error["schema"])["required"] == ["error"]


def test_auth_schemes_bearer_cookie_and_operator_key(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert set(schemes) == {"bearer", "cookie", "operatorKey"}
    assert schemes["operatorKey"]["type"] == "http"
    assert schemes["operatorKey"]["scheme"] == "bearer"
    for method, path in ADMIN_ROUTES:  # a key, and only a key
        assert document["paths"][path][method]["security"] == [{"operatorKey": []}], path
    assert schemes["bearer"]["type"] == "http" and schemes["bearer"]["scheme"] == "bearer"
    assert schemes["cookie"] == {
        **schemes["cookie"],
        "type": "apiKey",
        "in": "cookie",
        "name": "token",
    }
    for method, path in SPEC_ROUTES:
        security = document["paths"][path][method].get("security")
        if (method, path) in PROTECTED:
            assert security == [{"bearer": []}, {"cookie": []}], path
        else:
            assert not security, path
    headers = document["paths"]["/api/user/register"]["post"]["responses"]["200"]["headers"]
    assert {"Authorization", "Set-Cookie"} <= set(headers)


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def test_health_routes_and_metrics_are_documented(document: dict[str, Any]) -> None:
    listed = {(method, path) for method, path, _ in _operations(document)}
    assert listed == set(SPEC_ROUTES) | set(LEDGER_ROUTES) | set(ADMIN_ROUTES) | OPERATIONS_ROUTES
    for method, path in OPERATIONS_ROUTES:
        assert not document["paths"][path][method].get("security"), path  # no token needed
    ready = document["paths"]["/readyz"]["get"]["responses"]
    assert {"200", "503"} <= set(ready)
    assert "text/plain" in document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]


def test_every_429_and_503_declares_retry_after(document: dict[str, Any]) -> None:
    for method, path, operation in _operations(document):
        for code in ("429", "503"):
            if code in operation["responses"]:
                headers = operation["responses"][code].get("headers", {})
                assert "Retry-After" in headers, f"{method} {path} {code}"
                assert headers["Retry-After"]["schema"]["type"] == "integer"


# --- what makes a generated client readable (openapi-python-client names its modules,
# functions and models after these) -------------------------------------------------------

SNAKE_CASE = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")


def test_every_operation_has_its_readable_snake_case_id(document: dict[str, Any]) -> None:
    ids = {(method, path): op.get("operationId") for method, path, op in _operations(document)}
    assert ids == OPERATION_IDS
    assert all(SNAKE_CASE.fullmatch(i) for i in ids.values())
    for method, path, operation in _operations(document):
        assert len(operation.get("tags", [])) == 1, f"{method} {path}: one tag, one client module"


def _bodies(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for method, path, operation in _operations(document):
        content = operation.get("requestBody", {}).get("content", {})
        for media, body in content.items():
            yield f"{method} {path} request {media}", body["schema"]
        for code, response in operation["responses"].items():
            for media, body in response.get("content", {}).items():
                yield f"{method} {path} {code} {media}", body["schema"]


def test_every_json_body_is_a_named_component(document: dict[str, Any]) -> None:
    components = document["components"]["schemas"]
    for where, schema in _bodies(document):
        if schema.get("type") == "string":
            continue  # text/plain: the order number, the metrics; no model to name
        target = schema["items"] if schema.get("type") == "array" else schema
        ref = target.get("$ref", "")
        assert ref.startswith("#/components/schemas/"), f"{where}: inline {schema}"
        assert ref.rsplit("/", 1)[1] in components, f"{where}: dangling {ref}"
    # named after what they are, as a client's classes will be
    assert set(components) == {
        "AdjustmentRequest",
        "AdminOrder",
        "AdminUser",
        "Balance",
        "CorrectionRequest",
        "Credentials",
        "Delivery",
        "Entry",
        "Error",
        "Health",
        "HoldBody",
        "HoldRequest",
        "Movement",
        "NewWebhookBody",
        "NotReady",
        "Order",
        "Readiness",
        "Redelivered",
        "Webhook",
        "WebhookRequest",
        "Withdrawal",
        "WithdrawalRequest",
    }


def test_a_mounted_router_documents_complete_operations() -> None:
    """A host's own schema gets the operations and the components they reference."""
    loyalty = Gophermart.in_memory(secret="s" * 40)
    host = Litestar(
        route_handlers=[http_router(loyalty, path="/loyalty")],
        openapi_config=OpenAPIConfig(
            title="shop",
            version="1",
            components=Components(security_schemes=SECURITY_SCHEMES),
        ),
    )
    document = json.loads(json.dumps(host.openapi_schema.to_schema()))
    validate(document)
    assert "/loyalty/api/user/balance/withdraw" in document["paths"]
    for where, schema in _bodies(document):
        ref = (schema.get("items") or schema).get("$ref")
        if ref:
            assert ref.rsplit("/", 1)[1] in document["components"]["schemas"], where


def test_yaml_is_the_same_document(document: dict[str, Any]) -> None:
    app = http_app(Gophermart.in_memory(secret="s" * 40))
    with TestClient(app) as client:
        response = client.get("/schema/openapi.yaml")
    assert response.status_code == 200
    assert yaml.safe_load(response.text) == document


def test_the_simulator_documents_its_api() -> None:
    with TestClient(create_sim_app(SimSettings())) as client:
        document = client.get("/schema/openapi.json").json()
        assert client.get("/schema").status_code == 200
    validate(document)
    paths = document["paths"]
    polled = {int(code) for code in paths["/api/orders/{number}"]["get"]["responses"]}
    assert {200, 204, 429, 500} <= polled
    assert {200, 400, 409} <= {int(c) for c in paths["/api/goods"]["post"]["responses"]}
    assert {202, 400, 409} <= {int(c) for c in paths["/api/orders"]["post"]["responses"]}
    goods = paths["/api/orders"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert goods["properties"]["goods"]["items"]["properties"]["price"]["type"] == "number"


# --- the UI in a real browser ---------------------------------------------------------


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        "chromium is required for the Swagger UI test (Debian: apt-get install chromium; "
        ".ci/run installs it)",
        pytrace=False,
    )


def _headless(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",  # CI runs as root
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--window-size=1280,1000",
            "--virtual-time-budget=10000",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def _png_colours(path: Path) -> int:
    """How many distinct pixel rows a PNG has: a blank page has one."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    _width, height = struct.unpack(">II", data[16:24])
    idat = b""
    pos = 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = len(raw) // height
    return len({raw[row * stride + 1 : (row + 1) * stride] for row in range(height)})


@pytest.fixture(scope="module")
def ui_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = start_service(f"sqlite:///{tmp_path_factory.mktemp('ui') / 'ui.db'}")
    try:
        yield svc
    finally:
        svc.stop()


def test_swagger_ui_renders_every_route_in_headless_chromium(
    ui_service: Service, tmp_path: Path
) -> None:
    page = ui_service.url + "/schema"
    assert httpx.get(page, timeout=10).status_code == 200
    dom = _headless("--dump-dom", page)
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = set(re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', dom.stdout))
    expected = {
        path
        for _, path in set(SPEC_ROUTES) | set(LEDGER_ROUTES) | set(ADMIN_ROUTES) | OPERATIONS_ROUTES
    }
    assert rendered == expected, dom.stdout[-3000:]
    assert "OAS 3.1" in dom.stdout

    shot = tmp_path / "swagger-ui.png"
    result = _headless(f"--screenshot={shot}", page)
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.stat().st_size > 20_000
    assert _png_colours(shot) > 50  # not a blank page
    print(f"Swagger UI screenshot: {shot}")
