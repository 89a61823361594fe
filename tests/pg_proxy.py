"""A TCP proxy in front of the shared PostgreSQL that a test can break on purpose.

The shared server must never be stopped or frozen (other test runs use it), so a test
that needs a database outage points the service at this proxy instead and breaks the
proxy:

* :meth:`PgProxy.stop` closes every connection and refuses new ones, like PostgreSQL
  being shut down (clients see their connections drop, then "connection refused");
* :meth:`PgProxy.freeze` keeps every connection open and accepts new ones, but forwards
  nothing in either direction, like a PostgreSQL under ``SIGSTOP`` or behind a dead
  network path (clients wait for answers that do not come);
* :meth:`PgProxy.resume` ends either: a frozen proxy delivers what it held back, a
  stopped one listens again on the same port.

The proxy runs an asyncio loop on its own thread, so it works from synchronous tests
and from async ones alike. Use it as a context manager, or call :meth:`close`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

from tests.ports import free_port


class PgProxy:
    def __init__(self, upstream_host: str = "127.0.0.1", upstream_port: int = 5432) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.state = "running"
        self.accepted = 0  # connections accepted since start, for tests' curiosity
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pg-proxy")
        self._thread.daemon = True
        self._thread.start()
        self._flowing: asyncio.Event = self._call(self._make_event())
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._call(self._listen())

    # --- the controls -------------------------------------------------------------

    def stop(self) -> None:
        """Drop every connection and refuse new ones (PostgreSQL shut down)."""
        self._call(self._stop())
        self.state = "stopped"

    def freeze(self) -> None:
        """Keep connections, accept new ones, forward nothing (PostgreSQL SIGSTOPped)."""
        self._call(self._set_flowing(False))
        self.state = "frozen"

    def resume(self) -> None:
        """Back to normal: deliver what a freeze held back, or listen again after a stop."""
        self._call(self._resume())
        self.state = "running"

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def uri_for(self, database_uri: str) -> str:
        """``database_uri`` (a libpq URI to the real server) redirected through the proxy."""
        parts = urlsplit(database_uri)
        user = parts.netloc.rpartition("@")[0]
        netloc = f"{user}@{self.host}:{self.port}" if user else f"{self.host}:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- the loop's side ----------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _make_event(self) -> asyncio.Event:
        event = asyncio.Event()
        event.set()
        return event

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, self.host, self.port, reuse_address=True
        )

    async def _set_flowing(self, flowing: bool) -> None:
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        self._flowing.set()  # nothing may stay parked behind a freeze

    async def _resume(self) -> None:
        self._flowing.set()
        if self._server is None:
            await self._listen()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            server_r, server_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.transport.abort()
            return
        pair = (client_w, server_w)
        self._writers.update(pair)
        try:
            await asyncio.gather(self._pump(client_r, server_w), self._pump(server_r, client_w))
        finally:
            for writer in pair:
                self._writers.discard(writer)
                writer.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                data = await reader.read(65536)
                await self._flowing.wait()
                if not data or writer.transport.is_closing():
                    break
                writer.write(data)
                await writer.drain()
        # One side ended: end the other (a half-open PostgreSQL session is no use).
        writer.transport.abort()
