"""Bounded work per client (SPEC.md, "Failure behaviour"): what uvicorn does not bound.

uvicorn (0.55, httptools) times a connection only between two requests (its keep-alive
timer starts when an answer ends): a connection that never sends a byte, or sends a
request's headers one byte at a time, stays open for ever. It has no cap on the size of
a request's headers (httptools buffers them whole: 8 unfinished 32 MB headers cost
~300 MB), and ``limit_concurrency`` answers ``503`` to *requests* past the limit but
never closes an idle socket, so 250 idle sockets under ``ulimit -n 256`` left no file
descriptor to accept anyone with.

:class:`BoundedHttpToolsProtocol` adds, per connection:

- a **header timeout**: the first request's line and headers must have come within it
  of the connection's start (nginx's ``client_header_timeout``), a later request's within
  it of its first byte: ``408`` and close (a close alone if not a byte came);
- an **idle timeout** for a request body that stops coming (the connection is closed);
  between two requests it is uvicorn's keep-alive timer, set to the same value;
- a **header size cap**: ``431`` and close, as soon as the bytes received for one request
  head pass it (at most one read, 256 KiB, past it is ever held);
- a **connection cap** per process: at the cap the longest-idle connections (no request
  in progress, or a head still arriving) are closed to make room, as nginx reuses its
  keep-alive connections; when every connection is busy with a request, the newcomer gets
  a fast ``503`` with ``Retry-After`` and is closed.

A refusal is written, then the connection is half-closed and what the client still sends
is read and dropped for up to :data:`LINGER` seconds: closed at once with unread input,
the kernel would send a reset that can destroy the refusal before the client reads it.

The deadlines are checked by one sweep per server every second or so, not by a timer per
connection: a request then costs three attribute updates and no timer.
"""

from __future__ import annotations

import asyncio
import functools
import resource
import weakref
from dataclasses import dataclass
from typing import Any, Final

from uvicorn.config import Config
from uvicorn.server import ServerState

from gophermart.entrypoints.serving import OneWriteHttpToolsProtocol
from gophermart.settings import Settings

#: Seconds a refused connection keeps reading (and dropping) what the client still sends.
LINGER: Final = 2.0
#: Refused connections lingering at once, beyond the cap; past it a refusal is a plain close.
MAX_LINGERING: Final = 64
#: File descriptors kept for everything but clients: the database pools, the accrual
#: client's connections, the log and metric files, the event loop's own (a PostgreSQL
#: server process used ~40 under load; docs/failure-behaviour.md, "Hostile clients").
RESERVED_FDS: Final = 128

# ``_head`` of a connection: >= 0 while a request head is awaited or arriving (the bytes
# received for it so far), or one of these.
_BODY: Final = -1  # the head is complete: its body is arriving, or the request is whole
_LINGER: Final = -2  # refused: dropping input until the client closes or LINGER ends


def _answer(status: bytes, message: bytes, extra: bytes = b"") -> bytes:
    body = b'{"error":"' + message + b'"}'
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\nconnection: close\r\n" % len(body) + extra + b"\r\n" + body
    )


_TIMEOUT: Final = _answer(b"408 Request Timeout", b"request headers not received in time")
_TOO_LARGE: Final = _answer(b"431 Request Header Fields Too Large", b"request headers too large")
_BUSY: Final = _answer(b"503 Service Unavailable", b"too many connections", b"retry-after: 1\r\n")


def connections_for_open_files() -> int:
    """The default connection cap: the soft open-file limit less :data:`RESERVED_FDS`
    (half the limit when it is smaller than twice that)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return soft - RESERVED_FDS if soft >= 2 * RESERVED_FDS else max(1, soft // 2)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The limits of one server (plain values: the CLI reads them from the settings)."""

    header_timeout: float = 10.0
    idle_timeout: float = 75.0
    max_header_bytes: int = 32 * 1024
    max_connections: int = 1024

    @classmethod
    def of(cls, settings: Settings) -> ConnectionLimits:
        return cls(
            header_timeout=settings.header_timeout,
            idle_timeout=settings.idle_timeout,
            max_header_bytes=settings.max_header_bytes,
            max_connections=settings.max_connections or connections_for_open_files(),
        )

    def uvicorn_options(self) -> dict[str, Any]:
        """What uvicorn's ``Config`` takes: this protocol with these limits (picklable,
        for the ``-w N`` processes uvicorn spawns), and its keep-alive timer (the idle
        time between two requests) at the idle timeout."""
        return {
            "http": functools.partial(BoundedHttpToolsProtocol, limits=self),
            "timeout_keep_alive": self.idle_timeout,
        }

    @property
    def tick(self) -> float:
        """How often the deadlines are checked: they are kept to within this."""
        return max(0.1, min(1.0, self.header_timeout / 4, self.idle_timeout / 4))


async def _headers_too_large(_scope: Any, _receive: Any, send: Any) -> None:
    """The app of a request whose complete head arrived in one read, over the cap."""
    body = _TOO_LARGE.partition(b"\r\n\r\n")[2]
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 431, "headers": headers})
    await send({"type": "http.response.body", "body": body})


_feed = OneWriteHttpToolsProtocol.data_received
_headers_complete = OneWriteHttpToolsProtocol.on_headers_complete


class _Sweeper:
    """One per server: closes connections past their deadlines every ``tick`` while any
    is open, and makes room at the connection cap."""

    _of: weakref.WeakKeyDictionary[ServerState, _Sweeper] = weakref.WeakKeyDictionary()

    def __init__(self, state: ServerState, loop: asyncio.AbstractEventLoop, tick: float) -> None:
        self.connections: set[Any] = state.connections  # uvicorn's, of this server
        self.lingering: set[BoundedHttpToolsProtocol] = set()  # refused at the cap
        self.evicted = 0  # closed to make room, not yet gone from ``connections``
        self._loop = loop
        self._tick = tick
        self._running = False

    @classmethod
    def of(cls, protocol: BoundedHttpToolsProtocol) -> _Sweeper:
        sweeper = cls._of.get(protocol.server_state)
        if sweeper is None:
            sweeper = cls(protocol.server_state, protocol.loop, protocol.limits.tick)
            cls._of[protocol.server_state] = sweeper
        if not sweeper._running:
            sweeper._running = True
            sweeper._loop.call_later(sweeper._tick, sweeper._sweep)
        return sweeper

    def _sweep(self) -> None:
        now = self._loop.time()
        for connection in [*self.connections, *self.lingering]:
            if isinstance(connection, BoundedHttpToolsProtocol):
                connection.expire(now)
        if self.connections or self.lingering:
            self._loop.call_later(self._tick, self._sweep)
        else:
            self._running = False  # the next connection starts it again

    def make_room(self, cap: int) -> bool:
        """Close the longest-idle connections (a 32nd of the cap at once, so that a flood
        does not scan them all on every accept); False if none can be closed."""
        idle = [c for c in self.connections if getattr(c, "evictable", False)]
        if not idle:
            return False
        idle.sort(key=lambda c: c.since)
        for connection in idle[: max(1, cap // 32)]:
            connection.evict()
            self.evicted += 1
        return True

    def open(self) -> int:
        """Connections open and not on their way out."""
        return len(self.connections) - self.evicted


class BoundedHttpToolsProtocol(OneWriteHttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of this module
    (``uvicorn.Config(..., **limits.uvicorn_options())``)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: ConnectionLimits,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self._cap = limits.max_header_bytes
        self._clock = self.loop.time
        self._head = 0
        #: When the current state began: accepted, a head's first byte, a body's last
        #: byte, a refusal.
        self.since = 0.0
        self._sweeper: _Sweeper | None = None
        self._evicted = False

    # --- the connection ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.since = self.loop.time()
        self._sweeper = sweeper = _Sweeper.of(self)
        cap = self.limits.max_connections
        if sweeper.open() >= cap and not sweeper.make_room(cap):
            self.transport = transport
            if len(sweeper.lingering) >= MAX_LINGERING:
                transport.close()  # a flood: no more descriptors for polite refusals
                return
            sweeper.lingering.add(self)
            self._refuse(_BUSY)
            return
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        sweeper = self._sweeper
        if sweeper is not None:
            sweeper.lingering.discard(self)
            if self._evicted:
                sweeper.evicted -= 1
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # The per-request path: the base class is called directly (no super()), and the
        # state is three attributes, so a request costs ~1 us more in process
        # (docs/operations.md, "Measured cost").
        head = self._head
        if head < 0:
            if head == _LINGER:
                return  # refused: dropped
            cycle = self.cycle
            if cycle is not None and cycle.more_body:
                self.since = self._clock()  # the body still comes
                _feed(self, data)
                return
            head = 0  # the last request is whole: this is the next one's head
        if head == 0 and self.cycle is not None:
            # A later request's first byte: its deadline starts (the first request's
            # started when the connection was accepted).
            self.since = self._clock()
        self._head = head + len(data)
        _feed(self, data)
        if self._head > self._cap:  # still the same head, and too long
            self._refuse(_TOO_LARGE)

    # --- the parser's callback (per request) --------------------------------------------

    def on_headers_complete(self) -> None:
        cap = self._cap
        # Counted per read, a head may seem too long when its body came in the same read.
        if self._head > cap and self._head_size() > cap:
            app, self.app = self.app, _headers_too_large
            try:
                _headers_complete(self)
            finally:
                self.app = app
        else:
            _headers_complete(self)
        self._head = _BODY

    def _head_size(self) -> int:
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    # --- the sweep and the cap ----------------------------------------------------------

    @property
    def evictable(self) -> bool:
        """No request in progress: never one, between two, or a head still arriving."""
        head, cycle = self._head, self.cycle
        if head > 0 or (head == 0 and cycle is None):
            return True
        return (
            head == _BODY
            and cycle is not None
            and not cycle.more_body
            and cycle.response_complete
            and not self.pipeline
        )

    def evict(self) -> None:
        self._head = _LINGER
        self._evicted = True
        self.transport.close()

    def expire(self, now: float) -> None:
        """Close this connection if it is past its deadline (called by the sweep)."""
        head, waited, limits = self._head, now - self.since, self.limits
        if head >= 0:
            if head == 0 and self.cycle is not None:
                return  # between two requests: uvicorn's keep-alive timer (idle timeout)
            if waited > limits.header_timeout:
                if head > 0:
                    self._refuse(_TIMEOUT)
                else:
                    self.transport.close()  # not a byte since it was accepted: no answer
        elif head == _BODY:
            cycle = self.cycle
            if cycle is not None and cycle.more_body and waited > limits.idle_timeout:
                self.transport.close()  # a body that stopped coming (a whole request:
                # the app answers, then uvicorn's keep-alive timer takes over)
        elif waited > LINGER:
            self.transport.abort()

    def _refuse(self, answer: bytes) -> None:
        """Answer ``answer``, half-close, and drop what still comes (module docstring)."""
        self._head = _LINGER
        self.since = self.loop.time()
        transport = self.transport
        if transport.is_closing():
            return
        transport.write(answer)
        if transport.can_write_eof():
            transport.write_eof()
        else:  # pragma: no cover - TCP transports can
            transport.close()
