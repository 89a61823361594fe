"""Webhook POSTs over a lean HTTP/1.1 client on asyncio: every outcome becomes an
:class:`Attempt`.

The lessons of the accrual poller (``accrual_http.py``), for endpoints we do not run:

* connections **per endpoint**, at most the endpoint's concurrency: a slow or dead
  endpoint holds its own connections, never another's. One POST at a time per
  connection, no pipelining;
* connections are **kept alive** between POSTs: an answer's body is read to its end
  (at most ``max_body`` bytes), so its connection is used again; a connection whose
  answer was not read to its end (a timeout, a body past the cap, a broken answer) is
  closed, never reused. A kept-alive connection the endpoint closed as the POST went
  out (no byte of an answer came back) is not a failure: the POST is sent once more on
  a new connection (at least once is the contract; the event id lets a receiver
  dedupe);
* a total **deadline** per POST (connection, TLS handshake, request, status line,
  headers and what is read of the body): a receiver dripping a byte every few seconds
  trips it like one that never answers;
* the answer's **body is capped**: only the status matters, so at most ``max_body``
  bytes are kept (for the error shown to operators), and a longer body is dropped with
  its connection;
* no redirects (a 3xx is not a delivery: the operator registers the right URL), no
  compression asked for (``Accept-Encoding: identity``), no cookies kept.

Why not httpx: a POST through httpx/httpcore/anyio cost 0.5-1 ms of CPU, more than
the withdrawal that wrote the event (docs/performance.md "Webhooks"). Here a connection
is an :class:`asyncio.Protocol` (no streams, no task per read): the request's bytes are
a prefix built once per endpoint, the per-request headers and the body, written in one
call; the answer is parsed by h11 (chunked, close-delimited and 1xx answers included)
in ``data_received``, and the POST's coroutine wakes once, when the answer has ended.
TLS: one :func:`ssl.create_default_context` shared by every connection (loading the CA
bundle takes ~50 ms of the event loop; once per sender).
"""

from __future__ import annotations

import asyncio
import enum
import ssl
from typing import Final, cast
from urllib.parse import urlsplit

import h11

from gophermart.domain.webhooks import Attempt

#: The most of an answer's body read: enough for an error message shown to operators.
MAX_BODY: Final = 4 * 1024
DEFAULT_DEADLINE: Final = 10.0
#: A new connection (TCP, then TLS) may take at most this long, within the deadline.
CONNECT_TIMEOUT: Final = 3.0
USER_AGENT: Final = "Gophermart-Webhooks/1"


class _Stale(Exception):
    """A kept-alive connection the endpoint closed before a byte of the answer came."""


class _ConnectTimeout(Exception):
    pass


class ConnectError(ConnectionError):
    """No connection to the endpoint (refused, unreachable, a name that does not
    resolve, a TLS handshake that failed): named as httpx named it, as operators see it
    in a delivery's ``last_error`` (docs/operations.md)."""


class _Endpoint:
    """One endpoint's address and the fixed part of its requests, built once, and its
    idle connections."""

    __slots__ = ("host", "id", "idle", "port", "prefix", "primer", "tls_host")

    def __init__(self, endpoint_id: int, url: str) -> None:
        parts = urlsplit(url)  # a valid http(s) URL with a host (domain.webhooks)
        https = parts.scheme == "https"
        self.id = endpoint_id
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if https else 80)
        self.tls_host = self.host if https else None
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        # netloc is host[:port] as registered (credentials are refused at registration).
        self.prefix = (
            f"POST {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"User-Agent: {USER_AGENT}\r\nAccept-Encoding: identity\r\n"
        ).encode("ascii")
        # What h11 is told was sent, so that it expects the answer to a POST: h11's own
        # bytes for it are not used (ours are built once per endpoint, above), and the
        # body's length does not matter to the parsing of the answer.
        self.primer = h11.Request(
            method="POST", target=target, headers=[("Host", parts.netloc), ("Content-Length", "0")]
        )
        self.idle: list[_Connection] = []

    def request(self, body: bytes, headers: dict[str, str]) -> bytes:
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        if head.count("\n") != len(headers) or head.count("\r") != len(headers):
            raise ValueError("a webhook header's name or value holds a line break")
        length = b"Content-Length: %d\r\n\r\n" % len(body)
        return b"".join((self.prefix, head.encode("latin-1"), length, body))


class _Connection(asyncio.Protocol):
    """One connection to an endpoint: one POST at a time, its answer read as its bytes
    arrive (:func:`_plain_answer`, else h11); ``usable`` while it is open and between
    two clean answers."""

    def __init__(self, max_body: int) -> None:
        self._max_body = max_body
        self._primer: h11.Request | None = None
        self._buffer = b""  # the answer's bytes until it is known to be a plain one
        self._h11: h11.Connection | None = None  # an answer that is not: a parser anew
        self._transport: asyncio.Transport | None = None
        self._answer: asyncio.Future[tuple[int, bytes]] | None = None
        self._status = 0
        self._body = bytearray()
        self._heard = False  # a byte of the current answer came
        self.usable = False
        self.reused = False  # it carried an answer before: it may have gone stale

    async def exchange(self, primer: h11.Request, request: bytes) -> tuple[int, bytes]:
        """Send ``request``; the answer's status and (capped) body."""
        if not self.usable or self._transport is None:
            raise _Stale("the connection was closed while idle")
        self._primer, self._buffer, self._h11 = primer, b"", None
        self._status, self._body, self._heard, self.usable = 0, bytearray(), False, False
        answer: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self._answer = answer
        try:
            self._transport.write(request)
            return await answer
        except BaseException:  # a timeout or a broken answer: never reused
            self.close()
            raise
        finally:
            self._answer = None

    def close(self) -> None:
        self.usable = False
        if self._transport is not None:
            self._transport.abort()  # nothing is left to send; a TLS goodbye is not awaited
            self._transport = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self.usable = True

    def data_received(self, data: bytes) -> None:
        if self._answer is None:  # bytes nobody asked for: the connection is not sound
            self.close()
            return
        self._heard = True
        if self._h11 is not None:
            self._feed(data)
            return
        self._buffer += data
        plain = _plain_answer(self._buffer, self._max_body)
        if plain is _Verdict.MORE:
            return
        if plain is _Verdict.H11:
            self._to_h11()
            return
        self._answer.set_result(plain)
        self.usable = True

    def eof_received(self) -> bool:
        self._closed_by_peer()
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed_by_peer()
        self.usable = False
        self._transport = None

    def _closed_by_peer(self) -> None:
        answer = self._answer
        if answer is None or answer.done():
            self.usable = False
        elif self._heard:  # a close-delimited body ends here; anything else is cut short
            if self._h11 is None:
                self._to_h11()
            self._feed(b"")
        elif self.reused:
            answer.set_exception(_Stale("the endpoint closed the kept-alive connection"))
        else:
            answer.set_exception(ConnectionResetError("closed by the endpoint, no answer"))

    def _to_h11(self) -> None:
        """The answer so far to h11, told of the request it answers (h11's bytes for
        it are not sent: ours are built once per endpoint)."""
        assert self._primer is not None
        self._h11 = h11.Connection(h11.CLIENT)
        self._h11.send(self._primer)
        self._h11.send(h11.EndOfMessage())
        buffered, self._buffer = self._buffer, b""
        self._feed(buffered)

    def _feed(self, data: bytes) -> None:
        answer, parser = self._answer, self._h11
        if answer is None or answer.done() or parser is None:
            return
        try:
            parser.receive_data(data)
            while (event := parser.next_event()) is not h11.NEED_DATA:
                if type(event) is h11.Response:
                    self._status = event.status_code
                elif type(event) is h11.Data:
                    room = self._max_body - len(self._body)
                    self._body += event.data[:room]
                    if len(event.data) > room:  # past the cap: the rest is not read
                        self._end(answer, reusable=False)
                        return
                elif type(event) is h11.EndOfMessage:
                    self._end(answer, reusable=True)
                    return
                elif event is h11.PAUSED or type(event) is h11.ConnectionClosed:
                    raise h11.RemoteProtocolError("the answer ended before it began")
                # an InformationalResponse (1xx): the answer follows
        except h11.RemoteProtocolError as exc:
            answer.set_exception(exc)

    def _end(self, answer: asyncio.Future[tuple[int, bytes]], reusable: bool) -> None:
        answer.set_result((self._status, bytes(self._body)))
        h = self._h11
        assert h is not None
        if reusable and h.our_state is h.their_state is h11.DONE and not h.trailing_data[0]:
            self.usable = True  # the next answer starts with no parser
        else:  # Connection: close, HTTP/1.0, a body past the cap, bytes after the answer
            self.close()


class _Verdict(enum.Enum):
    MORE = "more"  # wait for more bytes
    H11 = "h11"  # not a plain answer: h11 reads it


def _plain_answer(data: bytes, max_body: int) -> tuple[int, bytes] | _Verdict:
    """The status and body of a *plain* answer, read by hand: ``HTTP/1.1``, a final
    status with a body (not 1xx, 204 or 304), one Content-Length of at most
    ``max_body``, no Transfer-Encoding or Connection header, CRLF line ends, and
    nothing after its body. What every receiver seen so far answers, and h11 took
    ~20 µs per answer (docs/performance.md "Webhooks"); anything else goes to h11."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return _Verdict.H11 if b"\n\n" in data or len(data) > 8192 else _Verdict.MORE
    head = data[: end + 2].lower()
    if (
        not head.startswith(b"http/1.1 ")
        or not head[9:12].isdigit()
        or head[12:13] not in (b" ", b"\r")
        or head[9:10] not in (b"2", b"3", b"4", b"5")  # 1xx: an answer follows
        or head[9:12] in (b"204", b"304")  # never a body, whatever Content-Length says
        or head.count(b"\n") != head.count(b"\r\n")
        or b"\ntransfer-encoding:" in head
        or b"\nconnection:" in head
    ):
        return _Verdict.H11
    at = head.find(b"\ncontent-length:")
    if at < 0 or head.find(b"\ncontent-length:", at + 1) >= 0:
        return _Verdict.H11
    value = head[at + 16 : head.find(b"\r", at)].strip(b" \t")
    if not value.isdigit() or int(value) > max_body:
        return _Verdict.H11
    whole = end + 4 + int(value)
    if len(data) != whole:
        return _Verdict.MORE if len(data) < whole else _Verdict.H11
    return int(head[9:12]), data[end + 4 :]


class HttpWebhookSender:
    """The WebhookSender port: per endpoint, at most ``connections`` kept-alive
    connections, each opened by the POST that found no idle one."""

    def __init__(
        self,
        deadline: float = DEFAULT_DEADLINE,
        connections: int = 16,
        max_body: int = MAX_BODY,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._deadline = deadline
        self._connections = connections
        self._max_body = max_body
        self._connect_timeout = min(deadline, CONNECT_TIMEOUT)
        self._endpoints: dict[int, _Endpoint] = {}
        self._tls = tls  # shared by every connection; the default made on first use

    async def post(
        self, endpoint_id: int, url: str, body: bytes, headers: dict[str, str]
    ) -> Attempt:
        endpoint = self._endpoints.get(endpoint_id)
        if endpoint is None:  # an endpoint's URL never changes (there is no such verb)
            endpoint = self._endpoints[endpoint_id] = _Endpoint(endpoint_id, url)
        request = endpoint.request(body, headers)
        try:
            async with asyncio.timeout(self._deadline):
                status, excerpt = await self._exchange(endpoint, request)
        except TimeoutError:
            return Attempt(None, f"no answer within {self._deadline:g}s", "timeout")
        except _ConnectTimeout as exc:
            return Attempt(None, str(exc), "timeout")
        except (OSError, h11.ProtocolError, _Stale) as exc:
            # ConnectError (refused, unreachable, a name that does not resolve, a TLS
            # handshake refused), a connection dropped mid-answer, a malformed answer...
            return Attempt(None, f"{type(exc).__name__}: {exc}"[:500], "network")
        if 200 <= status < 300:
            return Attempt(status)
        text = excerpt.decode("utf-8", "replace").strip()
        error = f"HTTP {status}" + (f": {text}" if text else "")
        return Attempt(status, error[:500], f"http_{status // 100}xx")

    async def _exchange(self, endpoint: _Endpoint, request: bytes) -> tuple[int, bytes]:
        connection = self._idle(endpoint) or await self._open(endpoint)
        try:
            try:
                return await connection.exchange(endpoint.primer, request)
            except _Stale:  # closed by the endpoint as the POST went out: once more, anew
                connection = await self._open(endpoint)
                return await connection.exchange(endpoint.primer, request)
        finally:
            kept = self._endpoints.get(endpoint.id) is endpoint  # not forgotten meanwhile
            if connection.usable and kept and len(endpoint.idle) < self._connections:
                connection.reused = True
                endpoint.idle.append(connection)
            else:
                connection.close()

    @staticmethod
    def _idle(endpoint: _Endpoint) -> _Connection | None:
        while endpoint.idle:
            connection = endpoint.idle.pop()
            if connection.usable:  # not closed by the endpoint while idle
                return connection
        return None

    async def _open(self, endpoint: _Endpoint) -> _Connection:
        tls = None
        if endpoint.tls_host is not None:
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: _Connection(self._max_body),
                    endpoint.host,
                    endpoint.port,
                    ssl=tls,
                    server_hostname=endpoint.tls_host,
                )
        except TimeoutError:
            raise _ConnectTimeout(
                f"ConnectTimeout: no connection within {self._connect_timeout:g}s"
            ) from None
        except OSError as exc:
            raise ConnectError(f"{exc}") from exc
        return connection

    async def forget(self, endpoint_id: int) -> None:
        """Close the endpoint's idle connections (one in use is closed when its POST
        ends: the endpoint is no longer ours to keep connections to)."""
        endpoint = self._endpoints.pop(endpoint_id, None)
        if endpoint is not None:
            idle, endpoint.idle = endpoint.idle, []
            for connection in idle:
                connection.close()
            await asyncio.sleep(0)  # the transports' sockets close on the loop's next turn

    async def aclose(self) -> None:
        for endpoint_id in list(self._endpoints):
            await self.forget(endpoint_id)
