"""A webhook receiver for tests: a real HTTP/1.1 server on its own thread and event loop
that records every POST (headers, body, arrival time) and answers as the test says
(a status, after a delay), or refuses connections while it is "down" (the connections
the sender keeps alive are dropped too: a dead endpoint answers nothing)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from gophermart.adapters.event_wire import event_from_json
from gophermart.domain.events import Event
from gophermart.domain.webhooks import EVENT_ID_HEADER, SIGNATURE_HEADER, verify


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    at: float  # time.time() when the body was in

    @property
    def event(self) -> Event:
        return event_from_json(self.body)

    def verifies(self, secret: str) -> bool:
        header = self.headers[SIGNATURE_HEADER.lower()]
        return verify(secret, self.body, header, now=int(self.at))


class Receiver:
    """``url``; ``status`` and ``delay`` decide the answers; ``down()`` stops listening
    (connections are refused) until ``up()``."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.status = 200
        self.delay = 0.0
        self.in_flight = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.port = self._call(self._listen(0))
        self.url = f"http://127.0.0.1:{self.port}/hooks"

    def _call(self, coro: object) -> int:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)  # type: ignore[arg-type]

    async def _listen(self, port: int) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        return int(self._server.sockets[0].getsockname()[1])

    async def _close(self) -> int:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in self._connections:
            task.cancel()
        if self._connections:
            await asyncio.wait(self._connections, timeout=5)
        return 0

    def down(self) -> None:
        self._call(self._close())

    def up(self) -> None:
        self._call(self._listen(self.port))

    def close(self) -> None:
        self.down()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                path = line.split()[1].decode()
                headers: dict[str, str] = {}
                while (header := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = header.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.in_flight += 1
                try:
                    self.received.append(Received(path, headers, body, time.time()))
                    if self.delay:
                        await asyncio.sleep(self.delay)
                    status = self.status
                finally:
                    self.in_flight -= 1
                writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 2\r\n\r\nok".encode())
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return
        finally:
            self._connections.discard(task)
            writer.close()

    # --- what arrived -----------------------------------------------------------------

    def event_ids(self) -> list[int]:
        return [int(r.headers[EVENT_ID_HEADER.lower()]) for r in list(self.received)]


@contextmanager
def receiving() -> Iterator[Receiver]:
    receiver = Receiver()
    try:
        yield receiver
    finally:
        receiver.close()
