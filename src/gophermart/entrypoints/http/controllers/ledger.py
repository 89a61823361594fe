"""The ledger a shop runs on, the shopper's side: the history of every movement, and
holds (reserve points for an order being paid, then capture or release them)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Final

from litestar import Controller, Request, get, post
from litestar.params import Parameter
from litestar.response.base import ASGIResponse

from gophermart.application.ports import HistoryView
from gophermart.domain.accounts import Hold
from gophermart.entrypoints.http.auth import USER_TOKEN, requires
from gophermart.entrypoints.http.controllers.common import (
    AUTH_ERRORS,
    BODY_ERRORS,
    MALFORMED,
    OPERATION,
    SHOPPER_WRITE,
    body_of,
    documented,
    empty_doc,
    error_doc,
    json_doc,
    json_response,
)
from gophermart.entrypoints.http.controllers.listing import (
    BAD_PAGE,
    PageBefore,
    PageLimit,
    listing_response,
)
from gophermart.entrypoints.http.idempotency import idempotent
from gophermart.entrypoints.http.mount import mount_of
from gophermart.entrypoints.http.wire import (
    Entry,
    HoldBody,
    HoldRequest,
    decode_hold,
    encoder,
    parse_sum,
)

_HISTORY_EXAMPLE = [
    {
        "id": "7",
        "kind": "withdrawal",
        "amount": -20,
        "order": "2377225624",
        "balance_after": 30,
        "created_at": "2026-12-06T15:15:45+00:00",
    },
    {
        "id": "3",
        "kind": "accrual",
        "amount": 50,
        "order": "9278923470",
        "balance_after": 50,
        "created_at": "2026-12-06T15:12:01+00:00",
    },
]
_HOLD_EXAMPLE = {
    "id": "17",
    "order": "2377225624",
    "sum": 100.5,
    "expires_at": "2026-12-06T15:30:00+00:00",
    "state": "open",
}
HOLD_ID: Final = Parameter(
    description="The hold's id, as `POST /api/user/balance/holds` gave it", ge=1
)
_UNKNOWN_HOLD = error_doc("No such hold of the caller's", "no hold 17")


def entries_json(views: Sequence[HistoryView]) -> bytes:
    """A history page on the wire (the shopper's and the operator's)."""
    return encoder.encode(
        [
            Entry(
                v.id,
                v.kind.value,
                v.amount,
                v.balance_after.as_decimal(),
                v.created_at,
                v.order,
                v.reason,
                Decimal(v.owed_change).scaleb(-2) if v.owed_change else None,
            )
            for v in views
        ]
    )


def hold_body(hold: Hold) -> HoldBody:
    """A hold on the wire (the shopper's answers and the operator's view of an account)."""
    return HoldBody(
        str(hold.id),
        hold.order_number.value,
        hold.amount.as_decimal(),
        hold.expires_at,
        hold.state.value,
    )


def hold_json(hold: Hold) -> bytes:
    return encoder.encode(hold_body(hold))


@requires(USER_TOKEN)
class LedgerController(Controller):
    """``GET /api/user/history`` and the holds under ``/api/user/balance/holds``."""

    path = "/api/user"
    tags = ["ledger"]

    @get(
        "/history",
        operation_id="get_history",
        summary="Every movement of the caller's points, newest first",
        description="Each entry's `balance_after` is the previous one's plus its `amount`; "
        "the newest one's is `current`. Pages exactly like the orders list.",
        responses={
            200: json_doc(list[Entry], "The caller's ledger entries", _HISTORY_EXAMPLE),
            204: empty_doc("Nothing yet"),
            400: BAD_PAGE,
            **AUTH_ERRORS,
        },
        operation_class=OPERATION,
    )
    async def history(
        self, request: Request[Any, Any, Any], limit: PageLimit = None, before: PageBefore = None
    ) -> ASGIResponse:
        loyalty, user = mount_of(request).loyalty, request.user
        return await listing_response(
            lambda n, after: loyalty.history(user, n, after),
            limit,
            before,
            entries_json,
            lambda v: v.id,
        )

    @post(
        "/balance/holds",
        operation_id="hold",
        status_code=201,
        summary="Reserve points for an order being paid",
        description="The points leave `current` for `held` until the hold is captured "
        "(they pay the order), released, or expires (`ttl` seconds, 1 to 86,400). The same "
        "order and sum again answers `200` with the same hold.",
        responses={
            200: json_doc(HoldBody, "The same hold again", _HOLD_EXAMPLE),
            201: json_doc(HoldBody, "Reserved", _HOLD_EXAMPLE),
            400: MALFORMED,
            402: error_doc("Not enough points; nothing was changed", "not enough points"),
            409: error_doc(
                "The order has another open hold, or was already paid with points",
                "order 2377225624: has an open hold",
            ),
            422: error_doc("Invalid order number or sum", "sum must be positive"),
            **AUTH_ERRORS,
            **BODY_ERRORS,
        },
        dependencies=body_of(HoldRequest),
        operation_class=documented(
            body_description="Reserve `sum` points for `order` for `ttl` seconds.",
            body_examples={"checkout": {"order": "2377225624", "sum": 100.5, "ttl": 900}},
            idempotency="optional",
        ),
    )
    @idempotent("user", required=False)
    async def hold(self, request: Request[Any, Any, Any]) -> ASGIResponse:
        body = decode_hold(await request.body())
        amount = parse_sum(body.sum)
        outcome = await mount_of(request).loyalty.hold(request.user, body.order, amount, body.ttl)
        return json_response(hold_json(outcome.hold), 201 if outcome.created else 200)

    @post(
        "/balance/holds/{hold_id:int}/capture",
        operation_id="capture_hold",
        status_code=200,
        summary="Spend a hold's points on its order",
        description="The hold becomes the order's withdrawal (listed in "
        "`/api/user/withdrawals`). Captured already: `200`, nothing changes.",
        responses={
            200: json_doc(HoldBody, "Captured", {**_HOLD_EXAMPLE, "state": "captured"}),
            400: MALFORMED,
            404: _UNKNOWN_HOLD,
            409: error_doc("The hold was released or expired", "order 2377225624: hold expired"),
            **AUTH_ERRORS,
        },
        operation_class=SHOPPER_WRITE,
    )
    @idempotent("user", required=False)
    async def capture(
        self, request: Request[Any, Any, Any], hold_id: int = HOLD_ID
    ) -> ASGIResponse:
        hold = await mount_of(request).loyalty.capture(request.user, hold_id)
        return json_response(hold_json(hold))

    @post(
        "/balance/holds/{hold_id:int}/release",
        operation_id="release_hold",
        status_code=200,
        summary="Give a hold's points back",
        description="Released or expired already: `200`, nothing changes.",
        responses={
            200: json_doc(HoldBody, "Released", {**_HOLD_EXAMPLE, "state": "released"}),
            400: MALFORMED,
            404: _UNKNOWN_HOLD,
            409: error_doc("The hold was captured", "order 2377225624: hold is captured"),
            **AUTH_ERRORS,
        },
        operation_class=SHOPPER_WRITE,
    )
    @idempotent("user", required=False)
    async def release(
        self, request: Request[Any, Any, Any], hold_id: int = HOLD_ID
    ) -> ASGIResponse:
        hold = await mount_of(request).loyalty.release(request.user, hold_id)
        return json_response(hold_json(hold))
