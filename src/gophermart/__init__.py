"""Gophermart: a loyalty-points service, usable as a library.

Everything a host needs is importable from here (and, for its tests, from
:mod:`gophermart.testing`); deeper modules are implementation and may change::

    from gophermart import Gophermart, Points

    async with Gophermart.open("sqlite:///shop.db") as loyalty:
        alice = await loyalty.register("alice", "correct horse")
        await loyalty.upload_order(alice.user_id, "9278923470")
        await loyalty.record_accrual("9278923470", Points.exact("729.98"))
        await loyalty.withdraw(alice.user_id, "2377225624", "500")

The business lives in :mod:`gophermart.domain` (pure rules) and
:mod:`gophermart.application` (use cases and the ports they need); frameworks and
drivers at the edges (:mod:`gophermart.adapters`, :mod:`gophermart.entrypoints`);
:mod:`gophermart.bootstrap` wires them; :mod:`gophermart.facade` is the face.
"""

from gophermart.application.errors import (
    ConcurrentUpdate,
    NotOpen,
    Overloaded,
    StoreMisconfigured,
    StoreUnavailable,
    Unauthenticated,
)
from gophermart.application.orders import UploadOutcome
from gophermart.application.ports import BalanceView, OrderView, WithdrawalView
from gophermart.application.reconcile import ReconcileReport
from gophermart.application.users import Authenticated
from gophermart.blocking import BlockingGophermart
from gophermart.domain.errors import (
    DomainError,
    GophermartError,
    IllegalStatusTransition,
    InsufficientPoints,
    InvalidAmount,
    InvalidCredentials,
    InvalidInput,
    InvalidOrderNumber,
    LoginTaken,
    OrderOwnedByAnotherUser,
    TooManyAttempts,
    UnknownOrder,
    UnknownUser,
    WithdrawalConflict,
)
from gophermart.domain.orders import AccrualVerdict, Order, OrderNumber, OrderStatus
from gophermart.domain.points import Points
from gophermart.domain.users import UserId
from gophermart.entrypoints.http.app import http_app, http_router, loyalty_lifespan
from gophermart.facade import Gophermart
from gophermart.settings import ConfigError

__version__ = "0.2.0"

__all__ = [
    "AccrualVerdict",
    "Authenticated",
    "BalanceView",
    "BlockingGophermart",
    "ConcurrentUpdate",
    "ConfigError",
    "DomainError",
    "Gophermart",
    "GophermartError",
    "IllegalStatusTransition",
    "InsufficientPoints",
    "InvalidAmount",
    "InvalidCredentials",
    "InvalidInput",
    "InvalidOrderNumber",
    "LoginTaken",
    "NotOpen",
    "Order",
    "OrderNumber",
    "OrderOwnedByAnotherUser",
    "OrderStatus",
    "OrderView",
    "Overloaded",
    "Points",
    "ReconcileReport",
    "StoreMisconfigured",
    "StoreUnavailable",
    "TooManyAttempts",
    "Unauthenticated",
    "UnknownOrder",
    "UnknownUser",
    "UploadOutcome",
    "UserId",
    "WithdrawalConflict",
    "WithdrawalView",
    "__version__",
    "http_app",
    "http_router",
    "loyalty_lifespan",
]
