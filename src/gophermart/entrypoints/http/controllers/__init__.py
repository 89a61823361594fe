"""The HTTP API's controllers, one per capability; each file holds its handlers and
their OpenAPI description side by side.

An ``admin`` controller (operator routes under ``/api/admin/``) will sit beside these,
required by ``@requires`` to present an operator key: a second kind of credential
(``auth.py``).
"""

from gophermart.entrypoints.http.controllers.accounts import AccountsController
from gophermart.entrypoints.http.controllers.health import METRICS_PATH, HealthController
from gophermart.entrypoints.http.controllers.orders import OrdersController
from gophermart.entrypoints.http.controllers.points import PointsController

__all__ = [
    "METRICS_PATH",
    "AccountsController",
    "HealthController",
    "OrdersController",
    "PointsController",
]
