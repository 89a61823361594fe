"""Operators (``/api/admin/``): a user's account and an order's state, and an order's
retry. Every route takes an operator key (``@requires(OPERATOR_KEY)``), never a shopper's
token; the operator's name is ``operator_of(request)`` (auth.py).

Cold routes: they answer :class:`~litestar.response.base.ASGIResponse` like the hot
ones only because that is the house's one way of answering JSON.
"""

from __future__ import annotations

from typing import Any, Final

from litestar import Controller, Request, get, post
from litestar.params import Parameter
from litestar.response.base import ASGIResponse

from gophermart.application.ports import OrderState, UserAccountView
from gophermart.entrypoints.http.auth import OPERATOR_KEY, requires
from gophermart.entrypoints.http.controllers.common import (
    AUTH_ERRORS,
    OPERATION,
    OPERATOR_WRITE,
    error_doc,
    json_doc,
    json_response,
)
from gophermart.entrypoints.http.controllers.ledger import hold_body
from gophermart.entrypoints.http.idempotency import idempotent
from gophermart.entrypoints.http.mount import mount_of
from gophermart.entrypoints.http.wire import AdminOrder, AdminUser, encoder


def _user_json(view: UserAccountView) -> bytes:
    return encoder.encode(
        AdminUser(
            id=view.id,
            login=view.login,
            current=view.current.as_decimal(),
            withdrawn=view.withdrawn.as_decimal(),
            held=view.held.as_decimal(),
            owed=view.owed.as_decimal(),
            holds=[hold_body(hold) for hold in view.holds],
        )
    )


def _order_json(view: OrderState) -> bytes:
    return encoder.encode(
        AdminOrder(
            number=view.number,
            login=view.login,
            status=view.status.value,
            accrual=view.accrual.as_decimal() if view.accrual is not None else None,
            reversed=view.reversed.as_decimal(),
            attempts=view.attempts,
            next_attempt_at=view.next_attempt_at,
            parked=view.parked,
        )
    )


# --- OpenAPI ------------------------------------------------------------------------

_USER_EXAMPLE: Final = {
    "id": 42,
    "login": "alice",
    "current": 500.5,
    "withdrawn": 42,
    "held": 0,
    "owed": 0,
    "holds": [],
}
# (Litestar leaves a null out of a rendered example: the example shows no "accrual" and
# no "parked", which the schema says are present, as null.)
_ORDER_EXAMPLE: Final = {
    "number": "9278923470",
    "login": "alice",
    "status": "PROCESSING",
    "accrual": None,
    "reversed": 0,
    "attempts": 3,
    "next_attempt_at": "2020-12-10T15:15:47+03:00",
    "parked": None,
}
# No length is declared for the login: a login of 64 characters may be typed with more
# code points (decomposed accents), which log-in folds; the use case decides (400).
LOGIN: Final = Parameter(
    description="The login, as the user types it at log-in (folded the same way)",
    min_length=1,
)
NUMBER: Final = Parameter(description="The order number", pattern="^[0-9]+$", max_length=64)
UNKNOWN_ORDER: Final = error_doc(
    "Nobody uploaded this order", "order 12345678903 was never uploaded"
)
_BAD_NUMBER: Final = {
    400: error_doc("Not an order number (1 to 64 digits)", "an order number is 1 to 64 digits"),
    422: error_doc("The number fails the Luhn check", "order number fails the Luhn check"),
}


@requires(OPERATOR_KEY)
class AdminController(Controller):
    """``GET /api/admin/users/{login}``, ``GET /api/admin/orders/{number}`` and
    ``POST /api/admin/orders/{number}/retry``."""

    path = "/api/admin"
    tags = ["admin"]

    @get(
        "/users/{login:str}",
        operation_id="admin_get_user",
        summary="A user's account",
        description="Found by login as log-in finds it. `held`, `owed` and `holds`: "
        "points reserved by open holds, points reversals took back that the balance "
        "could not cover, and the open holds.",
        responses={
            200: json_doc(AdminUser, "The user's account", _USER_EXAMPLE),
            400: error_doc(
                "Not a login (empty, too long, control characters, surrounding spaces)",
                "login must not start or end with whitespace",
            ),
            404: error_doc("No user has this login", "no user has the login bob"),
            **AUTH_ERRORS,
        },
        operation_class=OPERATION,
    )
    async def get_user(self, request: Request[Any, Any, Any], login: str = LOGIN) -> ASGIResponse:
        view = await mount_of(request).loyalty.user_by_login(login)
        return json_response(_user_json(view))

    @get(
        "/orders/{number:str}",
        operation_id="admin_get_order",
        summary="An order and where it stands in the accrual queue",
        description="Whoever uploaded it. `parked`: why the worker parked it (its credit "
        "cannot be applied; it is asked about again hourly, or at once after a retry).",
        responses={
            200: json_doc(AdminOrder, "The order", _ORDER_EXAMPLE),
            **_BAD_NUMBER,
            404: UNKNOWN_ORDER,
            **AUTH_ERRORS,
        },
        operation_class=OPERATION,
    )
    async def get_order(
        self, request: Request[Any, Any, Any], number: str = NUMBER
    ) -> ASGIResponse:
        view = await mount_of(request).loyalty.order_state(number)
        return json_response(_order_json(view))

    @post(
        "/orders/{number:str}/retry",
        operation_id="admin_retry_order",
        status_code=200,
        summary="Poll a parked or failing order again now",
        description="The accrual system is asked about the order within moments instead "
        "of at its next backoff, and it is no longer parked (it is parked again if its "
        "credit still cannot be applied). An order a worker is polling right now is left "
        "to that poll. Answers the order as it stands after the retry.",
        responses={
            200: json_doc(AdminOrder, "Due for polling now (the order)", _ORDER_EXAMPLE),
            **_BAD_NUMBER,
            404: UNKNOWN_ORDER,
            409: error_doc(
                "The order is final (PROCESSED or INVALID): never polled again",
                "order 9278923470 is PROCESSED, which is final",
            ),
            **AUTH_ERRORS,
        },
        operation_class=OPERATOR_WRITE,
    )
    @idempotent("operator", required=True)
    async def retry_order(
        self, request: Request[Any, Any, Any], number: str = NUMBER
    ) -> ASGIResponse:
        loyalty = mount_of(request).loyalty
        await loyalty.retry_order(number)
        return json_response(_order_json(await loyalty.order_state(number)))
