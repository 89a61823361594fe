"""The library's face: :class:`Gophermart`, every use case of the mission as a verb.

A shop service embeds the loyalty service with one object::

    async with Gophermart.open("sqlite:///shop.db") as loyalty:
        alice = await loyalty.register("alice", "correct horse")
        await loyalty.upload_order(alice.user_id, "9278923470")

It opens on a database URL (migrating it), in memory, or on the host's own SQLAlchemy
``AsyncEngine``; the HTTP API (:func:`gophermart.http_app`, :func:`gophermart.http_router`)
and the command line are clients of this class like any host. Deep modules are
implementation; what this module and ``gophermart/__init__.py`` export is the contract.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from decimal import Decimal
from types import TracebackType
from typing import Any, Self

from dependency_injector import providers

from gophermart.adapters.sql.engine import Database
from gophermart.adapters.sql.pg_pool import PgPool
from gophermart.application.accounts import Withdraw
from gophermart.application.accruals import RecordAccrual
from gophermart.application.orders import UploadOrder, UploadOutcome
from gophermart.application.ports import (
    BalanceView,
    OrderView,
    QueueDepth,
    QueueProbe,
    TokenIssuer,
    WithdrawalView,
)
from gophermart.application.queries import ListOrders, ListWithdrawals, ShowBalance
from gophermart.application.readiness import Readiness, ReadinessProbe
from gophermart.application.reconcile import LedgerAudit, ReconcileReport
from gophermart.application.users import Authenticated, LogIn, Register
from gophermart.bootstrap import (
    MEMORY_URI,
    Backend,
    Container,
    WorkerTask,
    settle,
)
from gophermart.domain.orders import AccrualVerdict, Order
from gophermart.domain.points import Points
from gophermart.domain.users import UserId
from gophermart.settings import DEFAULT_DATABASE_URI, ConfigError, Settings


class Gophermart:
    """The loyalty service as an object. Create it with :meth:`open`, :meth:`in_memory`
    or :meth:`on_engine`, then ``async with`` it (or ``await start()`` / ``aclose()``).

    Every verb raises the typed errors exported by :mod:`gophermart` (all subclasses
    of :class:`gophermart.GophermartError`); none of them leaves anything half-written.
    """

    def __init__(self, container: Container, *, migrate: bool = True) -> None:
        """Prefer the named constructors; this one takes a ready (overridden) container."""
        self.container = container
        self._migrate = migrate
        self._started = False
        self._register: Register
        self._log_in: LogIn
        self._upload: UploadOrder
        self._withdraw: Withdraw
        self._balance: ShowBalance
        self._orders: ListOrders
        self._withdrawals: ListWithdrawals
        self._record: RecordAccrual
        self._tokens: TokenIssuer

    # --- opening ---------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        url: str = DEFAULT_DATABASE_URI,
        *,
        secret: str | None = None,
        accrual_address: str | None = None,
        token_ttl: timedelta = timedelta(hours=24),
        accrual_concurrency: int = 16,
        migrate: bool = True,
    ) -> Self:
        """On a database URL: ``sqlite:///shop.db``, ``postgresql://…`` (libpq
        parameters welcome) or ``memory://``. The schema is migrated at :meth:`start`
        unless ``migrate=False``. Without ``secret`` the token key is generated once
        and kept in the database."""
        settings = Settings(
            database_uri=url,
            secret=secret,
            accrual_address=accrual_address,
            token_ttl=token_ttl,
            accrual_concurrency=accrual_concurrency,
        )
        return cls(Container(settings=settings), migrate=migrate)

    @classmethod
    def in_memory(cls, *, secret: str | None = None, accrual_address: str | None = None) -> Self:
        """Nothing kept beyond the process: a demo, or a host's tests (see
        :mod:`gophermart.testing` for faster doubles of the password hasher and tokens)."""
        return cls.open(MEMORY_URI, secret=secret, accrual_address=accrual_address)

    @classmethod
    def on_engine(
        cls,
        engine: Any,
        *,
        secret: str | None = None,
        accrual_address: str | None = None,
        token_ttl: timedelta = timedelta(hours=24),
        migrate: bool = True,
    ) -> Self:
        """On the host's own SQLAlchemy ``AsyncEngine`` (SQLite via aiosqlite, or
        PostgreSQL via asyncpg). The engine stays the host's: it is not disposed here.
        On PostgreSQL the hot paths open their own small asyncpg pool to the same
        database (docs/embedding.md says why)."""
        database = Database.from_engine(engine)
        url = "sqlite:///" + database.target.location
        if database.is_postgres:
            url = database.target.location
        loyalty = cls.open(
            url,
            secret=secret,
            accrual_address=accrual_address,
            token_ttl=token_ttl,
            migrate=migrate,
        )
        loyalty.container.database.override(providers.Object(database))
        return loyalty

    @classmethod
    def on_asyncpg_pool(
        cls,
        pool: Any,
        *,
        dsn: str | None = None,
        secret: str | None = None,
        accrual_address: str | None = None,
        token_ttl: timedelta = timedelta(hours=24),
        migrate: bool = True,
    ) -> Self:
        """On the host's own ``asyncpg.Pool`` (PostgreSQL): every request's statements
        run on the host's pool, which stays the host's (never closed here; its codecs
        must be asyncpg's defaults for bigint and timestamptz). The cold paths
        (migrations, the accrual gate, the login throttle, the stored key) and the
        worker's LISTEN connection open a few connections of their own to the same
        database, named by ``dsn``, or by the DSN the pool was created with."""
        if dsn is None:
            connect_args = getattr(pool, "_connect_args", ())
            dsn = connect_args[0] if connect_args and isinstance(connect_args[0], str) else None
        if not dsn:
            raise ConfigError(
                "DATABASE_URI: the pool was not created from a DSN; pass dsn= as well"
            )
        loyalty = cls.open(
            dsn,
            secret=secret,
            accrual_address=accrual_address,
            token_ttl=token_ttl,
            migrate=migrate,
        )
        if loyalty.backend != "postgresql":
            raise ConfigError(f"DATABASE_URI: an asyncpg pool needs a PostgreSQL DSN, got {dsn!r}")
        loyalty.container.pg_pool.override(
            providers.Object(PgPool(pool=pool, timeout=loyalty.settings.db_timeout))
        )
        return loyalty

    @classmethod
    def from_settings(cls, settings: Settings, *, migrate: bool = True) -> Self:
        """The service's own path: everything the operator configured."""
        return cls(Container(settings=settings), migrate=migrate)

    # --- life -------------------------------------------------------------------------

    @property
    def backend(self) -> Backend:
        return self.container.backend()

    @property
    def settings(self) -> Settings:
        settings: Settings = self.container.settings()
        return settings

    async def start(self) -> None:
        """Open the store (one clear error if it can't be), migrate it, settle the
        token key. Idempotent."""
        if self._started:
            return
        c = self.container
        try:
            settled = await settle(c, migrate=self._migrate)
        except BaseException:
            await self.aclose()
            raise
        c.settings.override(providers.Object(settled))
        self._register = c.register()
        self._log_in = c.log_in()
        self._upload = c.upload_order()
        self._withdraw = c.withdraw()
        self._balance = c.show_balance()
        self._orders = c.list_orders()
        self._withdrawals = c.list_withdrawals()
        self._record = c.record_accrual()
        self._tokens = c.tokens()
        self._started = True

    async def aclose(self) -> None:
        """Stop the worker (letting it finish the orders in hand), then release
        everything the container started, the host's borrowed engine excepted."""
        await self.stop_worker()
        shutdown = self.container.shutdown_resources()
        if shutdown is not None:
            await shutdown
        self._started = False

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- users ------------------------------------------------------------------------

    async def register(self, login: str, password: str) -> Authenticated:
        """A new user with an empty account; their token comes back too."""
        return await self._register(login, password)

    async def log_in(self, login: str, password: str, client: str = "") -> Authenticated:
        """``client`` (an address) feeds the per-client login throttle."""
        return await self._log_in(login, password, client)

    def authenticate(self, token: str) -> UserId:
        """The user a token speaks for; :class:`gophermart.Unauthenticated` otherwise."""
        return self._tokens.verify(token)

    def issue_token(self, user_id: UserId) -> str:
        """A token for a user the host authenticated by its own means."""
        return self._tokens.issue(user_id)

    # --- orders and points ------------------------------------------------------------

    async def upload_order(self, user_id: UserId, number: str) -> UploadOutcome:
        """Hand in an order number (digits, Luhn) for the accrual system to value."""
        return await self._upload(user_id, number)

    async def orders(
        self, user_id: UserId, limit: int | None = None, before: str | None = None
    ) -> Sequence[OrderView]:
        """The user's uploads, newest first: all of them, or a page of at most ``limit``
        that starts after the order numbered ``before`` (the last one of the page
        before). :class:`gophermart.InvalidInput` for a limit outside 1..10,000 or a
        ``before`` that is not digits."""
        return await self._orders(user_id, limit, before)

    async def balance(self, user_id: UserId) -> BalanceView:
        return await self._balance(user_id)

    async def withdraw(
        self, user_id: UserId, order: str, amount: Points | Decimal | int | str
    ) -> bool:
        """Spend ``amount`` points on ``order``. ``True`` if charged now, ``False`` for
        a replay of the identical earlier withdrawal (charged once, never twice)."""
        points = amount if isinstance(amount, Points) else Points.exact(amount)
        return await self._withdraw(user_id, order, points)

    async def withdrawals(self, user_id: UserId) -> Sequence[WithdrawalView]:
        """The user's withdrawals, newest first."""
        return await self._withdrawals(user_id)

    async def record_accrual(
        self,
        order: str,
        accrual: Points | Decimal | int | str | None = None,
        *,
        verdict: AccrualVerdict = AccrualVerdict.PROCESSED,
    ) -> Order:
        """Record what an order earned when the host computes rewards itself (or
        receives them by webhook) instead of running the accrual worker. PROCESSED
        credits ``accrual`` exactly once, however often it is recorded; INVALID ends
        the order with nothing; REGISTERED/PROCESSING mark it in progress."""
        points = None
        if accrual is not None:
            points = accrual if isinstance(accrual, Points) else Points.rounded(accrual)
        return await self._record(order, verdict, points)

    async def readiness(self) -> Readiness:
        """Whether the store answers (within the database timeout) and its schema is the
        one this release expects: what ``GET /readyz`` reports. Never raises."""
        probe: ReadinessProbe = self.container.readiness()
        return await probe()

    async def reconcile(self) -> ReconcileReport:
        """Check every balance against the ledger and every credit against its order."""
        audit: LedgerAudit = self.container.audit()
        return await audit.reconcile()

    async def queue_depth(self, overdue_after: float = 30.0) -> QueueDepth:
        """How many non-final orders are due for polling, due for longer than
        ``overdue_after`` seconds (nobody keeps up), being polled (leased by a worker),
        and scheduled for later."""
        probe: QueueProbe = self.container.queue_probe()
        clock = self.container.clock()
        return await probe.depth(clock.now(), overdue_after)

    # --- the accrual worker -----------------------------------------------------------

    async def start_worker(self) -> asyncio.Task[None]:
        """Start polling the accrual system (``accrual_address``) in the background of
        the running event loop. Returns the task; :meth:`stop_worker` ends it."""
        worker: WorkerTask = await self.container.worker()  # type: ignore[misc]
        return worker.task

    async def stop_worker(self) -> None:
        """Ask the worker to finish the orders in hand, and wait for it (if running)."""
        if self.container.worker.initialized:
            await self.container.worker.shutdown()  # type: ignore[misc]

    @contextlib.asynccontextmanager
    async def running_worker(self) -> AsyncIterator[asyncio.Task[None]]:
        """``async with loyalty.running_worker(): ...``: the worker runs inside."""
        task = await self.start_worker()
        try:
            yield task
        finally:
            await self.stop_worker()

    def __repr__(self) -> str:
        return f"Gophermart(backend={self.backend!r}, started={self._started})"
