"""The ledger a shop runs on over HTTP, in process, on SQLite and PostgreSQL (SPEC "The
ledger a shop runs on"): the shopper's history and holds, and the operator's history,
adjustments, reversals and refunds with every status the SPEC names; each entry an
operator causes records the key's name; reconcile after all of it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import throwaway_postgres
from tests.integration.test_admin_api import Admin, _admin

ACCRUED, SPENT, OTHER = "9278923470", "2377225624", "79927398713"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def admin(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Admin]:
    if request.param == "sqlite":
        yield from _admin(f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'ledger.db'}")
    else:
        request.getfixturevalue("postgres_available")
        with throwaway_postgres() as uri:
            yield from _admin(uri)


def _funded(admin: Admin, number: str, points: int = 100) -> tuple[str, dict[str, str]]:
    login, shopper = admin.shopper()
    assert admin.client.post("/api/user/orders", content=number, headers=shopper).status_code == 202
    admin.call(admin.loyalty.record_accrual, number, points)
    return login, shopper


def _number(seed: int) -> str:
    digits = f"5{seed:011d}"
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 == 0 else 1)
        total += n - 9 if n > 9 else n
    return digits + str((10 - total % 10) % 10)


_seq = iter(range(10_000, 99_999))


def _fresh() -> str:
    return _number(next(_seq) * 7919 % 10**9)


def _balance(admin: Admin, shopper: dict[str, str]) -> dict[str, Any]:
    response = admin.client.get("/api/user/balance", headers=shopper)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def test_a_checkout_holds_then_captures(admin: Admin) -> None:
    _login, shopper = _funded(admin, _fresh())
    order = _fresh()
    made = admin.client.post(
        "/api/user/balance/holds", json={"order": order, "sum": 30.5, "ttl": 60}, headers=shopper
    )
    assert made.status_code == 201, made.text
    hold = made.json()
    assert (hold["order"], hold["sum"], hold["state"]) == (order, 30.5, "open")
    again = admin.client.post(
        "/api/user/balance/holds", json={"order": order, "sum": 30.5}, headers=shopper
    )
    assert again.status_code == 200 and again.json()["id"] == hold["id"]
    assert _balance(admin, shopper) == {"current": 69.5, "withdrawn": 0, "held": 30.5, "owed": 0}
    other_sum = {"order": order, "sum": 1}
    assert (
        admin.client.post("/api/user/balance/holds", json=other_sum, headers=shopper).status_code
        == 409
    )
    direct = admin.client.post("/api/user/balance/withdraw", json=other_sum, headers=shopper)
    assert direct.status_code == 409
    short = {"order": _fresh(), "sum": 1000}
    assert (
        admin.client.post("/api/user/balance/holds", json=short, headers=shopper).status_code == 402
    )
    for bad, status in (
        ({"order": order}, 400),
        ({"order": "12", "sum": 1}, 422),
        ({"order": _fresh(), "sum": 1, "ttl": 0}, 400),
    ):
        response = admin.client.post("/api/user/balance/holds", json=bad, headers=shopper)
        assert response.status_code == status, (bad, response.text)
    captured = admin.client.post(f"/api/user/balance/holds/{hold['id']}/capture", headers=shopper)
    assert captured.status_code == 200 and captured.json()["state"] == "captured"
    replay = admin.client.post(f"/api/user/balance/holds/{hold['id']}/capture", headers=shopper)
    assert replay.status_code == 200
    late = admin.client.post(f"/api/user/balance/holds/{hold['id']}/release", headers=shopper)
    assert late.status_code == 409
    assert _balance(admin, shopper) == {"current": 69.5, "withdrawn": 30.5, "held": 0, "owed": 0}
    listed = admin.client.get("/api/user/withdrawals", headers=shopper).json()
    assert [w["order"] for w in listed] == [order]
    _other, stranger = admin.shopper()
    assert (
        admin.client.post(
            f"/api/user/balance/holds/{hold['id']}/capture", headers=stranger
        ).status_code
        == 404
    )
    history = admin.client.get("/api/user/history", headers=shopper).json()
    assert [(e["kind"], e["amount"]) for e in history] == [
        ("withdrawal", -30.5),
        ("hold_release", 30.5),
        ("hold", -30.5),
        ("accrual", 100),
    ]
    assert [e["balance_after"] for e in history] == [69.5, 100, 69.5, 100]
    page = admin.client.get("/api/user/history", params={"limit": 2}, headers=shopper).json()
    rest = admin.client.get(
        "/api/user/history", params={"limit": 2, "before": page[-1]["id"]}, headers=shopper
    ).json()
    assert page + rest == history
    assert admin.client.get("/api/user/history", headers=stranger).status_code == 204


def test_operators_correct_balances_and_are_named_on_what_they_write(admin: Admin) -> None:
    login, shopper = _funded(admin, accrued := _fresh())
    spent = _fresh()
    assert (
        admin.client.post(
            "/api/user/balance/withdraw", json={"order": spent, "sum": 70}, headers=shopper
        ).status_code
        == 200
    )
    reversal = admin.client.post(
        f"/api/admin/orders/{accrued}/reversals",
        json={"sum": 50, "reason": "returned"},
        headers=admin.headers,
    )
    assert reversal.status_code == 200, reversal.text
    body = reversal.json()
    assert (body["kind"], body["amount"], body["owed"], body["operator"]) == (
        "accrual_reversal",
        -30,
        20,
        "support",
    )
    assert _balance(admin, shopper) == {"current": 0, "withdrawn": 70, "held": 0, "owed": 20}
    beyond = admin.client.post(
        f"/api/admin/orders/{accrued}/reversals", json={"sum": 51}, headers=admin.headers
    )
    assert beyond.status_code == 409
    refund = admin.client.post(
        f"/api/admin/withdrawals/{spent}/refunds", json={"sum": 25}, headers=admin.headers
    )
    assert refund.status_code == 200, refund.text
    assert _balance(admin, shopper) == {"current": 5, "withdrawn": 45, "held": 0, "owed": 0}
    rest = admin.client.post(f"/api/admin/withdrawals/{spent}/refunds", headers=admin.headers)
    assert rest.status_code == 200 and rest.json()["amount"] == 45
    assert (
        admin.client.post(
            f"/api/admin/withdrawals/{spent}/refunds", headers=admin.headers
        ).status_code
        == 409
    )
    goodwill = admin.client.post(
        f"/api/admin/users/{login}/adjustments",
        json={"amount": 2.5, "reason": "sorry"},
        headers=admin.headers,
    )
    assert goodwill.status_code == 200 and goodwill.json()["balance_after"] == 52.5
    too_much = admin.client.post(
        f"/api/admin/users/{login}/adjustments",
        json={"amount": -53, "reason": "x"},
        headers=admin.headers,
    )
    assert too_much.status_code == 402
    for bad, status in (
        ({"amount": 0, "reason": "x"}, 422),
        ({"amount": 0.001, "reason": "x"}, 422),
        ({"reason": "x"}, 400),
    ):
        response = admin.client.post(
            f"/api/admin/users/{login}/adjustments", json=bad, headers=admin.headers
        )
        assert response.status_code == status, (bad, response.text)
    assert (
        admin.client.post(
            "/api/admin/users/nobody-at-all/adjustments",
            json={"amount": 1, "reason": "x"},
            headers=admin.headers,
        ).status_code
        == 404
    )
    assert (
        admin.client.post(
            f"/api/admin/orders/{_fresh()}/reversals", headers=admin.headers
        ).status_code
        == 404
    )
    assert (
        admin.client.post(
            f"/api/admin/withdrawals/{_fresh()}/refunds", headers=admin.headers
        ).status_code
        == 404
    )
    theirs = admin.client.get(f"/api/admin/users/{login}/history", headers=admin.headers).json()
    mine = admin.client.get("/api/user/history", headers=shopper).json()
    assert theirs == mine
    by_operator = [
        e for e in mine if e["kind"] in ("accrual_reversal", "withdrawal_refund", "adjustment")
    ]
    assert by_operator and all(e.get("reason") or e["kind"] != "adjustment" for e in by_operator)
    account = admin.client.get(f"/api/admin/users/{login}", headers=admin.headers).json()
    assert (account["current"], account["owed"], account["held"]) == (52.5, 0, 0)
    order = admin.client.get(f"/api/admin/orders/{accrued}", headers=admin.headers).json()
    assert order["reversed"] == 50
    assert (
        admin.client.post(
            f"/api/admin/orders/{accrued}/reversals", json={"sum": 1}, headers=shopper
        ).status_code
        == 401
    )
    report = admin.call(admin.loyalty.reconcile)
    assert report.ok, report.summary()
