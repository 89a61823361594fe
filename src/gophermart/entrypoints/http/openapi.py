"""The OpenAPI 3.1 document as a whole: its title, tags and security schemes.

Each route's own description (bodies, answers, examples, operation id) sits beside its
handler in ``controllers/``. :func:`openapi_config` serves the document at
``/schema/openapi.json`` (and ``.yaml``) with Swagger UI at ``/schema``, whose assets are
served by the app itself (no CDN: the UI works on a machine without internet access).
"""

from __future__ import annotations

from typing import Any, Final

from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme, Tag

from gophermart.entrypoints.http.auth import OPERATOR_KEY, USER_TOKEN
from gophermart.entrypoints.schema_site import SCHEMA_PATH, render_plugins

#: The schemes the protected routes name; a host mounting the router declares them in its
#: own ``OpenAPIConfig`` (docs/embedding.md).
SECURITY_SCHEMES: Final[dict[str, SecurityScheme | Any]] = {
    **USER_TOKEN.schemes,
    **OPERATOR_KEY.schemes,
}

API_DESCRIPTION: Final = (
    "The Gophermart loyalty service (SPEC.md). Register or log in to get a token; send it "
    "as `Authorization: Bearer <token>` or let the `token` cookie carry it. The routes "
    "under `/api/admin/` take an operator key instead (`gophermart operator add NAME`), "
    "as `Authorization: Bearer <key>`. Amounts are "
    "exact decimals in points (1 point = 1 rouble, at most two decimals). Every error "
    'answers with a JSON body `{"error": "..."}`.'
)


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
            Tag(name="admin", description="For operators: users, orders, retries"),
            Tag(name="health", description="Probes and metrics, for operators"),
        ],
        use_handler_docstrings=False,
    )
