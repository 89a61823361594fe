"""The OpenAPI 3.1 description of the HTTP API, kept beside it as route metadata.

The handlers read their bodies with msgspec decoders (the fast path, see ``wire.py``), so
Litestar cannot infer the request bodies or the answers from their signatures. Each route
gets its documentation here instead, as decorator keyword arguments (``ROUTE_DOCS``):
metadata read once when the schema is generated, never on a request. The schemas come from
the very msgspec structs the handlers decode and encode (``wire.py``), so the document and
the wire cannot drift apart; the examples are SPEC.md's.

:func:`openapi_config` serves it at ``/schema/openapi.json`` (and ``.yaml``) with Swagger
UI at ``/schema``, whose assets are served by the app itself (no CDN: the UI works on a
machine without internet access).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from litestar.datastructures import Cookie, ResponseHeader
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.spec import (
    Components,
    Example,
    SecurityScheme,
    Tag,
)

from gophermart.entrypoints.http.wire import (
    BalanceOut,
    Credentials,
    ErrorOut,
    OrderOut,
    WithdrawalOut,
    WithdrawRequest,
)
from gophermart.entrypoints.schema_site import (
    SCHEMA_PATH,
    documented_body,
    render_plugins,
    struct_schema,
)

JSON: Final = "application/json"
TEXT: Final = "text/plain"

#: The two ways a protected route accepts the credential (SPEC.md: "either works").
SECURITY_SCHEMES: Final[dict[str, SecurityScheme | Any]] = {
    "bearer": SecurityScheme(
        type="http",
        scheme="bearer",
        bearer_format="JWT",
        description="The token from the `Authorization` header of register/login.",
    ),
    "cookie": SecurityScheme(
        type="apiKey",
        name="token",
        security_scheme_in="cookie",
        description="The HttpOnly `token` cookie set by register/login.",
    ),
}
SECURITY: Final[list[dict[str, list[str]]]] = [{"bearer": []}, {"cookie": []}]


CREDENTIALS_BODY = documented_body(
    JSON,
    struct_schema(Credentials),
    {"alice": {"login": "alice", "password": "correct horse"}},
    "A login (1-64 characters) and a password (1-256 characters).",
)
ORDER_BODY = documented_body(
    TEXT,
    {"type": "string", "pattern": r"^\s*[0-9]+\s*$", "maxLength": 1024},
    {"order": "9278923470"},
    "The order number: digits passing the Luhn check (surrounding whitespace is ignored). "
    "The Content-Type is not checked, so `curl -d 9278923470` works too.",
)
WITHDRAW_BODY = documented_body(
    JSON,
    struct_schema(WithdrawRequest),
    {"spend": {"order": "2377225624", "sum": 751}},
    "Spend `sum` points (a JSON number, > 0, at most two decimals) on a new order `order`.",
)


# --- responses ----------------------------------------------------------------------


def _error(description: str, example: str) -> ResponseSpec:
    return ResponseSpec(
        data_container=ErrorOut,
        description=description,
        generate_examples=False,
        examples=[Example(summary=description, value={"error": example})],
    )


def _empty(description: str) -> ResponseSpec:
    return ResponseSpec(data_container=None, description=description)


MALFORMED = _error(
    "Malformed request: not JSON, a missing field, a wrong type, empty or over-long "
    "values, or a broken gzip body",
    "malformed body: Object missing required field `login`",
)
UNAUTHENTICATED = _error(
    "Missing, malformed, tampered or expired credentials (or a token of a user that no "
    "longer exists); `WWW-Authenticate: Bearer` is set",
    "missing credentials",
)
TOO_LARGE = _error(
    "The body is larger than 64 KiB (or, gzip-inflated, than 1 MiB)", "request body too large"
)
UNSUPPORTED_ENCODING = _error(
    "A `Content-Encoding` other than gzip or identity", "unsupported Content-Encoding"
)
INTERNAL = _error("Internal error: always a bug, reported in the logs", "internal error")
UNAVAILABLE = _error(
    "The database is unavailable or too slow; nothing was changed, retry after "
    "`Retry-After` seconds",
    "database unavailable",
)

_COMMON: Final = {413: TOO_LARGE, 415: UNSUPPORTED_ENCODING, 500: INTERNAL, 503: UNAVAILABLE}
_PROTECTED: Final = {401: UNAUTHENTICATED, **_COMMON}

_TOKEN_HEADER = ResponseHeader(
    name="Authorization",
    value="Bearer <token>",
    documentation_only=True,
    description="`Bearer <token>`: send it back on protected routes",
)
_TOKEN_COOKIE = Cookie(
    key="token",
    documentation_only=True,
    httponly=True,
    samesite="lax",
    description="The same token as an HttpOnly cookie",
)

_ORDERS_EXAMPLE = [
    {
        "number": "9278923470",
        "status": "PROCESSED",
        "accrual": 500,
        "uploaded_at": "2020-12-10T15:15:45+03:00",
    },
    {"number": "12345678903", "status": "PROCESSING", "uploaded_at": "2020-12-10T15:12:01+03:00"},
    {"number": "346436439", "status": "INVALID", "uploaded_at": "2020-12-09T16:09:53+03:00"},
]

_SIGNED_IN: Final[dict[str, Any]] = {
    "media_type": TEXT,
    "response_headers": [_TOKEN_HEADER],
    "response_cookies": [_TOKEN_COOKIE],
    "tags": ["users"],
}

#: Keyword arguments for each route decorator in ``app.py``, by handler name.
ROUTE_DOCS: Final[Mapping[str, Mapping[str, Any]]] = {
    "register": {
        **_SIGNED_IN,
        "summary": "Register and sign in",
        "description": "Creates the user with an empty account and authenticates them: the "
        "token comes back in the `Authorization` header and the `token` cookie.",
        "operation_class": CREDENTIALS_BODY,
        "response_description": "Registered and authenticated (empty body)",
        "responses": {400: MALFORMED, 409: _error("The login is taken", "login taken"), **_COMMON},
    },
    "log_in": {
        **_SIGNED_IN,
        "summary": "Sign in",
        "description": "Repeated failures for one login or one client address are refused "
        "with `429` and `Retry-After` (5 failures per login in 15 minutes, 50 per address).",
        "operation_class": CREDENTIALS_BODY,
        "response_description": "Authenticated (empty body)",
        "responses": {
            400: MALFORMED,
            401: _error("Wrong login/password pair", "wrong login or password"),
            429: _error(
                "Too many failed attempts for this login or client address; retry after "
                "`Retry-After` seconds",
                "too many failed attempts; retry in 4 s",
            ),
            **_COMMON,
        },
    },
    "upload_order": {
        "summary": "Upload an order number",
        "description": "Ties the number to the caller; the accrual worker then asks the "
        "accrual system how many points it earns.",
        "tags": ["orders"],
        "media_type": TEXT,
        "operation_class": ORDER_BODY,
        "response_description": "New number accepted for processing (empty body)",
        "responses": {
            200: _empty("The caller already uploaded this number (empty body)"),
            400: _error("Malformed request (e.g. empty body, not UTF-8)", "empty body"),
            409: _error("Another user already uploaded this number", "order owned by another"),
            422: _error(
                "Not a valid order number (non-digits, Luhn check fails)",
                "order number fails the Luhn check",
            ),
            **_PROTECTED,
        },
    },
    "list_orders": {
        "summary": "The caller's orders, newest upload first",
        "description": "`accrual` is present only when points were awarded. Statuses: `NEW` "
        "(not yet seen by the accrual system), `PROCESSING`, `INVALID` (final, no points), "
        "`PROCESSED` (final).",
        "tags": ["orders"],
        "responses": {
            200: ResponseSpec(
                data_container=list[OrderOut],
                description="The caller's orders, newest upload first",
                generate_examples=False,
                examples=[Example(summary="three orders", value=_ORDERS_EXAMPLE)],
            ),
            204: _empty("No orders yet"),
            400: _error(
                "`limit` outside 1..10000, or `before` not an order number",
                "limit must be between 1 and 10000",
            ),
            **_PROTECTED,
        },
    },
    "balance": {
        "summary": "The caller's balance",
        "tags": ["points"],
        "responses": {
            200: ResponseSpec(
                data_container=BalanceOut,
                description="Points available now, and the total ever spent",
                generate_examples=False,
                examples=[Example(summary="balance", value={"current": 500.5, "withdrawn": 42})],
            ),
            **_PROTECTED,
        },
    },
    "withdraw": {
        "summary": "Spend points on a new order",
        "description": "The same request repeated (same user, order and sum) is answered "
        "`200` and charged once.",
        "tags": ["points"],
        "media_type": TEXT,
        "operation_class": WITHDRAW_BODY,
        "response_description": "Done, or a replay of the identical withdrawal (empty body)",
        "responses": {
            400: MALFORMED,
            402: _error("Not enough points; nothing was changed", "not enough points"),
            409: _error(
                "The order number was already used for a different withdrawal",
                "order already used for another withdrawal",
            ),
            422: _error(
                "Invalid order number (Luhn) or sum (not positive, more than two decimals)",
                "sum must be positive",
            ),
            **_PROTECTED,
        },
    },
    "list_withdrawals": {
        "summary": "The caller's withdrawals, newest first",
        "tags": ["points"],
        "responses": {
            200: ResponseSpec(
                data_container=list[WithdrawalOut],
                description="The caller's withdrawals, newest first",
                generate_examples=False,
                examples=[
                    Example(
                        summary="one withdrawal",
                        value=[
                            {
                                "order": "2377225624",
                                "sum": 500,
                                "processed_at": "2020-12-09T16:09:57+03:00",
                            }
                        ],
                    )
                ],
            ),
            204: _empty("No withdrawals yet"),
            **_PROTECTED,
        },
    },
}


def openapi_config(*, title: str, version: str, description: str) -> OpenAPIConfig:
    return OpenAPIConfig(
        title=title,
        version=version,
        description=description,
        path=SCHEMA_PATH,
        render_plugins=render_plugins(),
        components=Components(security_schemes=SECURITY_SCHEMES),
        tags=[
            Tag(name="users", description="Registration and sign-in"),
            Tag(name="orders", description="Order numbers handed in for points"),
            Tag(name="points", description="Balance and withdrawals"),
        ],
        use_handler_docstrings=False,
    )


API_DESCRIPTION: Final = (
    "The Gophermart loyalty service (SPEC.md). Register or log in to get a token; send it "
    "as `Authorization: Bearer <token>` or let the `token` cookie carry it. Amounts are "
    "exact decimals in points (1 point = 1 rouble, at most two decimals). Every error "
    'answers with a JSON body `{"error": "..."}`.'
)
