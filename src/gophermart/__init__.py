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

from importlib import metadata
from typing import TYPE_CHECKING

from gophermart.adapters.event_wire import event_from_json, event_json
from gophermart.application.errors import (
    ConcurrentUpdate,
    MigrationFailed,
    NotOpen,
    Overloaded,
    StoreMisconfigured,
    StoreUnavailable,
    Unauthenticated,
)
from gophermart.application.ledger import HoldOutcome, Movement
from gophermart.application.orders import UploadOutcome
from gophermart.application.ports import (
    AccrualReply,
    BalanceView,
    DeliveryView,
    HistoryView,
    LedgerGauges,
    OrderState,
    OrderView,
    QueueDepth,
    SchemaState,
    UserAccountView,
    WebhookEndpoint,
    WebhookLag,
    WithdrawalView,
)
from gophermart.application.readiness import Readiness
from gophermart.application.reconcile import ReconcileReport
from gophermart.application.users import Authenticated
from gophermart.application.webhooks import NewWebhook
from gophermart.blocking import BlockingGophermart
from gophermart.domain.accounts import EntryKind, Hold, HoldState
from gophermart.domain.errors import (
    BalanceOverflow,
    DomainError,
    ExceedsOriginal,
    GophermartError,
    HoldConflict,
    IllegalStatusTransition,
    InsufficientPoints,
    InvalidAmount,
    InvalidCredentials,
    InvalidInput,
    InvalidOrderNumber,
    LoginTaken,
    OrderIsFinal,
    OrderOwnedByAnotherUser,
    TooManyAttempts,
    UnknownHold,
    UnknownLogin,
    UnknownOrder,
    UnknownUser,
    WithdrawalConflict,
)
from gophermart.domain.events import EVENT_TYPES, Event, EventsPruned
from gophermart.domain.operators import OperatorExists, OperatorName, UnknownOperator
from gophermart.domain.orders import AccrualVerdict, Order, OrderNumber, OrderStatus
from gophermart.domain.points import Points
from gophermart.domain.users import UserId
from gophermart.domain.webhooks import InvalidWebhook, UnknownEvent, UnknownWebhook
from gophermart.extras import is_from, needs_extra
from gophermart.facade import Gophermart
from gophermart.settings import ConfigError, Settings

if TYPE_CHECKING:  # imported on first use (__getattr__): Litestar is the http extra's
    from gophermart.entrypoints.http.app import http_app, http_router, loyalty_lifespan

try:  # one definition, pyproject.toml's, read from the installed package's metadata
    __version__ = metadata.version("gophermart")
except metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

#: The names that need the ``http`` extra (Litestar), imported when first asked for, so
#: that ``import gophermart`` works with the core alone.
_HTTP_NAMES = ("http_app", "http_router", "loyalty_lifespan")

__all__ = [
    "EVENT_TYPES",
    "AccrualReply",
    "AccrualVerdict",
    "Authenticated",
    "BalanceOverflow",
    "BalanceView",
    "BlockingGophermart",
    "ConcurrentUpdate",
    "ConfigError",
    "DeliveryView",
    "DomainError",
    "EntryKind",
    "Event",
    "EventsPruned",
    "ExceedsOriginal",
    "Gophermart",
    "GophermartError",
    "HistoryView",
    "Hold",
    "HoldConflict",
    "HoldOutcome",
    "HoldState",
    "IllegalStatusTransition",
    "InsufficientPoints",
    "InvalidAmount",
    "InvalidCredentials",
    "InvalidInput",
    "InvalidOrderNumber",
    "InvalidWebhook",
    "LedgerGauges",
    "LoginTaken",
    "MigrationFailed",
    "Movement",
    "NewWebhook",
    "NotOpen",
    "OperatorExists",
    "OperatorName",
    "Order",
    "OrderIsFinal",
    "OrderNumber",
    "OrderOwnedByAnotherUser",
    "OrderState",
    "OrderStatus",
    "OrderView",
    "Overloaded",
    "Points",
    "QueueDepth",
    "Readiness",
    "ReconcileReport",
    "SchemaState",
    "Settings",
    "StoreMisconfigured",
    "StoreUnavailable",
    "TooManyAttempts",
    "Unauthenticated",
    "UnknownEvent",
    "UnknownHold",
    "UnknownLogin",
    "UnknownOperator",
    "UnknownOrder",
    "UnknownUser",
    "UnknownWebhook",
    "UploadOutcome",
    "UserAccountView",
    "UserId",
    "WebhookEndpoint",
    "WebhookLag",
    "WithdrawalConflict",
    "WithdrawalView",
    "__version__",
    "event_from_json",
    "event_json",
    "http_app",
    "http_router",
    "loyalty_lifespan",
]


# Hidden from type checkers: a module __getattr__ would let them accept any name imported
# from gophermart (as Any); they see the three names through the TYPE_CHECKING import.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        """``gophermart.http_router`` & co. (PEP 562): Litestar is imported when one is first
        asked for, and a host without the http extra is told which extra to install."""
        if name not in _HTTP_NAMES:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        try:
            from gophermart.entrypoints.http import app
        except ModuleNotFoundError as exc:
            if not is_from("http", exc):
                raise
            raise ModuleNotFoundError(
                needs_extra(f"gophermart.{name}", "http"), name=exc.name
            ) from exc
        return getattr(app, name)
