"""The HTTP API's controllers, one per capability; each file holds its handlers and
their OpenAPI description side by side.

``admin`` holds the operator routes under ``/api/admin/``, required by ``@requires`` to
present an operator key: the second kind of credential (``auth.py``).
"""

from gophermart.entrypoints.http.controllers.accounts import AccountsController
from gophermart.entrypoints.http.controllers.admin import AdminController
from gophermart.entrypoints.http.controllers.admin_ledger import AdminLedgerController
from gophermart.entrypoints.http.controllers.admin_webhooks import AdminWebhooksController
from gophermart.entrypoints.http.controllers.health import METRICS_PATH, HealthController
from gophermart.entrypoints.http.controllers.ledger import LedgerController
from gophermart.entrypoints.http.controllers.orders import OrdersController
from gophermart.entrypoints.http.controllers.points import PointsController

__all__ = [
    "METRICS_PATH",
    "AccountsController",
    "AdminController",
    "AdminLedgerController",
    "AdminWebhooksController",
    "HealthController",
    "LedgerController",
    "OrdersController",
    "PointsController",
]
