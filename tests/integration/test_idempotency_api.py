"""Idempotency keys over HTTP, in process, on SQLite and PostgreSQL (SPEC "The ledger a
shop runs on", "Idempotency keys"): a replay answers the stored status and body with
``Idempotent-Replayed: true`` and changes nothing; another body under the key is 422; an
operator write without a key is 400, a malformed key 400; keys are the caller's; a
refusal (402) is replayed as such; a request failing with 5xx leaves the key free; two
requests at once under one key run once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gophermart.application.errors import StoreUnavailable
from tests.conftest import throwaway_postgres
from tests.integration.test_admin_api import Admin, _admin
from tests.integration.test_ledger_api import _balance, _fresh, _funded

REPLAYED = "idempotent-replayed"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def admin(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Admin]:
    if request.param == "sqlite":
        yield from _admin(f"sqlite:///{tmp_path_factory.mktemp('idem') / 'idem.db'}")
    else:
        request.getfixturevalue("postgres_available")
        with throwaway_postgres() as uri:
            yield from _admin(uri)


def _key() -> str:
    return str(uuid.uuid4())


def _operator(admin: Admin, key: str) -> dict[str, str]:
    return {**admin.headers, "Idempotency-Key": key}


def test_an_adjustment_replayed_changes_the_balance_once(admin: Admin) -> None:
    login, shopper = _funded(admin, _fresh())
    headers = _operator(admin, _key())
    body = {"amount": 5, "reason": "goodwill"}
    first = admin.client.post(f"/api/admin/users/{login}/adjustments", json=body, headers=headers)
    assert first.status_code == 200, first.text
    assert REPLAYED not in first.headers
    again = admin.client.post(f"/api/admin/users/{login}/adjustments", json=body, headers=headers)
    assert again.status_code == 200
    assert again.headers[REPLAYED] == "true"
    assert again.content == first.content
    assert again.headers["content-type"] == first.headers["content-type"]
    assert _balance(admin, shopper)["current"] == 105
    history = admin.client.get("/api/user/history", headers=shopper).json()
    assert [e["kind"] for e in history].count("adjustment") == 1


def test_the_same_key_with_another_request_is_422_and_changes_nothing(admin: Admin) -> None:
    login, shopper = _funded(admin, _fresh())
    headers = _operator(admin, _key())
    url = f"/api/admin/users/{login}/adjustments"
    assert admin.client.post(url, json={"amount": 5, "reason": "a"}, headers=headers).is_success
    other = admin.client.post(url, json={"amount": 6, "reason": "a"}, headers=headers)
    assert other.status_code == 422
    assert other.json() == {"error": "this Idempotency-Key was used with another request"}
    elsewhere = admin.client.post(f"/api/admin/orders/{_fresh()}/retry", headers=headers)
    assert elsewhere.status_code == 422
    assert _balance(admin, shopper)["current"] == 105


def test_operator_writes_require_a_key_and_a_well_formed_one(admin: Admin) -> None:
    login, shopper = _funded(admin, _fresh())
    bare = {"Authorization": f"Bearer {admin.key}"}
    url = f"/api/admin/users/{login}/adjustments"
    body = {"amount": 5, "reason": "a"}
    missing = admin.client.post(url, json=body, headers=bare)
    assert missing.status_code == 400
    assert missing.json() == {"error": "Idempotency-Key header required"}
    for path in (f"/api/admin/orders/{_fresh()}/retry", f"/api/admin/orders/{_fresh()}/reversals"):
        assert admin.client.post(path, headers=bare).status_code == 400
    for bad in ("x" * 256, "tab\there", "\x7f", "ключ"):
        raw = bad.encode("utf-8")
        response = admin.client.post(
            url, json=body, headers=[*bare.items(), ("Idempotency-Key", raw)]
        )
        assert response.status_code == 400, (bad, response.text)
        assert set(response.json()) == {"error"}
    assert _balance(admin, shopper)["current"] == 100
    # a shopper's write takes none and runs as always; a read ignores one
    assert admin.client.post(
        "/api/user/balance/withdraw", json={"order": _fresh(), "sum": 1}, headers=shopper
    ).is_success
    assert admin.client.get("/api/user/balance", headers={**shopper, "Idempotency-Key": "k"})


def test_keys_are_the_callers(admin: Admin) -> None:
    key = _key()
    _, alice = _funded(admin, _fresh())
    _, bob = _funded(admin, _fresh())
    spend = {"order": _fresh(), "sum": 10}
    for shopper in (alice, bob):
        spend = {"order": _fresh(), "sum": 10}
        response = admin.client.post(
            "/api/user/balance/withdraw", json=spend, headers={**shopper, "Idempotency-Key": key}
        )
        assert response.status_code == 200 and REPLAYED not in response.headers
        assert _balance(admin, shopper)["current"] == 90
    # and an operator's key of the same text is the operator's own
    other_operator = admin.call(admin.loyalty.add_operator, f"ops-{uuid.uuid4().hex[:6]}")
    login, _ = _funded(admin, _fresh())
    for credential in (admin.key, other_operator):
        answer = admin.client.post(
            f"/api/admin/users/{login}/adjustments",
            json={"amount": 1, "reason": "a"},
            headers={"Authorization": f"Bearer {credential}", "Idempotency-Key": key},
        )
        assert answer.status_code == 200 and REPLAYED not in answer.headers


def test_a_refusal_is_replayed_as_it_was_answered(admin: Admin) -> None:
    login, shopper = _funded(admin, _fresh())
    headers = {**shopper, "Idempotency-Key": _key()}
    spend = {"order": _fresh(), "sum": 150}
    refused = admin.client.post("/api/user/balance/withdraw", json=spend, headers=headers)
    assert refused.status_code == 402
    # points arrive meanwhile: the key still answers what it answered
    adjust = admin.client.post(
        f"/api/admin/users/{login}/adjustments",
        json={"amount": 100, "reason": "top up"},
        headers=admin.headers,
    )
    assert adjust.status_code == 200
    again = admin.client.post("/api/user/balance/withdraw", json=spend, headers=headers)
    assert again.status_code == 402 and again.headers[REPLAYED] == "true"
    assert again.json() == refused.json()
    assert again.headers["content-type"].startswith("application/json")
    assert _balance(admin, shopper)["current"] == 200
    # an empty success (text/plain) is replayed as one too
    fresh = {**shopper, "Idempotency-Key": _key()}
    order = _fresh()
    done = admin.client.post("/api/user/orders", content=order, headers=fresh)
    assert done.status_code == 202
    replay = admin.client.post("/api/user/orders", content=order, headers=fresh)
    assert (replay.status_code, replay.content, replay.headers[REPLAYED]) == (202, b"", "true")
    assert replay.headers["content-type"] == done.headers["content-type"]


def test_a_request_that_failed_with_5xx_leaves_its_key_free(
    admin: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    login, shopper = _funded(admin, _fresh())
    headers = _operator(admin, _key())
    body = {"amount": 3, "reason": "retry me"}

    async def down(*_args: Any, **_kwargs: Any) -> Any:
        raise StoreUnavailable("database unavailable")

    with monkeypatch.context() as patched:
        patched.setattr(admin.loyalty, "adjust", down)
        failed = admin.client.post(
            f"/api/admin/users/{login}/adjustments", json=body, headers=headers
        )
    assert failed.status_code == 503
    retried = admin.client.post(f"/api/admin/users/{login}/adjustments", json=body, headers=headers)
    assert retried.status_code == 200 and REPLAYED not in retried.headers
    assert _balance(admin, shopper)["current"] == 103


def test_two_requests_at_once_under_one_key_run_once(
    admin: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    login, shopper = _funded(admin, _fresh())
    headers = _operator(admin, _key())
    body = {"amount": 7, "reason": "at once"}
    real = admin.loyalty.adjust
    entered = asyncio.Event()
    go_on = asyncio.Event()

    async def slow(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        await go_on.wait()
        return await real(*args, **kwargs)

    async def both() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=admin.client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            url = f"/api/admin/users/{login}/adjustments"
            first = asyncio.create_task(client.post(url, json=body, headers=headers))
            await entered.wait()
            second = await client.post(url, json=body, headers=headers)
            go_on.set()
            return [await first, second]

    with monkeypatch.context() as patched:
        patched.setattr(admin.loyalty, "adjust", slow)
        first, second = admin.call(both)
    assert first.status_code == 200, first.text
    assert second.status_code == 409
    assert second.json() == {
        "error": "a request with this Idempotency-Key is still being processed"
    }
    replay = admin.client.post(f"/api/admin/users/{login}/adjustments", json=body, headers=headers)
    assert replay.status_code == 200 and replay.headers[REPLAYED] == "true"
    assert _balance(admin, shopper)["current"] == 107
