"""Keeping a database's trouble bounded: a deadline per operation, 503 instead of a
driver's error, an outage answered at once while it lasts, and logged once.

SPEC.md, "Failure behaviour": with the database down or too slow, a request fails
within a bounded time with ``503`` and ``Retry-After``; the outage is logged once (not
one traceback per request); the service recovers by itself. And one slow thing stays
one slow thing: a statement waiting for a row lock, one huge listing, a full disk fail
the request concerned, never the others. So:

* :class:`DatabaseGuard` (one per store) runs each unit of work or read under a
  deadline and sorts what goes wrong (outages.py): a failed *connection* means the
  database is down: every request is answered at once until one probe a second gets
  through; a *slow* operation (a deadline, a lock, a busy file) fails alone, and a
  probe (a fresh connection, ``SELECT 1``) decides whether the database is down; a
  refused operation (disk full) fails alone;
* :class:`GuardedUnitOfWork` and :func:`guarded` put a whole store behind the guard:
  any unit of work, and every coroutine method of any other port, with no method
  forwarded by hand.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any, Self, TypeVar, cast

from sqlalchemy.ext.asyncio import AsyncConnection

from gophermart.adapters.stores.outages import Outage, describe, is_unavailable, outage_of
from gophermart.application.errors import StoreUnavailable
from gophermart.application.ports import HostConnection, UnitOfWork
from gophermart.domain.errors import InvalidInput

__all__ = [
    "DatabaseGuard",
    "GuardedUnitOfWork",
    "describe",
    "guarded",
    "guarded_unit_of_work",
    "is_unavailable",
]

log = logging.getLogger("gophermart.database")

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

#: Checks the database answers at all (a fresh connection and ``SELECT 1``); raises if not.
Probe = Callable[[], Awaitable[None]]


class DatabaseGuard:
    """The database's availability as one process sees it; shared by all its adapters.

    ``timeout`` bounds each guarded operation from start to end (waiting for a pooled
    connection, connecting, every statement, the commit); ``None`` means no deadline
    (SQLite, whose waits are bounded by its busy and pool timeouts instead). ``probe``
    checks the database answers at all, after an operation ran out of time.
    """

    #: While the database is known to be down, one operation per interval is let through
    #: as a probe; the others fail at once. Also the ``Retry-After`` of the 503s.
    probe_interval: float = 1.0
    #: While an outage lasts (or slow operations go on), it is logged again once per
    #: this many seconds.
    report_every: float = 30.0

    def __init__(
        self,
        timeout: float | None,
        probe: Probe | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout = timeout
        self._probe = probe
        self._clock = clock
        self._down_since: float | None = None
        self._reason = ""
        self._refused = 0
        self._probing = False
        self._next_probe = 0.0
        self._reported_at = 0.0
        #: While a probe runs after a slow operation: its verdict, which new operations
        #: wait for rather than send work to a database that may be frozen.
        self._verdict: asyncio.Future[None] | None = None
        self._checking: asyncio.Task[None] | None = None
        self._noted_at: dict[Outage, float] = {}
        self._deadlines = _Deadlines()

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

    async def long(self, work: Awaitable[T]) -> T:
        """``work`` that may rightly run long (an audit of the whole ledger): no deadline,
        but while it runs the database is probed every ``timeout`` seconds; a probe that
        fails (a hung or vanished server) cancels it with StoreUnavailable, where a
        frozen server would otherwise keep it waiting for ever."""
        task = asyncio.ensure_future(work)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self.timeout or 5.0)
                if done:
                    break
                if self._probe is not None:
                    try:
                        async with asyncio.timeout(self.timeout or 5.0):
                            await self._probe()
                    except Exception as exc:
                        self._failed(exc)
                        raise self._unavailable() from None
            try:
                return task.result()
            except Exception as exc:
                unavailable = self._went_wrong(exc)
                if unavailable is not None:
                    raise unavailable from exc
                raise
        finally:
            task.cancel()

    def _unavailable(self) -> StoreUnavailable:
        return StoreUnavailable(self._reason, self.retry_after)

    def _cause(self, exc: BaseException) -> str:
        if isinstance(exc, TimeoutError) and not str(exc) and self.timeout is not None:
            return f"no answer within {self.timeout:g}s"
        return describe(exc)

    def _went_wrong(self, exc: BaseException) -> StoreUnavailable | None:
        """What an operation's error means; the 503 to raise instead, if it is one."""
        kind = outage_of(exc)
        if kind is None:
            self._answered()  # the database answered; the error is the request's
            return None
        if kind is Outage.DOWN:
            self._failed(exc)
            return self._unavailable()
        if kind is Outage.SLOW:
            self._check_soon(exc)
            return StoreUnavailable(f"database too slow ({self._cause(exc)})", self.retry_after)
        self._note(kind, exc)
        return StoreUnavailable(f"database refused ({self._cause(exc)})", self.retry_after)

    def _check_soon(self, cause: BaseException) -> None:
        """One operation ran out of time: a probe says whether the database is down (a
        probe at a time; while it is known down, the operations themselves probe).
        Operations that start meanwhile wait for its verdict (:meth:`_Watch.__aenter__`):
        milliseconds when the database answers, and nothing sent to a frozen one."""
        if self._probe is None or self._verdict is not None or self.is_down:
            self._note(Outage.SLOW, cause)
            return
        loop = asyncio.get_running_loop()
        self._verdict = loop.create_future()
        self._checking = loop.create_task(self._check(cause, self._verdict))

    async def _check(self, cause: BaseException, verdict: asyncio.Future[None]) -> None:
        assert self._probe is not None
        try:
            async with asyncio.timeout(self.timeout or 5.0):
                await self._probe()
        except Exception as exc:
            self._failed(cause if isinstance(exc, TimeoutError) else exc)
        else:
            self._note(Outage.SLOW, cause)
        finally:
            self._verdict = None
            verdict.set_result(None)

    def _note(self, kind: Outage, cause: BaseException) -> None:
        """Log a slow or refused operation, at most once per ``report_every``."""
        now = self._clock()
        if now - self._noted_at.get(kind, -math.inf) < self.report_every:
            return
        self._noted_at[kind] = now
        what = "ran out of time" if kind is Outage.SLOW else "was refused"
        log.warning(
            "a database operation %s (%s); only the requests concerned fail, the "
            "database answers others (logged once per %.0fs)",
            what,
            self._cause(cause),
            self.report_every,
        )

    def _failed(self, exc: BaseException) -> None:
        now = self._clock()
        self._refused += 1
        self._next_probe = now + self.probe_interval
        self._reason = f"database unavailable ({self._cause(exc)})"
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


class _Deadlines:
    """The operations under a deadline, with one loop timer per process, not one per
    operation: asyncio.timeout() arms and cancels a timer per operation, about 6 us
    under uvloop, several per cent of a balance read. Here an operation costs a dict
    entry, and the timer is re-armed once per deadline that actually passes. One
    timeout for all, so the oldest operation is also the soonest to expire."""

    def __init__(self) -> None:
        self._inflight: dict[_Watch, None] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def track(self, op: _Watch, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new loop (tests): nothing of the old one is valid
            self._loop, self._inflight, self._timer = loop, {}, None
        op.deadline = loop.time() + timeout
        self._inflight[op] = None
        if self._timer is None:
            self._timer = loop.call_at(op.deadline, self._expire)

    def done(self, op: _Watch) -> None:
        self._inflight.pop(op, None)

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
        verdict = g._verdict
        if verdict is not None and verdict.get_loop() is asyncio.get_running_loop():
            await asyncio.shield(verdict)  # a probe is out: wait for what it says
        if g._down_since is not None:
            if g._probing or g._clock() < g._next_probe:
                g._refused += 1
                raise g._unavailable()  # known down: answer now, not after the deadline
            g._probing = self.probe = True
        if g.timeout is not None:
            task = asyncio.current_task()
            if task is not None:
                self.task, self.cancelling = task, task.cancelling()
                g._deadlines.track(self, g.timeout)

    async def __aexit__(self, _type: object, exc: BaseException | None, *_: object) -> None:
        g = self.guard
        if self.probe:
            g._probing = False
        if self.task is not None:
            g._deadlines.done(self)
            if self.expired and self.task.uncancel() <= self.cancelling:
                # Our cancellation, and nobody else's: the deadline passed.
                unavailable = g._went_wrong(TimeoutError())
                assert unavailable is not None
                raise unavailable from None
        if exc is None:
            g._answered()
        elif isinstance(exc, StoreUnavailable) or not isinstance(exc, Exception):
            return  # counted further in; or a cancellation from outside, not an outage
        else:
            unavailable = g._went_wrong(exc)
            if unavailable is not None:
                raise unavailable from exc


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


def guarded_unit_of_work(
    own: Callable[[], UnitOfWork],
    hosted: Callable[[HostConnection], UnitOfWork],
    guard: DatabaseGuard,
    within: HostConnection | None = None,
) -> UnitOfWork:
    """A store's unit of work (the ``UnitOfWorkFactory`` port, as a store container's
    ``uow`` factory): its own transaction, or ``within`` a host's; guarded either way."""
    if within is not None and not isinstance(within, AsyncConnection):
        raise InvalidInput(
            f"connection= takes the host's SQLAlchemy AsyncConnection, not {type(within).__name__}"
        )
    inner = own() if within is None else hosted(within)
    return cast(UnitOfWork, GuardedUnitOfWork(inner, guard))


def unguarded(method: F) -> F:
    """Mark a port's coroutine method that :func:`guarded` leaves as it is: one that
    waits on purpose (a feed's wait for news) and never raises for an outage."""
    method.__unguarded__ = True  # type: ignore[attr-defined]
    return method


def guarded(port: T, guard: DatabaseGuard, *, long: bool = False) -> T:
    """``port`` (a read model, the gate, the throttle's counters, an audit ...) with
    each of its public coroutine methods run under ``guard``; anything else is the
    port's own. One wrapper for every port: a method added to a port is guarded
    without a line here. ``long``: the methods may rightly run long (an audit): no
    deadline, but the database is probed meanwhile (:meth:`DatabaseGuard.long`)."""
    return cast(T, _Guarded(port, guard, long))


class _Guarded:
    def __init__(self, inner: object, guard: DatabaseGuard, long: bool) -> None:
        self._inner = inner
        wrap = _long if long else _watched
        for name in dir(type(inner)):
            if name.startswith("_"):
                continue
            method = getattr(inner, name)
            if inspect.iscoroutinefunction(method) and not getattr(method, "__unguarded__", 0):
                # Bound once, here: a call costs the wrapper, not an attribute lookup.
                setattr(self, name, wrap(method, guard))

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


def _long(
    method: Callable[..., Awaitable[Any]], guard: DatabaseGuard
) -> Callable[..., Awaitable[Any]]:
    async def call(*args: Any, **kwargs: Any) -> Any:
        return await guard.long(method(*args, **kwargs))

    call.__name__ = method.__name__
    call.__doc__ = method.__doc__
    return call
