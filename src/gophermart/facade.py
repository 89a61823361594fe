"""The library's face: :class:`Gophermart`, every use case of the service as a verb.

A shop service embeds the loyalty service with one object::

    async with Gophermart.open("sqlite:///shop.db") as loyalty:
        alice = await loyalty.register("alice", "correct horse")
        await loyalty.upload_order(alice.user_id, "9278923470")

It opens on a database URL (migrating it), in memory, or on the host's own SQLAlchemy
``AsyncEngine`` or asyncpg pool; the HTTP API (:func:`gophermart.http_app`,
:func:`gophermart.http_router`) and the command line are clients of this class like any
host. Deep modules are implementation; what this module and ``gophermart/__init__.py``
export is the contract.

The verbs are declared once, in :class:`Face`, each as the use-case method it is
(``balance = Verb(Queries.balance)``): :class:`Gophermart` awaits them,
:class:`~gophermart.blocking.BlockingGophermart` (the same face) calls them. A verb's
signature, documentation and types are the use case's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from datetime import timedelta
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Generic,
    ParamSpec,
    Self,
    TypedDict,
    TypeVar,
    Unpack,
    overload,
)

from dependency_injector import providers
from sqlalchemy.ext.asyncio import AsyncEngine

from gophermart.application.accounts import Accounts
from gophermart.application.errors import NotOpen
from gophermart.application.events import Events
from gophermart.application.ledger import Corrections, Holds
from gophermart.application.operations import Operations
from gophermart.application.operators import Operators
from gophermart.application.orders import Orders
from gophermart.application.queries import Queries
from gophermart.application.users import Users
from gophermart.application.webhooks import Webhooks
from gophermart.bootstrap import Container, WorkerTask, build, settle
from gophermart.settings import DEFAULT_DATABASE_URI, MEMORY_URI, Backend, Settings, refuse

if TYPE_CHECKING:
    import asyncpg  # annotations only: asyncpg is the postgres extra's

    from gophermart.blocking import BlockingGophermart

P = ParamSpec("P")
R = TypeVar("R")
U = TypeVar("U")


class Delegate:
    """A verb's delegation to a use-case method: which method, under which name."""

    def __init__(self, method: Callable[..., Any]) -> None:
        self.method = method
        self.__doc__ = method.__doc__
        self.name = method.__name__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @property
    def capability(self) -> type:
        """The use-case class whose method this verb is."""
        owner, _, _ = self.method.__qualname__.rpartition(".")
        found: type = getattr(sys.modules[self.method.__module__], owner)
        return found


class Verb(Delegate, Generic[U, P, R]):
    """A verb of the store: the use-case coroutine ``method``, awaited on
    :class:`Gophermart`, called (and waited for) on ``BlockingGophermart``."""

    def __init__(self, method: Callable[Concatenate[U, P], Coroutine[Any, Any, R]]) -> None:
        super().__init__(method)

    @overload
    def __get__(self, face: None, owner: type | None = None) -> Self: ...
    @overload
    def __get__(self, face: BlockingGophermart, owner: type | None = None) -> Callable[P, R]: ...
    @overload
    def __get__(
        self, face: Gophermart, owner: type | None = None
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...
    def __get__(self, face: Face | None, owner: type | None = None) -> Any:
        return self if face is None else face._bind(self)


class Call(Delegate, Generic[U, P, R]):
    """A verb that needs no store (checking a token): a plain call on both faces."""

    def __init__(self, method: Callable[Concatenate[U, P], R]) -> None:
        super().__init__(method)

    @overload
    def __get__(self, face: None, owner: type | None = None) -> Self: ...
    @overload
    def __get__(self, face: Face, owner: type | None = None) -> Callable[P, R]: ...
    def __get__(self, face: Face | None, owner: type | None = None) -> Any:
        return self if face is None else face._bind(self)


class Stream(Delegate, Generic[U, P, R]):
    """A verb that yields: the use case's async generator ``method``, iterated with
    ``async for`` on :class:`Gophermart`, with ``for`` on ``BlockingGophermart`` (each
    step waits on the library's loop)."""

    def __init__(self, method: Callable[Concatenate[U, P], AsyncIterator[R]]) -> None:
        super().__init__(method)

    @overload
    def __get__(self, face: None, owner: type | None = None) -> Self: ...
    @overload
    def __get__(
        self, face: BlockingGophermart, owner: type | None = None
    ) -> Callable[P, Iterator[R]]: ...
    @overload
    def __get__(
        self, face: Gophermart, owner: type | None = None
    ) -> Callable[P, AsyncIterator[R]]: ...
    def __get__(self, face: Face | None, owner: type | None = None) -> Any:
        return self if face is None else face._bind(self)


class Options(TypedDict, total=False):
    """What every constructor takes besides where the data lives."""

    #: The token signing key (at least 32 characters); without it one is generated once
    #: and kept in the database.
    secret: str
    #: The accrual system's base URL, for :meth:`Gophermart.start_worker`.
    accrual_address: str
    token_ttl: timedelta
    accrual_concurrency: int
    #: Seconds a verb may wait for the database before it raises ``StoreUnavailable``.
    db_timeout: float
    #: Bring the schema to this release's at start (default ``True``); with ``False`` a
    #: database behind this release is refused at start (:meth:`Face.migrate` migrates).
    migrate: bool
    #: PostgreSQL: the schema our tables live in, beside a shop's own (created if absent).
    db_schema: str
    #: How long the feed keeps events (the worker prunes older ones; default 7 days).
    events_retention: timedelta


class Face:
    """What :class:`Gophermart` and ``BlockingGophermart`` share, declared once: the
    constructors, and the verbs (see each use case for what a verb does)."""

    # --- the verbs --------------------------------------------------------------------
    register = Verb(Users.register)
    log_in = Verb(Users.log_in)
    authenticate = Call(Users.authenticate)
    issue_token = Call(Users.issue_token)
    upload_order = Verb(Orders.upload)
    record_accrual = Verb(Orders.record_accrual)
    withdraw = Verb(Accounts.withdraw)
    balance = Verb(Queries.balance)
    orders = Verb(Queries.orders)
    withdrawals = Verb(Queries.withdrawals)
    history = Verb(Queries.history)
    hold = Verb(Holds.hold)
    capture = Verb(Holds.capture)
    release = Verb(Holds.release)
    open_holds = Verb(Holds.open_holds)
    expire_holds = Verb(Holds.expire_holds)
    reverse = Verb(Corrections.reverse)
    refund = Verb(Corrections.refund)
    adjust = Verb(Corrections.adjust)
    readiness = Verb(Operations.readiness)
    reconcile = Verb(Operations.reconcile)
    queue_depth = Verb(Operations.queue_depth)
    ledger_gauges = Verb(Operations.ledger_gauges)
    migrate = Verb(Operations.migrate)
    schema = Verb(Operations.schema)
    add_operator = Verb(Operators.add)
    revoke_operator = Verb(Operators.revoke)
    authenticate_operator = Verb(Operators.authenticate)
    user_by_login = Verb(Queries.user_by_login)
    order_state = Verb(Queries.order_state)
    retry_order = Verb(Orders.retry)
    events = Stream(Events.stream)
    event_page = Verb(Events.page)
    last_event_id = Verb(Events.last_id)
    add_webhook = Verb(Webhooks.add_webhook)
    webhooks = Verb(Webhooks.webhooks)
    delete_webhook = Verb(Webhooks.delete_webhook)
    webhook_deliveries = Verb(Webhooks.webhook_deliveries)
    redeliver_event = Verb(Webhooks.redeliver_event)
    webhook_lag = Verb(Webhooks.webhook_lag)

    # --- opening ---------------------------------------------------------------------

    @classmethod
    def open(cls, url: str = DEFAULT_DATABASE_URI, **options: Unpack[Options]) -> Self:
        """On a database URL: ``sqlite:///shop.db``, ``postgresql://…`` (libpq
        parameters welcome) or ``memory://``. The schema is migrated at start unless
        ``migrate=False``."""
        return cls._on(Settings.for_database(url, **options))

    @classmethod
    def in_memory(cls, **options: Unpack[Options]) -> Self:
        """Nothing kept beyond the process: a demo, or a host's tests (see
        :mod:`gophermart.testing` for faster doubles of the password hasher and tokens)."""
        return cls.open(MEMORY_URI, **options)

    @classmethod
    def on_engine(cls, engine: AsyncEngine, **options: Unpack[Options]) -> Self:
        """On the host's own SQLAlchemy ``AsyncEngine`` (SQLite via aiosqlite, or
        PostgreSQL via asyncpg). The engine stays the host's: it is not disposed here.
        On PostgreSQL the hot paths open their own small asyncpg pool to the same
        database (docs/embedding.md says why)."""
        url = engine.url
        if url.get_backend_name() == "sqlite":
            uri = f"sqlite:///{url.database}"
        else:
            uri = url.set(drivername="postgresql").render_as_string(hide_password=False)
        settings = Settings.for_database(uri, **options)
        return cls._on(settings, build(settings, engine=engine))

    @classmethod
    def on_asyncpg_pool(
        cls, pool: asyncpg.Pool, *, dsn: str | None = None, **options: Unpack[Options]
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
            refuse("DATABASE_URI", "the pool was not created from a DSN; pass dsn= as well")
        settings = Settings.for_database(dsn, **options)
        return cls._on(settings, build(settings, pool=pool))

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """The service's own path: everything the operator configured."""
        return cls._on(settings)

    @classmethod
    def _on(cls, settings: Settings, container: Container | None = None) -> Self:
        raise NotImplementedError

    def _bind(self, verb: Delegate) -> Any:
        raise NotImplementedError


class Gophermart(Face):
    """The loyalty service as an object. Create it with :meth:`open`, :meth:`in_memory`,
    :meth:`on_engine` or :meth:`on_asyncpg_pool`, then ``async with`` it (or ``await
    start()`` / ``aclose()``). A closed instance stays closed: open a new one.

    Every verb raises the typed errors exported by :mod:`gophermart` (all subclasses
    of :class:`gophermart.GophermartError`); none of them leaves anything half-written.
    """

    def __init__(self, container: Container) -> None:
        """Prefer the named constructors; this one takes a ready (overridden) container."""
        self.container = container
        self._state = "new"
        self._bound: list[str] = []

    @classmethod
    def _on(cls, settings: Settings, container: Container | None = None) -> Self:
        return cls(container or build(settings))

    # --- life -------------------------------------------------------------------------

    @property
    def backend(self) -> Backend:
        return self.settings.backend

    @property
    def settings(self) -> Settings:
        settings: Settings = self.container.settings()
        return settings

    async def start(self) -> None:
        """Open the store (one clear error if it can't be), migrate it, settle the
        token key. Idempotent while open."""
        if self._state == "open":
            return
        if self._state == "closed":
            raise NotOpen("this Gophermart was closed; open a new one")
        try:
            settled = await settle(self.container, migrate=self.settings.migrate)
        except BaseException:
            await self.aclose()
            raise
        self.container.settings.override(providers.Object(settled))
        self._state = "open"

    async def aclose(self) -> None:
        """Stop the worker (letting it finish the orders in hand), then release
        everything the container started, the host's borrowed engine excepted."""
        self._state = "closed"
        for name in self._bound:  # the verbs bound while open answer NotOpen again
            self.__dict__.pop(name, None)
        self._bound.clear()
        await self.stop_worker()
        shutdown = self.container.shutdown_resources()
        if shutdown is not None:
            await shutdown

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *_exc_info: object) -> None:
        await self.aclose()

    def _bind(self, verb: Delegate) -> Any:
        """The verb as the started use case's bound method, kept on the instance until
        it closes (so a call costs what calling the use case costs)."""
        if self._state != "open":
            return _refusal(verb, self._state)
        bound = verb.method.__get__(self._use_case(verb.capability))
        self.__dict__[verb.name] = bound
        self._bound.append(verb.name)
        return bound

    def _use_case(self, capability: type) -> object:
        for provider in self.container.providers.values():
            if isinstance(provider, providers.Singleton) and provider.cls is capability:
                return provider()
        raise LookupError(f"the container provides no {capability.__name__}")

    # --- the accrual worker -----------------------------------------------------------

    async def start_worker(self) -> asyncio.Task[None]:
        """Start the worker in the background of the running event loop: it expires
        holds past their ``expires_at``, and polls the accrual system when
        ``accrual_address`` is set. Returns the task; :meth:`stop_worker` ends it."""
        if self._state != "open":
            raise NotOpen(_why_not_open(self._state))
        worker: WorkerTask = await self.container.worker()
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
        return f"Gophermart(backend={self.backend!r}, {self._state})"


def _why_not_open(state: str) -> str:
    if state == "closed":
        return "this Gophermart was closed; open a new one"
    return "start() the Gophermart (or use `async with`) first"


def _refusal(verb: Delegate, state: str) -> Callable[..., Any]:
    """What a verb is on an instance that is not open: a call that raises NotOpen (an
    awaitable one for an async verb, so ``await loyalty.balance(1)`` raises it)."""
    why = _why_not_open(state)
    if isinstance(verb, Stream):

        async def refuse_iterating(*_args: Any, **_kwargs: Any) -> AsyncIterator[Any]:
            raise NotOpen(why)
            yield  # an async generator, like the verb it stands for

        return refuse_iterating
    if isinstance(verb, Call):

        def refuse_now(*_args: Any, **_kwargs: Any) -> Any:
            raise NotOpen(why)

        return refuse_now

    async def refuse_later(*_args: Any, **_kwargs: Any) -> Any:
        raise NotOpen(why)

    return refuse_later
