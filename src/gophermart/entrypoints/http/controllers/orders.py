"""Orders: uploading an order number, and listing the caller's orders (a hot route)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from litestar import Controller, Request, get, post
from litestar.response.base import ASGIResponse

from gophermart.application.orders import UploadOutcome
from gophermart.application.ports import OrderView
from gophermart.domain.errors import InvalidInput
from gophermart.entrypoints.http.auth import USER_TOKEN, requires
from gophermart.entrypoints.http.controllers.common import (
    AUTH_ERRORS,
    BODY_ERRORS,
    OPERATION,
    TEXT,
    body_of,
    documented,
    empty_doc,
    empty_response,
    error_doc,
    json_doc,
    text_body,
)
from gophermart.entrypoints.http.controllers.listing import (
    BAD_PAGE,
    PageBefore,
    PageLimit,
    listing_response,
)
from gophermart.entrypoints.http.idempotency import idempotent
from gophermart.entrypoints.http.mount import mount_of
from gophermart.entrypoints.http.wire import Order, encoder


def _orders_json(views: Sequence[OrderView]) -> bytes:
    return encoder.encode(
        [
            Order(
                number=v.number,
                status=v.status.value,
                uploaded_at=v.uploaded_at,
                accrual=v.accrual.as_decimal() if v.accrual is not None else None,
            )
            for v in views
        ]
    )


# --- OpenAPI ------------------------------------------------------------------------

_ORDERS_EXAMPLE: Final = [
    {
        "number": "9278923470",
        "status": "PROCESSED",
        "accrual": 500,
        "uploaded_at": "2020-12-10T15:15:45+03:00",
    },
    {"number": "12345678903", "status": "PROCESSING", "uploaded_at": "2020-12-10T15:12:01+03:00"},
    {"number": "346436439", "status": "INVALID", "uploaded_at": "2020-12-09T16:09:53+03:00"},
]
_ORDER_NUMBER: Final = text_body(pattern=r"^\s*[0-9]+\s*$", max_length=1024)


@requires(USER_TOKEN)
class OrdersController(Controller):
    """``POST /api/user/orders`` and ``GET /api/user/orders``."""

    path = "/api/user/orders"
    tags = ["orders"]

    @post(
        operation_id="upload_order",
        status_code=202,
        summary="Upload an order number",
        description="Ties the number to the caller; the accrual worker then asks the "
        "accrual system how many points it earns.",
        media_type=TEXT,
        response_description="New number accepted for processing (empty body)",
        responses={
            200: empty_doc("The caller already uploaded this number (empty body)"),
            400: error_doc("Malformed request (e.g. empty body, not UTF-8)", "empty body"),
            409: error_doc("Another user already uploaded this number", "order owned by another"),
            422: error_doc(
                "Not a valid order number (non-digits, Luhn check fails)",
                "order number fails the Luhn check",
            ),
            **AUTH_ERRORS,
            **BODY_ERRORS,
        },
        dependencies=body_of(_ORDER_NUMBER),
        operation_class=documented(
            body_description="The order number: digits passing the Luhn check (surrounding "
            "whitespace is ignored). The Content-Type is not checked, so `curl -d 9278923470` "
            "works too.",
            body_examples={"order": "9278923470"},
            idempotency="optional",
        ),
    )
    @idempotent("user", required=False)
    async def upload_order(self, request: Request[Any, Any, Any]) -> ASGIResponse:
        # The contract says text/plain; the Content-Type is not checked, so that
        # `curl -d 12345678903` (form-encoded by default) works too: the body is the number.
        try:
            text = (await request.body()).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput("the body is not UTF-8") from None
        if not text.strip():
            raise InvalidInput("the body must carry an order number")
        outcome = await mount_of(request).loyalty.upload_order(request.user, text)
        return empty_response(202 if outcome is UploadOutcome.ACCEPTED else 200)

    @get(
        operation_id="list_orders",
        summary="The caller's orders, newest upload first",
        description="`accrual` is present only when points were awarded. Statuses: `NEW` "
        "(not yet seen by the accrual system), `PROCESSING`, `INVALID` (final, no points), "
        "`PROCESSED` (final).",
        responses={
            200: json_doc(list[Order], "The caller's orders, newest upload first", _ORDERS_EXAMPLE),
            204: empty_doc("No orders yet"),
            400: BAD_PAGE,
            **AUTH_ERRORS,
        },
        operation_class=OPERATION,
    )
    async def list_orders(
        self, request: Request[Any, Any, Any], limit: PageLimit = None, before: PageBefore = None
    ) -> ASGIResponse:
        loyalty, user = mount_of(request).loyalty, request.user
        return await listing_response(
            lambda n, after: loyalty.orders(user, n, after),
            limit,
            before,
            _orders_json,
            lambda v: v.number,
        )
