"""Points: the caller's balance, spending points, and the withdrawals (hot routes)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from litestar import Controller, Request, get, post
from litestar.response.base import ASGIResponse

from gophermart.application.ports import WithdrawalView
from gophermart.entrypoints.http.auth import USER_TOKEN, requires
from gophermart.entrypoints.http.controllers.common import (
    AUTH_ERRORS,
    BODY_ERRORS,
    MALFORMED,
    OPERATION,
    TEXT,
    body_of,
    documented,
    empty_doc,
    empty_response,
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
    Balance,
    Withdrawal,
    WithdrawalRequest,
    balance_json,
    decode_withdraw,
    encoder,
    parse_sum,
)


@requires(USER_TOKEN)
class PointsController(Controller):
    """``GET /api/user/balance``, ``POST /api/user/balance/withdraw`` and
    ``GET /api/user/withdrawals``."""

    path = "/api/user"
    tags = ["points"]

    @get(
        "/balance",
        operation_id="get_balance",
        summary="The caller's balance",
        responses={
            200: json_doc(
                Balance,
                "Points available now, and the total ever spent",
                {"current": 500.5, "withdrawn": 42, "held": 0, "owed": 0},
            ),
            **AUTH_ERRORS,
        },
        operation_class=OPERATION,
    )
    async def get_balance(self, request: Request[Any, Any, Any]) -> ASGIResponse:
        view = await mount_of(request).loyalty.balance(request.user)
        return json_response(balance_json(view.current, view.withdrawn, view.held, view.owed))

    @post(
        "/balance/withdraw",
        operation_id="withdraw",
        status_code=200,
        summary="Spend points on a new order",
        description="The same request repeated (same user, order and sum) is answered "
        "`200` and charged once.",
        media_type=TEXT,
        response_description="Done, or a replay of the identical withdrawal (empty body)",
        responses={
            400: MALFORMED,
            402: error_doc("Not enough points; nothing was changed", "not enough points"),
            409: error_doc(
                "The order number was already used for a different withdrawal",
                "order already used for another withdrawal",
            ),
            422: error_doc(
                "Invalid order number (Luhn) or sum (not positive, more than two decimals)",
                "sum must be positive",
            ),
            **AUTH_ERRORS,
            **BODY_ERRORS,
        },
        dependencies=body_of(WithdrawalRequest),
        operation_class=documented(
            body_description="Spend `sum` points (a JSON number, > 0, at most two decimals) "
            "on a new order `order`.",
            body_examples={"spend": {"order": "2377225624", "sum": 751}},
            idempotency="optional",
        ),
    )
    @idempotent("user", required=False)
    async def withdraw(self, request: Request[Any, Any, Any]) -> ASGIResponse:
        body = decode_withdraw(await request.body())
        amount = parse_sum(body.sum)
        await mount_of(request).loyalty.withdraw(request.user, body.order, amount)
        return empty_response(200)

    @get(
        "/withdrawals",
        operation_id="list_withdrawals",
        summary="The caller's withdrawals, newest first",
        responses={
            200: json_doc(
                list[Withdrawal],
                "The caller's withdrawals, newest first",
                [{"order": "2377225624", "sum": 500, "processed_at": "2020-12-09T16:09:57+03:00"}],
            ),
            204: empty_doc("No withdrawals yet"),
            400: BAD_PAGE,
            **AUTH_ERRORS,
        },
        operation_class=OPERATION,
    )
    async def list_withdrawals(
        self, request: Request[Any, Any, Any], limit: PageLimit = None, before: PageBefore = None
    ) -> ASGIResponse:
        loyalty, user = mount_of(request).loyalty, request.user
        return await listing_response(
            lambda n, after: loyalty.withdrawals(user, n, after),
            limit,
            before,
            _withdrawals_json,
            lambda v: v.order,
        )


def _withdrawals_json(views: Sequence[WithdrawalView]) -> bytes:
    return encoder.encode([Withdrawal(v.order, v.sum.as_decimal(), v.processed_at) for v in views])
