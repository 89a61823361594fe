"""Telling a database outage from a bug, and keeping its cost to a client bounded.

SPEC.md, "Failure behaviour": with the database down or too slow, a request fails
within a bounded time with ``503`` and ``Retry-After``, the outage is logged once (not
one traceback per request), and the service recovers by itself when the database is
back. Three pieces do that here, so that neither the use cases nor the HTTP layer need
to know a driver's exceptions:

* :func:`is_unavailable` recognises an outage in whatever the drivers raise (asyncpg,
  SQLAlchemy, sqlite3, sockets, timeouts);
* :class:`DatabaseGuard` (one per process) runs each unit of work or read under a
  deadline, turns an outage into :class:`~gophermart.application.errors.StoreUnavailable`,
  logs it once per outage, and while the database is known to be down answers at once
  instead of letting every request wait out the deadline (one probe per
  :attr:`~DatabaseGuard.probe_interval` goes through to notice the return);
* :class:`GuardedUnitOfWork` and :func:`guarded` put a whole store behind the guard:
  any unit of work, and every coroutine method of any other port, with no method
  forwarded by hand.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import sqlite3
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, Self, TypeVar, cast

import asyncpg
import sqlalchemy.exc

from gophermart.application.errors import StoreUnavailable
from gophermart.application.ports import UnitOfWork, UnitOfWorkFactory

log = logging.getLogger("gophermart.database")

T = TypeVar("T")

#: SQLSTATE classes that mean "the server cannot serve now", not "the request is wrong":
#: 08 connection exception, 53 insufficient resources (disk full, too many connections),
#: 57 operator intervention (shutdown, starting up, statement cancelled or timed out),
#: 58 system error (I/O).
_OUTAGE_SQLSTATE_CLASSES = frozenset({"08", "53", "57", "58"})

#: sqlite3 primary result codes that are the file's state, not the statement's fault:
#: BUSY and LOCKED (another writer held the lock past the busy timeout), IOERR, FULL,
#: CANTOPEN.
_OUTAGE_SQLITE_CODES = frozenset({5, 6, 10, 13, 14})


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the database is unreachable or too slow.

    Follows ``__cause__`` and SQLAlchemy's ``orig``, since each layer wraps the one below,
    and ``__context__``: an error raised while cleaning up after an outage is part of it.
    A cancellation from outside is not an outage; a timeout is.
    """
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, StoreUnavailable | TimeoutError | OSError | sqlalchemy.exc.TimeoutError):
            return True  # OSError: refused, reset, unreachable, name not resolved
        if isinstance(e, sqlalchemy.exc.DBAPIError) and e.connection_invalidated:
            return True
        if isinstance(e, asyncpg.PostgresError):
            sqlstate = str(getattr(e, "sqlstate", "") or "")
            if sqlstate[:2] in _OUTAGE_SQLSTATE_CLASSES:
                return True
        if isinstance(e, asyncpg.InterfaceError) and "closed" in str(e):
            return True  # "connection is closed": lost under our feet
        if isinstance(e, sqlite3.OperationalError):
            code = getattr(e, "sqlite_errorcode", None)
            if code is not None and code & 0xFF in _OUTAGE_SQLITE_CODES:
                return True
        todo.append(e.__cause__)
        todo.append(getattr(e, "orig", None))
        if not e.__suppress_context__:
            todo.append(e.__context__)  # raised while cleaning up after an outage
    return False


def describe(exc: BaseException) -> str:
    """One line naming the root cause, for the log: ``ConnectionRefusedError: ...``."""
    root = exc
    while True:
        below = root.__cause__ or getattr(root, "orig", None)
        if not isinstance(below, BaseException) or below is root:
            break
        root = below
    text = str(root).strip().splitlines()[0] if str(root).strip() else ""
    return f"{type(root).__name__}: {text}" if text else type(root).__name__


class DatabaseGuard:
    """The database's availability as one process sees it; shared by all its adapters.

    ``timeout`` bounds each guarded operation from start to end (waiting for a pooled
    connection, connecting, every statement, the commit); ``None`` means no deadline
    (SQLite, whose waits are bounded by its busy and pool timeouts instead).
    """

    #: While the database is known to be down, one operation per interval is let through
    #: as a probe; the others fail at once. Also the ``Retry-After`` of the 503s.
    probe_interval: float = 1.0
    #: While an outage lasts, it is logged again once per this many seconds.
    report_every: float = 30.0

    def __init__(self, timeout: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self._clock = clock
        self._down_since: float | None = None
        self._reason = ""
        self._refused = 0
        self._probing = False
        self._next_probe = 0.0
        self._reported_at = 0.0
        # The operations under a deadline, oldest first (one timeout for all, so that is
        # also soonest deadline first), and the one timer armed for the oldest.
        self._inflight: dict[_Watch, None] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def is_down(self) -> bool:
        return self._down_since is not None

    @property
    def retry_after(self) -> int:
        return max(1, math.ceil(self.probe_interval))

    def watch(self) -> _Watch:
        """``async with guard.watch():`` runs the block under the deadline; an outage
        inside it (or a deadline missed) leaves it as StoreUnavailable."""
        return _Watch(self)

    def _unavailable(self) -> StoreUnavailable:
        return StoreUnavailable(self._reason, self.retry_after)

    # --- deadlines: one timer per process, not one per operation --------------------
    # asyncio.timeout() arms and cancels a loop timer per operation, about 6 us under
    # uvloop: several per cent of a balance read. Here an operation costs a dict entry,
    # and the single timer is re-armed once per deadline that actually passes.

    def _track(self, op: _Watch, task: asyncio.Task[object], timeout: float) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new loop (tests): nothing of the old one is valid
            self._loop, self._inflight, self._timer = loop, {}, None
        op.deadline = loop.time() + timeout
        self._inflight[op] = None
        if self._timer is None:
            self._timer = loop.call_at(op.deadline, self._expire)

    def _expire(self) -> None:
        self._timer = None
        assert self._loop is not None
        now = self._loop.time()
        while self._inflight:
            op = next(iter(self._inflight))
            if op.deadline > now:
                self._timer = self._loop.call_at(op.deadline, self._expire)
                return
            del self._inflight[op]
            op.expired = True
            assert op.task is not None
            op.task.cancel()

    def _failed(self, exc: BaseException) -> None:
        now = self._clock()
        self._refused += 1
        self._next_probe = now + self.probe_interval
        if isinstance(exc, TimeoutError) and not str(exc) and self.timeout is not None:
            cause = f"no answer within {self.timeout:g}s"
        else:
            cause = describe(exc)
        self._reason = f"database unavailable ({cause})"
        if self._down_since is None:
            self._down_since = self._reported_at = now
            log.error(
                "%s: answering 503 until it answers again (logged once per outage)",
                self._reason,
            )
        elif now - self._reported_at >= self.report_every:
            self._reported_at = now
            log.error(
                "%s: still, after %.0fs (%d operations refused)",
                self._reason,
                now - self._down_since,
                self._refused,
            )

    def _answered(self) -> None:
        if self._down_since is None:
            return
        log.warning(
            "database answers again after %.1fs (%d operations refused meanwhile)",
            self._clock() - self._down_since,
            self._refused,
        )
        self._down_since = None
        self._refused = 0


class _Watch:
    """One guarded operation (see :meth:`DatabaseGuard.watch`)."""

    __slots__ = ("cancelling", "deadline", "expired", "guard", "probe", "task")

    def __init__(self, guard: DatabaseGuard) -> None:
        self.guard = guard
        self.probe = False
        self.expired = False
        self.task: asyncio.Task[object] | None = None
        self.cancelling = 0
        self.deadline = 0.0

    async def __aenter__(self) -> None:
        g = self.guard
        if g._down_since is not None:
            if g._probing or g._clock() < g._next_probe:
                g._refused += 1
                raise g._unavailable()  # known down: answer now, not after the deadline
            g._probing = self.probe = True
        if g.timeout is not None:
            task = asyncio.current_task()
            if task is not None:
                self.task, self.cancelling = task, task.cancelling()
                g._track(self, task, g.timeout)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        g = self.guard
        if self.probe:
            g._probing = False
        if self.task is not None:
            g._inflight.pop(self, None)
            if self.expired and self.task.uncancel() <= self.cancelling:
                # Our cancellation, and nobody else's: the deadline passed.
                g._failed(TimeoutError())
                raise g._unavailable() from None
        if exc is None:
            g._answered()
        elif isinstance(exc, StoreUnavailable) or not isinstance(exc, Exception):
            return  # counted further in; or a cancellation from outside, not an outage
        elif not is_unavailable(exc):
            g._answered()  # the database answered; the error is the request's
        else:
            g._failed(exc)
            raise g._unavailable() from exc


class GuardedUnitOfWork:
    """Any unit of work, its whole life (connect, statements, commit) under the guard;
    its repositories are the inner unit of work's, whatever they are."""

    def __init__(self, inner: UnitOfWork, guard: DatabaseGuard) -> None:
        self._inner = inner
        self._guard = guard
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> Self:
        await self._stack.__aenter__()
        try:
            await self._stack.enter_async_context(self._guard.watch())
            await self._stack.enter_async_context(self._inner)
        except BaseException as exc:
            # The guard's exit runs (and translates) the error; if it does not replace
            # it, the original goes on.
            await self._stack.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        # The inner unit of work rolls back (or abandons its connection) first, then the
        # guard ends the deadline and translates what came out.
        await self._stack.__aexit__(*exc_info)

    async def commit(self) -> None:
        await self._inner.commit()

    def __getattr__(self, name: str) -> Any:
        """The repositories (``users``, ``orders``, ``accounts`` ...): the inner one's."""
        return getattr(self._inner, name)


def guarded_units_of_work(factory: UnitOfWorkFactory, guard: DatabaseGuard) -> UnitOfWorkFactory:
    def make() -> UnitOfWork:
        return cast(UnitOfWork, GuardedUnitOfWork(factory(), guard))

    return make


def guarded(port: T, guard: DatabaseGuard) -> T:
    """``port`` (a read model, the gate, the throttle's counters, an audit ...) with
    each of its public coroutine methods run under ``guard``; anything else is the
    port's own. One wrapper for every port: a method added to a port is guarded
    without a line here."""
    return cast(T, _Guarded(port, guard))


class _Guarded:
    def __init__(self, inner: object, guard: DatabaseGuard) -> None:
        self._inner = inner
        for name in dir(type(inner)):
            if name.startswith("_"):
                continue
            method = getattr(inner, name)
            if inspect.iscoroutinefunction(method):
                # Bound once, here: a call costs the wrapper, not an attribute lookup.
                setattr(self, name, _watched(method, guard))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _watched(
    method: Callable[..., Awaitable[Any]], guard: DatabaseGuard
) -> Callable[..., Awaitable[Any]]:
    async def call(*args: Any, **kwargs: Any) -> Any:
        async with guard.watch():
            return await method(*args, **kwargs)

    call.__name__ = method.__name__
    call.__doc__ = method.__doc__
    return call
