"""A misbehaving accrual system for fault tests, scriptable order by order.

``FaultyAccrual`` is a raw asyncio socket server on 127.0.0.1 (no framework between the
test and the bytes, so it can send what no well-behaved server would): it drips a body
one byte at a time, hangs after reading the request, streams hundreds of megabytes,
answers garbage, 429 storms with odd ``Retry-After`` values and limits, or 5xx. It runs
on its own thread and event loop, so it serves both a worker in the test's own loop and
a service started as a subprocess.

    with running_faulty_accrual() as accrual:
        accrual.script("12345678903", drip(processed("12345678903", "5"), every=4.0))
        accrual.script("79927398713", too_many(retry_after="1", per_minute=1), processed(...))
        accrual.default = processed_for_any("1")    # every other order: PROCESSED, 1 point
        ... accrual.url ...
        accrual.polls("79927398713")                # when each GET of it arrived

Each order's script is played in order and its last answer repeats; orders without one
get ``default`` (204 unless set). ``storm`` answers every GET, whatever the order, while
it is set. Everything recorded is safe to read from the test's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

_REASONS = {
    200: "OK",
    204: "No Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class Answer:
    """What the server does with one GET."""

    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    #: send the body one byte every ``drip`` seconds (the headers at once)
    drip: float | None = None
    #: read the request and never answer (until the client gives up)
    hang: bool = False
    #: stream this many bytes of body (announced in Content-Length unless ``chunked``)
    huge: int = 0
    chunked: bool = False


def processed(number: str, accrual: str | None = None) -> Answer:
    """200 PROCESSED; ``accrual`` is the raw JSON text of the value (``"5"``, ``'"100"'``)."""
    text = f'{{"order": "{number}", "status": "PROCESSED"'
    if accrual is not None:
        text += f', "accrual": {accrual}'
    return Answer(200, (text + "}").encode(), (("Content-Type", "application/json"),))


def status(number: str, verdict: str) -> Answer:
    body = f'{{"order": "{number}", "status": "{verdict}"}}'.encode()
    return Answer(200, body, (("Content-Type", "application/json"),))


def unknown() -> Answer:
    return Answer(204)


def too_many(retry_after: str | None = "60", per_minute: int | None = None) -> Answer:
    headers = (("Retry-After", retry_after),) if retry_after is not None else ()
    text = f"No more than {per_minute} requests per minute allowed" if per_minute else "Slow down"
    return Answer(429, text.encode(), (("Content-Type", "text/plain"), *headers))


def server_error(code: int = 500) -> Answer:
    return Answer(code, b"internal error", (("Content-Type", "text/plain"),))


def garbage(body: bytes) -> Answer:
    return Answer(200, body, (("Content-Type", "application/json"),))


def drip(answer: Answer, every: float) -> Answer:
    return Answer(answer.status, answer.body, answer.headers, drip=every)


def hang() -> Answer:
    return Answer(hang=True)


def huge(size: int, chunked: bool = False) -> Answer:
    return Answer(200, b"", (("Content-Type", "application/json"),), huge=size, chunked=chunked)


@dataclass
class _Poll:
    number: str
    at: float  # time.monotonic() when the request line arrived
    status: int


@dataclass
class FaultyAccrual:
    host: str = "127.0.0.1"
    port: int = 0
    default: Answer | Callable[[str], Answer] = field(default_factory=unknown)
    #: while set, answers every GET (a 429 storm, an outage), whatever the order
    storm: Answer | None = None
    _scripts: dict[str, list[Answer]] = field(default_factory=dict)
    _polls: list[_Poll] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    #: body bytes written for ``huge`` answers before the client hung up
    huge_bytes_sent: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _server: asyncio.Server | None = None
    _connections: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # --- scripting and records (test thread) ------------------------------------

    def script(self, number: str, *answers: Answer) -> None:
        with self._lock:
            self._scripts.setdefault(number, []).extend(answers)

    def polls(self, number: str | None = None) -> list[float]:
        """When each GET (of ``number``, or of any order) arrived, ``time.monotonic()``."""
        with self._lock:
            return [p.at for p in self._polls if number is None or p.number == number]

    def answered(self, number: str) -> list[int]:
        with self._lock:
            return [p.status for p in self._polls if p.number == number]

    def _choose(self, number: str) -> Answer:
        with self._lock:
            if self.storm is not None:
                answer = self.storm
            else:
                queue = self._scripts.get(number)
                if queue:
                    answer = queue.pop(0) if len(queue) > 1 else queue[0]
                elif callable(self.default):
                    answer = self.default(number)
                else:
                    answer = self.default
            self._polls.append(_Poll(number, time.monotonic(), answer.status))
            return answer

    # --- life cycle ---------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="faulty-accrual", daemon=True)
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._accept, self.host, self.port), loop
        ).result(10)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        self._loop = self._thread = None

    # --- serving (server thread) ------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while True:  # keep-alive: one request after another on this connection
                head = await reader.readuntil(b"\r\n\r\n")
                request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
                parts = request_line.split(" ")
                path = parts[1] if len(parts) >= 2 else ""
                number = path.rsplit("/", 1)[-1] if path.startswith("/api/orders/") else ""
                answer = self._choose(number)
                if answer.hang:
                    await reader.read()  # until the client hangs up
                    return
                await self._send(writer, answer)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        except asyncio.CancelledError:
            pass  # stop(): a connection still open (hanging, dripping, idle keep-alive)
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _send(self, writer: asyncio.StreamWriter, answer: Answer) -> None:
        reason = _REASONS.get(answer.status, "Whatever")
        lines = [f"HTTP/1.1 {answer.status} {reason}", *(f"{k}: {v}" for k, v in answer.headers)]
        if answer.huge:
            if answer.chunked:
                lines.append("Transfer-Encoding: chunked")
            else:
                lines.append(f"Content-Length: {answer.huge}")
        elif answer.status != 204:
            lines.append(f"Content-Length: {len(answer.body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        if answer.huge:
            await self._stream_huge(writer, answer)
        elif answer.drip is not None:
            for i in range(len(answer.body)):
                writer.write(answer.body[i : i + 1])
                await writer.drain()
                await asyncio.sleep(answer.drip)
        elif answer.body:
            writer.write(answer.body)
            await writer.drain()

    async def _stream_huge(self, writer: asyncio.StreamWriter, answer: Answer) -> None:
        chunk = b'{"order": "' + b"9" * (64 * 1024 - 12) + b'"'
        left = answer.huge
        while left > 0:
            part = chunk[: min(left, len(chunk))]
            if answer.chunked:
                writer.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            else:
                writer.write(part)
            await writer.drain()
            left -= len(part)
            with self._lock:
                self.huge_bytes_sent += len(part)
        if answer.chunked:
            writer.write(b"0\r\n\r\n")
            await writer.drain()


@contextlib.contextmanager
def running_faulty_accrual() -> Iterator[FaultyAccrual]:
    server = FaultyAccrual()
    server.start()
    try:
        yield server
    finally:
        server.stop()
