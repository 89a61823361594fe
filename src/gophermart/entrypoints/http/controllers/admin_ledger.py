"""The ledger a shop runs on, the operator's side: a user's history, adjustments,
accrual reversals and withdrawal refunds. Every entry an operator causes records the
operator key's name."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final

from litestar import Controller, Request, get, post
from litestar.response.base import ASGIResponse

from gophermart.application.ledger import Movement
from gophermart.entrypoints.http.auth import OPERATOR_KEY, operator_of, requires
from gophermart.entrypoints.http.controllers.admin import LOGIN, NUMBER, UNKNOWN_ORDER
from gophermart.entrypoints.http.controllers.common import (
    AUTH_ERRORS,
    BODY_ERRORS,
    MALFORMED,
    OPERATION,
    body_of,
    documented,
    empty_doc,
    error_doc,
    json_doc,
    json_response,
)
from gophermart.entrypoints.http.controllers.ledger import entries_json
from gophermart.entrypoints.http.controllers.listing import (
    BAD_PAGE,
    PageBefore,
    PageLimit,
    listing_response,
)
from gophermart.entrypoints.http.idempotency import idempotent
from gophermart.entrypoints.http.mount import mount_of
from gophermart.entrypoints.http.wire import (
    AdjustmentRequest,
    CorrectionRequest,
    Entry,
    decode_adjustment,
    decode_correction,
    encoder,
    parse_signed,
)
from gophermart.entrypoints.http.wire import (
    Movement as MovementBody,
)

_UNKNOWN_LOGIN: Final = error_doc("No user has this login", "no user has the login bob")
_MOVEMENT_EXAMPLE: Final = {
    "kind": "adjustment",
    "amount": 5,
    "balance_after": 505.5,
    "created_at": "2026-12-06T15:15:45+00:00",
    "operator": "support",
    "reason": "goodwill",
}
_AMOUNT_ERRORS: Final = {
    400: MALFORMED,
    422: error_doc("Not an amount (zero, more than two decimals)", "the amount must be positive"),
}


def _movement_json(moved: Movement) -> bytes:
    return encoder.encode(
        MovementBody(
            moved.kind,
            moved.amount,
            moved.balance_after.as_decimal(),
            moved.created_at,
            moved.operator,
            moved.order,
            moved.reason,
            Decimal(moved.owed_change).scaleb(-2) if moved.owed_change else None,
        )
    )


@requires(OPERATOR_KEY)
class AdminLedgerController(Controller):
    """A user's history and adjustments; an order's reversals; a withdrawal's refunds."""

    path = "/api/admin"
    tags = ["admin"]

    @get(
        "/users/{login:str}/history",
        operation_id="admin_get_history",
        summary="A user's history",
        description="The same entries, shape and pages as the user's own `GET /api/user/history`.",
        responses={
            200: json_doc(list[Entry], "The user's ledger entries, newest first", []),
            204: empty_doc("Nothing yet"),
            400: BAD_PAGE,
            404: _UNKNOWN_LOGIN,
            **AUTH_ERRORS,
        },
        operation_class=OPERATION,
    )
    async def history(
        self,
        request: Request[Any, Any, Any],
        login: str = LOGIN,
        limit: PageLimit = None,
        before: PageBefore = None,
    ) -> ASGIResponse:
        loyalty = mount_of(request).loyalty
        user = (await loyalty.user_by_login(login)).id
        return await listing_response(
            lambda n, after: loyalty.history(user, n, after),
            limit,
            before,
            entries_json,
            lambda v: v.id,
        )

    @post(
        "/users/{login:str}/adjustments",
        operation_id="admin_adjust",
        status_code=200,
        summary="Correct a user's balance",
        description="A signed amount: goodwill points (+), or a correction (-) never taking "
        "more than `current`. Points given pay off what the user owes first.",
        responses={
            200: json_doc(MovementBody, "The entry written", _MOVEMENT_EXAMPLE),
            **_AMOUNT_ERRORS,
            402: error_doc("A negative amount larger than `current`", "not enough points"),
            404: _UNKNOWN_LOGIN,
            **AUTH_ERRORS,
            **BODY_ERRORS,
        },
        dependencies=body_of(AdjustmentRequest),
        operation_class=documented(
            body_description="`amount` signed points, `reason` why.",
            body_examples={"goodwill": {"amount": 5, "reason": "goodwill"}},
            idempotency="required",
        ),
    )
    @idempotent("operator", required=True)
    async def adjust(self, request: Request[Any, Any, Any], login: str = LOGIN) -> ASGIResponse:
        body = decode_adjustment(await request.body())
        amount = parse_signed(body.amount)
        loyalty = mount_of(request).loyalty
        user = (await loyalty.user_by_login(login)).id
        moved = await loyalty.adjust(user, amount, body.reason, operator=operator_of(request))
        return json_response(_movement_json(moved))

    @post(
        "/orders/{number:str}/reversals",
        operation_id="admin_reverse",
        status_code=200,
        summary="Take back an order's accrual (the shop took the order back)",
        description="`sum` of its accrual, or all that is left without it. What `current` "
        "has is taken; the rest is owed, paid off first from later credits.",
        responses={
            200: json_doc(MovementBody, "The entry written", _MOVEMENT_EXAMPLE),
            **_AMOUNT_ERRORS,
            404: UNKNOWN_ORDER,
            409: error_doc(
                "Not a PROCESSED order, or beyond what is left of its accrual",
                "order 9278923470: 10 asked, 5 left",
            ),
            **AUTH_ERRORS,
            **BODY_ERRORS,
        },
        dependencies=body_of(CorrectionRequest),
        operation_class=documented(
            body_description="`sum` points (all that is left without it), `reason` why.",
            body_examples={"returned": {"sum": 50, "reason": "order returned"}},
            idempotency="required",
        ),
    )
    @idempotent("operator", required=True)
    async def reverse(self, request: Request[Any, Any, Any], number: str = NUMBER) -> ASGIResponse:
        body = decode_correction(await request.body())
        amount = body.amount()
        moved = await mount_of(request).loyalty.reverse(
            number, amount, body.reason, operator=operator_of(request)
        )
        return json_response(_movement_json(moved))

    @post(
        "/withdrawals/{number:str}/refunds",
        operation_id="admin_refund",
        status_code=200,
        summary="Give back points spent on an order (it was cancelled)",
        description="`sum` of the withdrawal, or all that is left without it; `withdrawn` "
        "goes down by it. Points given back pay off what the user owes first.",
        responses={
            200: json_doc(MovementBody, "The entry written", _MOVEMENT_EXAMPLE),
            **_AMOUNT_ERRORS,
            404: error_doc("No withdrawal paid for this order", "order was never paid"),
            409: error_doc("Beyond what is left of the withdrawal", "order 1: 10 asked, 5 left"),
            **AUTH_ERRORS,
            **BODY_ERRORS,
        },
        dependencies=body_of(CorrectionRequest),
        operation_class=documented(
            body_description="`sum` points (all that is left without it), `reason` why.",
            body_examples={"cancelled": {"sum": 20, "reason": "order cancelled"}},
            idempotency="required",
        ),
    )
    @idempotent("operator", required=True)
    async def refund(self, request: Request[Any, Any, Any], number: str = NUMBER) -> ASGIResponse:
        body = decode_correction(await request.body())
        amount = body.amount()
        moved = await mount_of(request).loyalty.refund(
            number, amount, body.reason, operator=operator_of(request)
        )
        return json_response(_movement_json(moved))
