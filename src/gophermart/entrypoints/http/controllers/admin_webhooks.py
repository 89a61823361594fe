"""Webhooks, the operator's side (SPEC "Events"): register, list and delete endpoints,
read an endpoint's deliveries, deliver an event again. Operator keys and
``Idempotency-Key`` work as on every admin route (a replay of the registration answers
the same 201, secret included: the same answer to the same operator's same request).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Final

from litestar import Controller, Request, delete, get, post
from litestar.params import Parameter, QueryParameter
from litestar.response.base import ASGIResponse

from gophermart.application.ports import DeliveryView, WebhookEndpoint
from gophermart.application.webhooks import MAX_PAGE, NewWebhook
from gophermart.domain.errors import InvalidInput
from gophermart.entrypoints.http.auth import OPERATOR_KEY, requires
from gophermart.entrypoints.http.controllers.common import (
    AUTH_ERRORS,
    BODY_ERRORS,
    MALFORMED,
    OPERATION,
    OPERATOR_WRITE,
    body_of,
    documented,
    empty_doc,
    empty_response,
    error_doc,
    json_doc,
    json_response,
)
from gophermart.entrypoints.http.idempotency import idempotent
from gophermart.entrypoints.http.mount import mount_of
from gophermart.entrypoints.http.wire import (
    Delivery,
    NewWebhookBody,
    Redelivered,
    Webhook,
    WebhookRequest,
    decode_webhook,
    encoder,
)

_MAX_ID: Final = 2**63 - 1
# Text in the path, read by _id: "abc" is then a 400 saying what an id is, not a 404
# from a route that did not match.
ENDPOINT_ID: Final = Parameter(description="The endpoint's id", pattern="^[0-9]+$", max_length=19)
EVENT_ID: Final = Parameter(description="The event's id", pattern="^[0-9]+$", max_length=19)
DeliveriesLimit = Annotated[
    int | None,
    QueryParameter(ge=1, le=MAX_PAGE, description=f"At most this many (default {MAX_PAGE})."),
]
DeliveriesBefore = Annotated[
    int | None,
    QueryParameter(
        ge=1, le=_MAX_ID, description="Only events older than this id: the next page's cursor."
    ),
]

_WEBHOOK_EXAMPLE: Final = {
    "id": 1,
    "url": "https://shop.example/hooks",
    "events": ["ledger.*", "order.processed"],
    "created_at": "2026-12-07T10:00:00Z",
    "deleted_at": None,
}
_DELIVERY_EXAMPLE: Final = {
    "event_id": 42,
    "event_type": "ledger.accrual",
    "user_id": 7,
    "state": "pending",
    "attempts": 3,
    "created_at": "2026-12-07T10:00:00Z",
    "last_attempt_at": "2026-12-07T10:00:07Z",
    "last_status": 503,
    "last_error": "HTTP 503",
    "next_attempt_at": "2026-12-07T10:00:15Z",
    "delivered_at": None,
}
_UNKNOWN_ENDPOINT: Final = error_doc("No endpoint has this id", "no webhook endpoint 9")
_BAD_ID: Final = error_doc(
    "Not an id (a whole number from 1 to 2^63 - 1)",
    "an id is a whole number from 1 to 9223372036854775807",
)


def _id(text: str) -> int:
    """A path's id: 1 to 2^63 - 1 (what the database's ids hold), or a 400."""
    number = int(text) if text.isascii() and text.isdigit() and len(text) <= 19 else 0
    if not 1 <= number <= _MAX_ID:
        raise InvalidInput("an id is a whole number from 1 to 9223372036854775807")
    return number


def _webhook(endpoint: WebhookEndpoint) -> Webhook:
    return Webhook(
        endpoint.id, endpoint.url, list(endpoint.events), endpoint.created_at, endpoint.deleted_at
    )


def _new_webhook_json(new: NewWebhook) -> bytes:
    e = new.endpoint
    return encoder.encode(NewWebhookBody(e.id, e.url, list(e.events), e.created_at, new.secret))


def _deliveries_json(views: Sequence[DeliveryView]) -> bytes:
    return encoder.encode(
        [
            Delivery(
                v.event_id,
                v.event_type,
                v.user_id,
                v.state,
                v.attempts,
                v.created_at,
                v.last_attempt_at,
                v.last_status,
                v.last_error,
                v.next_attempt_at,
                v.delivered_at,
            )
            for v in views
        ]
    )


@requires(OPERATOR_KEY)
class AdminWebhooksController(Controller):
    """``/api/admin/webhooks`` and ``/api/admin/events/{id}/redeliver``."""

    path = "/api/admin"
    tags = ["admin"]

    @post(
        "/webhooks",
        operation_id="admin_add_webhook",
        status_code=201,
        summary="Register a webhook endpoint",
        description="From now on, every event whose type `events` matches is POSTed to "
        "`url` as JSON, signed: `Gophermart-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "
        '"<t>.<body>")>`, with `Gophermart-Event-Id`. At least once, in order per user, '
        "retried with backoff for 24 h. The `secret` is in this answer only.",
        responses={
            201: json_doc(
                NewWebhookBody,
                "Registered (keep the secret)",
                {**_WEBHOOK_EXAMPLE, "secret": "whsec_…"},
            ),
            400: MALFORMED,
            422: error_doc(
                "A URL that is not http(s), too long or with credentials; an unknown event type",
                "unknown event type 'ledger.acrual'",
            ),
            **AUTH_ERRORS,
            **BODY_ERRORS,
        },
        dependencies=body_of(WebhookRequest),
        operation_class=documented(
            body_description="`url` to POST to, `events` to send there.",
            body_examples={"all": {"url": "https://shop.example/hooks", "events": ["*"]}},
            idempotency="required",
        ),
    )
    @idempotent("operator", required=True)
    async def add(self, request: Request[Any, Any, Any]) -> ASGIResponse:
        body = decode_webhook(await request.body())
        new = await mount_of(request).loyalty.add_webhook(body.url, body.events)
        return json_response(_new_webhook_json(new), 201)

    @get(
        "/webhooks",
        operation_id="admin_list_webhooks",
        summary="The webhook endpoints",
        description="Every endpoint, deleted ones too (`deleted_at`), by id; never a secret.",
        responses={
            200: json_doc(list[Webhook], "The endpoints", [_WEBHOOK_EXAMPLE]),
            204: empty_doc("None registered"),
            **AUTH_ERRORS,
        },
        operation_class=OPERATION,
    )
    async def list_webhooks(self, request: Request[Any, Any, Any]) -> ASGIResponse:
        endpoints = await mount_of(request).loyalty.webhooks()
        if not endpoints:
            return empty_response(204)
        return json_response(encoder.encode([_webhook(e) for e in endpoints]))

    @delete(
        "/webhooks/{endpoint_id:str}",
        operation_id="admin_delete_webhook",
        status_code=200,
        summary="Stop delivering to an endpoint",
        description="No new POST starts (one in flight finishes); its deliveries stay "
        "listed. Deleting it again changes nothing. Answers the endpoint.",
        responses={
            200: json_doc(
                Webhook, "Deleted", {**_WEBHOOK_EXAMPLE, "deleted_at": "2026-12-08T09:00:00Z"}
            ),
            400: _BAD_ID,
            404: _UNKNOWN_ENDPOINT,
            **AUTH_ERRORS,
        },
        operation_class=OPERATOR_WRITE,
    )
    @idempotent("operator", required=True)
    async def delete_webhook(
        self, request: Request[Any, Any, Any], endpoint_id: str = ENDPOINT_ID
    ) -> ASGIResponse:
        endpoint = await mount_of(request).loyalty.delete_webhook(_id(endpoint_id))
        return json_response(encoder.encode(_webhook(endpoint)))

    @get(
        "/webhooks/{endpoint_id:str}/deliveries",
        operation_id="admin_webhook_deliveries",
        summary="An endpoint's deliveries",
        description="Newest event first: pending (with when it is tried next), delivered, "
        "or failed (retried for the whole window; `POST /api/admin/events/{id}/redeliver` "
        "sends it again). `?limit=&before=<event id>` pages.",
        responses={
            200: json_doc(list[Delivery], "The deliveries", [_DELIVERY_EXAMPLE]),
            204: empty_doc("Nothing delivered to it yet"),
            400: error_doc("`limit` or `before` out of range, or an id that is not one", "bad"),
            404: _UNKNOWN_ENDPOINT,
            **AUTH_ERRORS,
        },
        operation_class=OPERATION,
    )
    async def deliveries(
        self,
        request: Request[Any, Any, Any],
        endpoint_id: str = ENDPOINT_ID,
        limit: DeliveriesLimit = None,
        before: DeliveriesBefore = None,
    ) -> ASGIResponse:
        views = await mount_of(request).loyalty.webhook_deliveries(_id(endpoint_id), limit, before)
        if not views:
            return empty_response(204)
        return json_response(_deliveries_json(views))

    @post(
        "/events/{event_id:str}/redeliver",
        operation_id="admin_redeliver_event",
        status_code=200,
        summary="Deliver an event again",
        description="To every live endpoint that had it (delivered or failed): due now, "
        "with a new retry window; the user's later events wait for it again. One still "
        "pending is left as it is (and counted).",
        responses={
            200: json_doc(Redelivered, "Queued again", {"event_id": 42, "pending": 1}),
            400: _BAD_ID,
            404: error_doc(
                "No live endpoint ever had this event",
                "event 42 was never delivered to a live endpoint",
            ),
            **AUTH_ERRORS,
        },
        operation_class=OPERATOR_WRITE,
    )
    @idempotent("operator", required=True)
    async def redeliver(
        self, request: Request[Any, Any, Any], event_id: str = EVENT_ID
    ) -> ASGIResponse:
        event = _id(event_id)
        pending = await mount_of(request).loyalty.redeliver_event(event)
        return json_response(encoder.encode(Redelivered(event, pending)))
