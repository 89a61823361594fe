"""The blocking twin of :class:`~gophermart.facade.Gophermart`, for hosts that are not
async (a Django or Flask shop): the same constructors and verbs, each one a plain call.

It *is* the same face (:class:`~gophermart.facade.Face`): every verb declared there is
a method here too, by construction, with the same signature and documentation; a
verb's call hands the async verb's coroutine to an event loop on one background thread
that this object owns, and waits for the answer. Pools and the accrual worker live on
that loop, so any number of the host's threads may call in at once (they queue on the
loop, as requests of an async server would).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Coroutine, Iterator
from typing import Any, Self, TypeVar

from gophermart.application.errors import NotOpen, StoreUnavailable
from gophermart.bootstrap import Container
from gophermart.facade import Call, Delegate, Face, Gophermart, Stream
from gophermart.settings import Settings

T = TypeVar("T")


class BlockingGophermart(Face):
    """``with BlockingGophermart.open("sqlite:///shop.db") as loyalty: ...``

    Each call waits at most :attr:`timeout` seconds (then it is cancelled and raises
    :class:`~gophermart.StoreUnavailable`). An instance belongs to the process that
    started it: after a ``fork()`` (gunicorn ``--preload``, multiprocessing) its loop
    thread is not in the child, so a call there raises :class:`~gophermart.NotOpen`
    at once; open the twin in each worker process instead (docs/embedding.md).
    """

    #: Seconds one blocking call may take before it is cancelled (a verb's own database
    #: waits are bounded by ``db_timeout`` well within it; this bounds everything else).
    timeout: float = 60.0

    def __init__(self, loyalty: Gophermart) -> None:
        self.loyalty = loyalty
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    @classmethod
    def _on(cls, settings: Settings, container: Container | None = None) -> Self:
        return cls(Gophermart._on(settings, container))

    # --- life -------------------------------------------------------------------------

    def start(self) -> None:
        if self._loop is not None:
            return
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="gophermart-loop", daemon=True)
        thread.start()
        self._loop, self._thread, self._pid = loop, thread, os.getpid()
        try:
            self._run(self.loyalty.start())
        except BaseException:
            self._stop_loop()
            raise

    def close(self) -> None:
        if self._loop is None or self._pid != os.getpid():
            return  # never started, or started by the parent of this forked process
        try:
            self._run(self.loyalty.aclose())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self.close()

    def _run(self, coro: Coroutine[Any, Any, T] | Awaitable[T], *, bounded: bool = True) -> T:
        problem = None
        if self._pid != os.getpid():
            problem = (
                "this BlockingGophermart was started in another process (before a fork): "
                "open one in this process"
            )
        elif self._loop is None:
            problem = "start() the BlockingGophermart (or use `with`) first"
        elif threading.current_thread() is self._thread:
            problem = "a blocking verb was called from the library's own loop"
        if problem is not None or self._loop is None:
            if isinstance(coro, Coroutine):
                coro.close()  # never to run: say so, rather than warn of it never awaited
            raise NotOpen(problem)

        async def wrapped() -> T:
            return await coro

        future = asyncio.run_coroutine_threadsafe(wrapped(), self._loop)
        done, _ = concurrent.futures.wait([future], self.timeout if bounded else None)
        if not done:  # (not future.result(timeout): a verb's own TimeoutError looks alike)
            future.cancel()
            raise StoreUnavailable(f"no answer within {self.timeout:g}s")
        return future.result()

    def _bind(self, verb: Delegate) -> Any:
        """The async verb of the same name, called on the library's loop."""
        name = verb.name
        if isinstance(verb, Stream):

            def call(*args: Any, **kwargs: Any) -> Any:
                return BlockingIterator(self, getattr(self.loyalty, name)(*args, **kwargs))

        elif isinstance(verb, Call):

            def call(*args: Any, **kwargs: Any) -> Any:
                return getattr(self.loyalty, name)(*args, **kwargs)

        else:

            def call(*args: Any, **kwargs: Any) -> Any:
                return self._run(getattr(self.loyalty, name)(*args, **kwargs))

        call.__name__ = name
        call.__doc__ = verb.__doc__
        return call

    # --- the accrual worker -----------------------------------------------------------

    def start_worker(self) -> None:
        """The accrual worker runs on the library's background loop until
        :meth:`stop_worker` or :meth:`close`."""
        self._run(self.loyalty.start_worker())

    def stop_worker(self) -> None:
        self._run(self.loyalty.stop_worker())


class BlockingIterator(Iterator[T]):
    """An async verb's iteration (``events``) as a plain iterator: each ``next()``
    runs one step on the library's loop and waits for it, for as long as the verb's own
    bound allows (``events(idle=...)``: the iteration ends once nothing came for that
    long; ``idle=None`` waits for ever), not :attr:`BlockingGophermart.timeout`.
    :meth:`close` (or leaving a ``with`` block) ends it."""

    def __init__(self, twin: BlockingGophermart, steps: AsyncIterator[T]) -> None:
        self._twin = twin
        self._steps = steps

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> T:
        try:
            return self._twin._run(anext(self._steps), bounded=False)
        except StopAsyncIteration:
            raise StopIteration from None

    def close(self) -> None:
        aclose = getattr(self._steps, "aclose", None)
        if aclose is not None:
            self._twin._run(aclose())

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self.close()
