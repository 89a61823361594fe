"""The operators' webhook routes (SPEC "Events" and the operator table) in process, on
SQLite and PostgreSQL: register (201, the secret once), list (never a secret), delete
(stop, keep the history), an endpoint's deliveries (pages), redeliver; their 400, 404
and 422 with ``{"error": ...}``, and the Idempotency-Key every operator write needs."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from gophermart.domain.webhooks import verify
from tests.conftest import throwaway_postgres
from tests.integration.receiver import Receiver, receiving
from tests.integration.test_admin_api import Admin, _admin

BIGINT_MAX = 2**63 - 1


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def admin(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Admin]:
    if request.param == "sqlite":
        yield from _admin(f"sqlite:///{tmp_path_factory.mktemp('hooks') / 'hooks.db'}")
    else:
        request.getfixturevalue("postgres_available")
        with throwaway_postgres() as uri:
            yield from _admin(uri)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as r:
        yield r


def _register(admin: Admin, url: str, events: list[str]) -> dict[str, Any]:
    made = admin.client.post(
        "/api/admin/webhooks", json={"url": url, "events": events}, headers=admin.headers
    )
    assert made.status_code == 201, made.text
    body: dict[str, Any] = made.json()
    return body


def _error(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    return str(body["error"])


def test_registering_shows_the_secret_once_and_listing_never(admin: Admin) -> None:
    made = _register(admin, "https://shop.example/hooks", ["ledger.*", "order.processed"])
    assert made["secret"].startswith("whsec_") and len(made["secret"]) > 40
    assert made["events"] == ["ledger.*", "order.processed"]
    listed = admin.client.get("/api/admin/webhooks", headers=admin.headers)
    assert listed.status_code == 200, listed.text
    mine = next(e for e in listed.json() if e["id"] == made["id"])
    assert mine == {
        "id": made["id"],
        "url": "https://shop.example/hooks",
        "events": ["ledger.*", "order.processed"],
        "created_at": made["created_at"],
        "deleted_at": None,
    }
    assert made["secret"] not in listed.text


def test_a_replayed_registration_answers_the_same_and_registers_nothing_more(
    admin: Admin,
) -> None:
    headers = admin.headers
    body = {"url": "https://replay.example/", "events": ["*"]}
    first = admin.client.post("/api/admin/webhooks", json=body, headers=headers)
    again = admin.client.post("/api/admin/webhooks", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    listed = admin.client.get("/api/admin/webhooks", headers=admin.headers).json()
    assert sum(e["url"] == "https://replay.example/" for e in listed) == 1


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"url": "ftp://x.example/", "events": ["*"]}, 422, "http"),
        ({"url": "https://u:p@x.example/", "events": ["*"]}, 422, "credentials"),
        ({"url": "https://x.example/" + "a" * 2100, "events": ["*"]}, 422, "2048"),
        ({"url": "https://x.example/", "events": ["ledger.acrual"]}, 422, "unknown event type"),
        ({"url": "https://x.example/", "events": []}, 422, "non-empty"),
        ({"url": "https://x.example/", "events": "ledger.*"}, 400, "malformed"),
        ({"url": "https://x.example/"}, 400, "events"),
        ({"url": 5, "events": ["*"]}, 400, "malformed"),
    ],
)
def test_a_bad_registration_is_refused_saying_why(
    admin: Admin, body: dict[str, Any], status: int, says: str
) -> None:
    refused = admin.client.post("/api/admin/webhooks", json=body, headers=admin.headers)
    assert says in _error(refused, status)


def test_every_webhook_write_needs_an_idempotency_key(admin: Admin) -> None:
    key_only = {"Authorization": f"Bearer {admin.key}"}
    for method, path, body in [
        ("POST", "/api/admin/webhooks", {"url": "https://x.example/", "events": ["*"]}),
        ("DELETE", "/api/admin/webhooks/1", None),
        ("POST", "/api/admin/events/1/redeliver", None),
    ]:
        refused = admin.client.request(method, path, json=body, headers=key_only)
        assert "Idempotency-Key" in _error(refused, 400)
        assert admin.client.request(method, path, headers={}).status_code == 401


def test_ids_out_of_range_are_400_and_unknown_ones_404(admin: Admin) -> None:
    for bad in ("abc", "0", "-1", str(BIGINT_MAX + 1)):
        _error(admin.client.delete(f"/api/admin/webhooks/{bad}", headers=admin.headers), 400)
        _error(
            admin.client.get(f"/api/admin/webhooks/{bad}/deliveries", headers=admin.headers), 400
        )
        _error(admin.client.post(f"/api/admin/events/{bad}/redeliver", headers=admin.headers), 400)
    missing = str(BIGINT_MAX)
    assert "no webhook endpoint" in _error(
        admin.client.delete(f"/api/admin/webhooks/{missing}", headers=admin.headers), 404
    )
    _error(
        admin.client.get(f"/api/admin/webhooks/{missing}/deliveries", headers=admin.headers), 404
    )
    _error(admin.client.post(f"/api/admin/events/{missing}/redeliver", headers=admin.headers), 404)
    made = _register(admin, "https://pages.example/", ["*"])
    for query in ("limit=0", "limit=1001", "before=0", "limit=x"):
        path = f"/api/admin/webhooks/{made['id']}/deliveries?{query}"
        _error(admin.client.get(path, headers=admin.headers), 400)


def test_deliveries_are_listed_paged_and_redelivered_and_delete_keeps_them(
    admin: Admin, receiver: Receiver
) -> None:
    made = _register(admin, receiver.url, ["ledger.adjustment"])
    path = f"/api/admin/webhooks/{made['id']}/deliveries"
    assert admin.client.get(path, headers=admin.headers).status_code == 204
    login, _ = admin.shopper()
    for amount in (1, 2, 3):
        moved = admin.client.post(
            f"/api/admin/users/{login}/adjustments",
            json={"amount": amount, "reason": "goodwill"},
            headers=admin.headers,
        )
        assert moved.status_code == 200, moved.text
    admin.call(admin.loyalty.start_worker)
    try:
        deadline = time.monotonic() + 15
        while len(receiver.received) < 3:
            assert time.monotonic() < deadline, receiver.received
            time.sleep(0.05)
        for r in receiver.received:
            assert verify(made["secret"], r.body, r.headers["gophermart-signature"], int(r.at))
        listed = _delivered(admin, path, 3)
        ids = [d["event_id"] for d in listed]
        assert ids == sorted(ids, reverse=True)
        page = admin.client.get(f"{path}?limit=2&before={ids[0]}", headers=admin.headers)
        assert [d["event_id"] for d in page.json()] == ids[1:3]
        again = admin.client.post(f"/api/admin/events/{ids[-1]}/redeliver", headers=admin.headers)
        assert again.status_code == 200, again.text
        # pending on this endpoint, and on the module's other live ones that had it
        assert again.json()["event_id"] == ids[-1] and again.json()["pending"] >= 1
        while len(receiver.received) < 4:
            assert time.monotonic() < deadline, receiver.received
            time.sleep(0.05)
        assert receiver.event_ids()[-1] == ids[-1]
        deleted = admin.client.delete(f"/api/admin/webhooks/{made['id']}", headers=admin.headers)
        assert deleted.status_code == 200 and deleted.json()["deleted_at"] is not None
        assert _delivered(admin, path, 3)[0]["event_id"] == ids[0]  # kept
        # A redeliver reaches live endpoints only: the deleted one's stays delivered.
        admin.client.post(f"/api/admin/events/{ids[0]}/redeliver", headers=admin.headers)
        assert _delivered(admin, path, 3)[0]["event_id"] == ids[0]
    finally:
        admin.call(admin.loyalty.stop_worker)


def _delivered(admin: Admin, path: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        listed = admin.client.get(path, headers=admin.headers)
        body: list[dict[str, Any]] = listed.json() if listed.status_code == 200 else []
        if len(body) == count and {d["state"] for d in body} == {"delivered"}:
            assert all(d["attempts"] >= 1 and d["last_status"] == 200 for d in body)
            assert all(d["event_type"] == "ledger.adjustment" for d in body)
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def test_a_key_is_scoped_per_request_not_reused(admin: Admin) -> None:
    """Two registrations with two keys are two endpoints (and two secrets)."""
    one = _register(admin, f"https://{uuid.uuid4().hex[:8]}.example/", ["*"])
    two = _register(admin, f"https://{uuid.uuid4().hex[:8]}.example/", ["*"])
    assert one["id"] != two["id"] and one["secret"] != two["secret"]
