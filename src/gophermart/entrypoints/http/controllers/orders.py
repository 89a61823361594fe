"""Orders: uploading an order number, and listing the caller's orders (a hot route)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any, Final

from litestar import Controller, Request, get, post
from litestar.params import QueryParameter
from litestar.response.base import ASGIResponse
from litestar.response.streaming import ASGIStreamingResponse

from gophermart.application.orders import UploadOutcome
from gophermart.application.ports import OrderView
from gophermart.application.queries import Queries
from gophermart.domain.errors import InvalidInput
from gophermart.domain.users import UserId
from gophermart.entrypoints.http.auth import USER_TOKEN, requires
from gophermart.entrypoints.http.controllers.common import (
    AUTH_ERRORS,
    BODY_ERRORS,
    JSON,
    OPERATION,
    TEXT,
    body_of,
    documented,
    empty_doc,
    empty_response,
    error_doc,
    json_doc,
    json_response,
    text_body,
)
from gophermart.entrypoints.http.mount import mount_of
from gophermart.entrypoints.http.wire import Order, encoder
from gophermart.facade import Gophermart

#: ``?limit=`` and ``?before=`` of ``GET /api/user/orders`` (optional pages).
OrdersLimit = Annotated[
    int | None,
    QueryParameter(
        ge=1,
        le=Queries.MAX_LIMIT,
        description="At most this many orders (a page); all of them without it.",
    ),
]
OrdersBefore = Annotated[
    str | None,
    QueryParameter(
        description=(
            "Only the orders listed after this one: the number of the last order "
            "of the previous page. With `limit`, the next page."
        ),
    ),
]


async def _stream(
    loyalty: Gophermart, user: UserId, first: Sequence[OrderView]
) -> AsyncIterator[bytes]:
    """The JSON array of every order, a chunk at a time: ``[`` + the first chunk's items,
    then ``,`` + each next chunk's (read after the last number of the one before)."""
    chunk, opening = first, b"["
    while chunk:
        yield opening + _orders_json(chunk)[1:-1]
        opening = b","
        if len(chunk) < Queries.CHUNK:
            break
        chunk = await loyalty.orders(user, Queries.CHUNK, chunk[-1].number)
    yield b"]"


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
        ),
    )
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
            400: error_doc(
                "`limit` outside 1..10000 or not in plain digits, `before` not an order "
                "number, or a parameter given twice",
                "limit must be between 1 and 10000",
            ),
            **AUTH_ERRORS,
        },
        operation_class=OPERATION,
    )
    async def list_orders(
        self,
        request: Request[Any, Any, Any],
        limit: OrdersLimit = None,
        before: OrdersBefore = None,
    ) -> ASGIResponse:
        loyalty = mount_of(request).loyalty
        # The whole list is read and rendered a chunk at a time (Queries.CHUNK): a first
        # chunk answers most users in one go; a longer list is streamed, so that 300,000
        # orders never hold the event loop (SPEC: one slow thing stays one slow thing).
        first = await loyalty.orders(request.user, limit or Queries.CHUNK, before)
        if not first:
            return empty_response(204)
        if limit is not None or len(first) < Queries.CHUNK:
            return json_response(_orders_json(first))
        return ASGIStreamingResponse(
            iterator=_stream(loyalty, request.user, first), media_type=JSON
        )
