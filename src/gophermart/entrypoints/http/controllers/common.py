"""What the controllers share: the answers they build, and the pieces of their OpenAPI
documentation that recur (error responses, ``Retry-After``, documented request bodies).

The handlers read their bodies with msgspec decoders (the fast path, ``wire.py``), so
Litestar cannot infer the request bodies or the answers from their signatures: each
route's decorator says them, from the very structs the handler decodes and encodes, so
the document and the wire cannot drift apart. All of it is metadata read once, when the
schema is generated, never on a request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final

from litestar.di import Provide
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import (
    Example,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    Reference,
    RequestBody,
    Schema,
)
from litestar.params import Body
from litestar.response.base import ASGIResponse

from gophermart.entrypoints.http.wire import Error

JSON: Final = "application/json"
TEXT: Final = "text/plain"  # for the empty bodies: they are not JSON (Litestar adds the charset)


# The handlers answer ASGIResponse, Litestar's own low-level answer, which it sends as it
# is: a ``Response`` is converted into one on every request (headers, cookies and body
# rendered anew), measured in process at ~3 us of the ~25 us a hot read spends in the
# framework. The bytes on the wire are the same.


def json_response(body: bytes, status: int = 200) -> ASGIResponse:
    return ASGIResponse(body=body, status_code=status, media_type=JSON)


def empty_response(status: int) -> ASGIResponse:
    """No body; ``text/plain`` because an empty body is not JSON."""
    return ASGIResponse(body=b"", status_code=status, media_type=TEXT)


# --- responses ----------------------------------------------------------------------


def error_doc(description: str, example: str) -> ResponseSpec:
    """An error answer: ``{"error": ...}`` (the ``Error`` component)."""
    return ResponseSpec(
        data_container=Error,
        description=description,
        generate_examples=False,
        examples=[Example(summary=description, value={"error": example})],
    )


def empty_doc(description: str) -> ResponseSpec:
    return ResponseSpec(data_container=None, description=description)


def json_doc(container: Any, description: str, example: Any) -> ResponseSpec:
    """A JSON answer with its schema (a named component) and one example."""
    return ResponseSpec(
        data_container=container,
        description=description,
        generate_examples=False,
        examples=[Example(summary=description, value=example)],
    )


MALFORMED: Final = error_doc(
    "Malformed request: not JSON, a missing field, a wrong type, empty or over-long "
    "values, or a broken gzip body",
    "malformed body: Object missing required field `login`",
)
_UNAUTHENTICATED = error_doc(
    "Missing, malformed, tampered or expired credentials (or a token of a user that no "
    "longer exists); `WWW-Authenticate: Bearer` is set",
    "missing credentials",
)
_TOO_LARGE = error_doc(
    "The body is larger than 64 KiB (or, gzip-inflated, than 1 MiB)", "request body too large"
)
_UNSUPPORTED_ENCODING = error_doc(
    "A `Content-Encoding` other than gzip or identity", "unsupported Content-Encoding"
)
_INTERNAL = error_doc("Internal error: always a bug, reported in the logs", "internal error")
_UNAVAILABLE = error_doc(
    "The database is unavailable or too slow; nothing was changed, retry after "
    "`Retry-After` seconds",
    "database unavailable",
)

#: What any route may answer.
SERVER_ERRORS: Final[Mapping[int, ResponseSpec]] = {500: _INTERNAL, 503: _UNAVAILABLE}
#: What a route that reads a body may answer besides (GzipRequestMiddleware, body limit).
BODY_ERRORS: Final[Mapping[int, ResponseSpec]] = {
    413: _TOO_LARGE,
    415: _UNSUPPORTED_ENCODING,
    **SERVER_ERRORS,
}
#: What a protected route may answer besides.
AUTH_ERRORS: Final[Mapping[int, ResponseSpec]] = {401: _UNAUTHENTICATED, **SERVER_ERRORS}

# --- headers of error answers, and request bodies -------------------------------------


def retry_after(*, required: bool = True) -> OpenAPIHeader:
    return OpenAPIHeader(
        schema=Schema(type=OpenAPIType.INTEGER, minimum=1),
        description="Seconds to wait before trying again",
        required=required,
    )


_WWW_AUTHENTICATE = OpenAPIHeader(
    schema=Schema(type=OpenAPIType.STRING),
    description='`Bearer realm="gophermart"`: the credential to send',
    required=True,
)
#: Headers every answer of a status carries (``errors.py`` sets them), declared on each.
ERROR_HEADERS: Final[Mapping[str, Mapping[str, OpenAPIHeader]]] = {
    "401": {"WWW-Authenticate": _WWW_AUTHENTICATE},
    "429": {"Retry-After": retry_after()},
    "503": {"Retry-After": retry_after()},
}


def documented(
    *,
    body_description: str | None = None,
    body_examples: Mapping[str, Any] | None = None,
    error_headers: Mapping[str, Mapping[str, OpenAPIHeader]] = ERROR_HEADERS,
    idempotency: str | None = None,
) -> type[Operation]:
    """An ``operation_class`` that declares the error answers' headers and describes the
    request body (whose schema :func:`body_of` has Litestar generate); a write route's
    ``Idempotency-Key`` (``idempotency``: ``"required"`` or ``"optional"``) with its
    answers, as :func:`idempotency_documented` adds them."""

    @dataclass
    class DocumentedOperation(Operation):
        def __post_init__(self) -> None:
            for status, response in (self.responses or {}).items():
                headers = error_headers.get(status)
                if headers and isinstance(response, OpenAPIResponse):
                    response.headers = {**(response.headers or {}), **headers}
            if isinstance(self.request_body, RequestBody):
                self.request_body.description = body_description
                for media in self.request_body.content.values():
                    media.examples = {
                        name: Example(value=value) for name, value in (body_examples or {}).items()
                    } or None
            if idempotency is not None:
                idempotency_documented(self, required=idempotency == "required")

    return DocumentedOperation


# --- Idempotency-Key (entrypoints/http/idempotency.py) ---------------------------------

#: 1 to 255 printable ASCII characters (none but visible ones at either end: HTTP strips
#: the spaces around a header's value).
IDEMPOTENCY_KEY_PATTERN: Final = r"^[!-~](?:[ -~]{0,253}[!-~])?$"
_REPLAYED = OpenAPIHeader(
    schema=Schema(type=OpenAPIType.STRING, enum=["true"]),
    description="`true`: the stored answer of an earlier request with this `Idempotency-Key`",
    required=False,
)
_KEY_ANSWERS: Final = {
    "400": "or the `Idempotency-Key` header is missing (operator routes) or not 1-255 "
    "printable ASCII characters",
    "409": "or a request with this `Idempotency-Key` is still being processed",
    "422": "or this `Idempotency-Key` was used with another request (method, path or body)",
}


def idempotency_documented(operation: Operation, *, required: bool) -> None:
    """Declare the ``Idempotency-Key`` header on a write ``operation``, the answers it
    adds (400, 409, 422) and ``Idempotent-Replayed`` on every answer that is replayed."""
    operation.parameters = [
        *(operation.parameters or []),
        Parameter(
            name="Idempotency-Key",
            param_in="header",
            required=required,
            schema=Schema(
                type=OpenAPIType.STRING,
                min_length=1,
                max_length=255,
                pattern=IDEMPOTENCY_KEY_PATTERN,
            ),
            description=(
                "Required on operator writes; optional on shopper writes. The same key "
                "with the same request within 24 h answers the first answer again "
                "(`Idempotent-Replayed: true`) and changes nothing. Keys are the caller's."
            ),
            examples={"uuid": Example(value="8e03978e-40d5-43e8-bc93-6894a57f9324")},
        ),
    ]
    responses = operation.responses = operation.responses or {}
    for status, addition in _KEY_ANSWERS.items():
        response = responses.get(status)
        if isinstance(response, OpenAPIResponse):
            response.description = f"{response.description}; {addition}"
        else:
            responses[status] = OpenAPIResponse(
                description=addition[3].upper() + addition[4:],  # "or a ..." -> "A ..."
                content={
                    JSON: OpenAPIMediaType(schema=Reference(ref="#/components/schemas/Error"))
                },
            )
    for status, response in responses.items():
        if int(status) < 500 and isinstance(response, OpenAPIResponse):
            response.headers = {**(response.headers or {}), "Idempotent-Replayed": _REPLAYED}


OPERATION: Final = documented()  # for the routes that take no body
#: The write routes that take no body: a shopper's (a key accepted), an operator's (required).
SHOPPER_WRITE: Final = documented(idempotency="optional")
OPERATOR_WRITE: Final = documented(idempotency="required")


def body_of(annotation: Any) -> dict[str, Provide]:
    """A handler's ``dependencies`` that document its body as ``annotation`` (a wire struct,
    or ``Annotated[str, Body(media_type=...)]``), rendered and registered as a component by
    Litestar like any request body, so a host mounting the router gets it too.

    Documentation only: Litestar reads a ``data`` parameter of a route's dependencies for
    the schema, but resolves a dependency only for a handler that asks for it, and the
    handler does not: it decodes its raw body itself, and this never runs.
    """

    async def request_body(data: Any) -> None:  # pragma: no cover - never called
        raise AssertionError("documentation only")

    request_body.__annotations__ = {"data": annotation, "return": None}
    return {"request_body": Provide(request_body)}


def text_body(**schema: Any) -> Any:
    """A ``text/plain`` request body's annotation (``Body`` constraints), for :func:`body_of`."""
    return Annotated[str, Body(media_type=TEXT, **schema)]
