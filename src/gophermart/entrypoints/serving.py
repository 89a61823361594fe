"""Running uvicorn: SIGINT/SIGTERM end in a graceful stop and exit status 0, and a
response leaves in one write."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def _ignore(_signum: int, _frame: FrameType | None) -> None:
    """Swallow the stop signal uvicorn re-raises after it has already shut down cleanly."""


@contextmanager
def clean_exit_on_stop_signals() -> Iterator[None]:
    """uvicorn (>= 0.29) restores the previous handlers and re-raises the stop signal after
    a graceful shutdown, which would end the process with -SIGTERM or KeyboardInterrupt.
    Making the previous handler a no-op turns a clean stop into exit status 0."""
    stops = (
        (signal.SIGINT, signal.SIGTERM)
        if threading.current_thread() is threading.main_thread()
        else ()
    )
    previous = {sig: signal.signal(sig, _ignore) for sig in stops}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _OneWritePerTurn:
    """An asyncio transport whose writes of one event-loop turn leave as one.

    uvicorn writes a response's head and its body as two ``transport.write`` calls in a
    row, and uvloop sends each at once: two system calls, two trips through the kernel's
    TCP stack and two wake-ups of the client per response, a quarter of a server
    process's CPU on the hot reads (docs/performance.md, "Round two"). Here the writes
    are gathered until the loop's next turn and then written together; ``close`` (and
    ``write_eof``) send what is gathered first, so nothing is lost or reordered.
    """

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._pending is None:
            self._pending = [bytes(data)]
            self._loop.call_soon(self._flush)
        else:
            self._pending.append(bytes(data))

    def writelines(self, chunks: Iterable[bytes | bytearray | memoryview]) -> None:
        for chunk in chunks:
            self.write(chunk)

    def _flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._pending = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a :class:`_OneWritePerTurn` transport
    (``uvicorn.run(..., http="gophermart.entrypoints.serving:OneWriteHttpToolsProtocol")``)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        batching = _OneWritePerTurn(transport, self.loop)
        super().connection_made(cast(asyncio.Transport, batching))
