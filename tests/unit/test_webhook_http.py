"""The webhook sender (adapters/webhook_http.py) against a scripted local HTTP server:
every promise of its docstring, and the edges of a hand-driven HTTP/1.1 client (chunked
and close-delimited answers, a body past the cap, a kept-alive connection the endpoint
closed, TLS)."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import h11
import pytest

from gophermart.adapters import webhook_http
from gophermart.adapters.webhook_http import (
    MAX_BODY,
    HttpWebhookSender,
    _plain_answer,
    _Verdict,
)
from gophermart.domain.webhooks import Attempt

HEADERS = {"Content-Type": "application/json", "Gophermart-Event-Id": "7"}
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@dataclass
class Seen:
    connection: int  # 1, 2 ... in the order they were accepted
    head: bytes
    body: bytes


@dataclass
class Reply:
    """An answer in parts, sent ``pause`` seconds apart, and then the connection closed
    if ``then_close``."""

    parts: list[bytes]
    then_close: bool = False
    pause: float = 0.05


#: What the server does with a request: the bytes to answer, a Reply, or None (close
#: without answering).
Answer = bytes | Reply | None


@dataclass
class Server:
    answer: Callable[[Seen], Awaitable[Answer]]
    requests: list[Seen] = field(default_factory=list)
    accepted: int = 0
    hung_up: int = 0  # connections the client closed
    url: str = ""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        number = self.accepted
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = next(
                    int(line.split(b":")[1])
                    for line in head.lower().split(b"\r\n")
                    if line.startswith(b"content-length:")
                )
                seen = Seen(number, head, await reader.readexactly(length))
                self.requests.append(seen)
                answer = await self.answer(seen)
                if answer is None:
                    return
                reply = Reply([answer], pause=0) if isinstance(answer, bytes) else answer
                for part in reply.parts:
                    writer.write(part)
                    await writer.drain()
                    await asyncio.sleep(reply.pause)
                if reply.then_close:
                    return
        except asyncio.IncompleteReadError:
            self.hung_up += 1
        except ConnectionError:
            self.hung_up += 1
        finally:
            writer.close()


def answering(*answers: Answer) -> Callable[[Seen], Awaitable[Answer]]:
    """The answers in turn, the last one ever after."""
    queue = list(answers)

    async def answer(seen: Seen) -> Answer:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return answer


@asynccontextmanager
async def serving(
    answer: Callable[[Seen], Awaitable[Answer]], tls: ssl.SSLContext | None = None
) -> AsyncIterator[Server]:
    server = Server(answer)
    listening = await asyncio.start_server(server.serve, "127.0.0.1", 0, ssl=tls)
    port = listening.sockets[0].getsockname()[1]
    server.url = (
        f"{'https' if tls else 'http'}://{'localhost' if tls else '127.0.0.1'}:{port}/hooks?x=1"
    )
    async with listening:
        yield server


async def _post(sender: HttpWebhookSender, server: Server, body: bytes = b'{"id":7}') -> Attempt:
    return await sender.post(1, server.url, body, HEADERS)


async def test_a_post_carries_its_headers_and_body_and_its_connection_is_kept() -> None:
    sender = HttpWebhookSender(deadline=2.0)
    async with serving(answering(OK)) as server:
        attempts = [await _post(sender, server, b'{"id":%d}' % n) for n in range(3)]
        await sender.aclose()
    assert attempts == [Attempt(200)] * 3
    assert server.accepted == 1  # kept alive
    first = server.requests[0]
    assert first.head.startswith(b"POST /hooks?x=1 HTTP/1.1\r\n")
    for line in (b"Host: 127.0.0.1:", b"Accept-Encoding: identity", b"Content-Length: 8"):
        assert line in first.head
    assert b"Gophermart-Event-Id: 7\r\n" in first.head
    assert [s.body for s in server.requests] == [b'{"id":0}', b'{"id":1}', b'{"id":2}']


async def test_a_chunked_refusal_is_read_to_its_end_and_its_connection_kept() -> None:
    chunked = (
        b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4\r\nbusy\r\n5\r\n, sor\r\n2\r\nry\r\n0\r\n\r\n"
    )
    sender = HttpWebhookSender(deadline=2.0)
    async with serving(answering(chunked, OK)) as server:
        refused = await _post(sender, server)
        delivered = await _post(sender, server)
        await sender.aclose()
    assert refused == Attempt(503, "HTTP 503: busy, sorry", "http_5xx")
    assert delivered == Attempt(200)
    assert server.accepted == 1


async def test_a_close_delimited_answer_ends_with_the_connection() -> None:
    no_length = [b"HTTP/1.1 404 Gone\r\nConnection: close\r\n\r\nno ", b"such hook"]
    sender = HttpWebhookSender(deadline=2.0)
    async with serving(answering(Reply(no_length, then_close=True), OK)) as server:
        refused = await _post(sender, server)
        delivered = await _post(sender, server)
        await sender.aclose()
    assert refused == Attempt(404, "HTTP 404: no such hook", "http_4xx")
    assert delivered == Attempt(200)
    assert [s.connection for s in server.requests] == [1, 2]


async def test_a_body_past_the_cap_is_cut_and_its_connection_dropped() -> None:
    long = b"HTTP/1.1 500 Oops\r\nContent-Length: 10000\r\n\r\n" + b"x" * 10_000
    sender = HttpWebhookSender(deadline=2.0, max_body=100)
    async with serving(answering(long, OK)) as server:
        refused = await _post(sender, server)
        delivered = await _post(sender, server)
        await sender.aclose()
    assert refused == Attempt(500, "HTTP 500: " + "x" * 100, "http_5xx")
    assert delivered == Attempt(200)
    assert server.accepted == 2  # the first connection was not read to its end


async def test_a_kept_alive_connection_closed_between_posts_is_replaced() -> None:
    async def answer(seen: Seen) -> Answer:
        return OK if len(server.requests) != 2 else None  # the 2nd request: hung up on

    sender = HttpWebhookSender(deadline=2.0)
    async with serving(answer) as server:
        first = await _post(sender, server)
        second = await _post(sender, server)  # sent on the kept connection, which closes
        await sender.aclose()
    assert (first, second) == (Attempt(200), Attempt(200))
    assert server.accepted == 2
    assert [s.connection for s in server.requests] == [1, 1, 2]  # sent once more, anew


async def test_a_connection_closed_while_idle_is_not_used() -> None:
    sender = HttpWebhookSender(deadline=2.0)
    async with serving(answering(Reply([OK], then_close=True))) as server:
        first = await _post(sender, server)
        await asyncio.sleep(0.1)  # the endpoint's close (an idle timeout) is seen
        second = await _post(sender, server)
        await sender.aclose()
    assert (first, second) == (Attempt(200), Attempt(200))
    assert [s.connection for s in server.requests] == [1, 2]  # each sent once


async def test_a_new_connection_closed_without_an_answer_is_a_network_failure() -> None:
    sender = HttpWebhookSender(deadline=2.0)
    async with serving(answering(None)) as server:
        attempt = await _post(sender, server)
        await sender.aclose()
    assert (attempt.status, attempt.outcome) == (None, "network")
    assert len(server.requests) == 1  # not sent twice


async def test_no_answer_within_the_deadline_is_a_timeout_and_the_connection_closed() -> None:
    async def late_at_first(seen: Seen) -> Answer:
        if seen.connection == 1:
            await asyncio.sleep(0.6)  # its late answer must not be taken for the next one's
        return OK

    sender = HttpWebhookSender(deadline=0.3)
    async with serving(late_at_first) as server:
        late = await _post(sender, server)
        next_one = await _post(sender, server)
        await sender.aclose()
    assert late == Attempt(None, "no answer within 0.3s", "timeout")
    assert next_one == Attempt(200)
    assert [s.connection for s in server.requests] == [1, 2]


async def test_a_connection_not_made_in_time_is_a_connect_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(webhook_http, "CONNECT_TIMEOUT", 0.2)
    sender = HttpWebhookSender(deadline=2.0)

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # a TLS ClientHello, never answered

    listening = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    async with listening:
        attempt = await sender.post(1, f"https://127.0.0.1:{port}/", b"{}", HEADERS)
        await sender.aclose()
    assert attempt == Attempt(None, "ConnectTimeout: no connection within 0.2s", "timeout")


async def test_the_deadline_bounds_an_answer_that_drips() -> None:
    drip = Reply([b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"] + [b"x"] * 100)
    sender = HttpWebhookSender(deadline=0.5)
    async with serving(answering(drip)) as server:
        attempt = await _post(sender, server)
        await sender.aclose()
    assert attempt.outcome == "timeout"


async def test_a_redirect_is_not_followed() -> None:
    moved = b"HTTP/1.1 301 Moved\r\nLocation: http://127.0.0.1:9/\r\nContent-Length: 0\r\n\r\n"
    sender = HttpWebhookSender(deadline=2.0)
    async with serving(answering(moved)) as server:
        attempt = await _post(sender, server)
        await sender.aclose()
    assert attempt == Attempt(301, "HTTP 301", "http_3xx")
    assert len(server.requests) == 1


async def test_an_informational_answer_is_followed_by_the_answer() -> None:
    sender = HttpWebhookSender(deadline=2.0)
    async with serving(answering(b"HTTP/1.1 100 Continue\r\n\r\n" + OK)) as server:
        assert await _post(sender, server) == Attempt(200)
        await sender.aclose()


async def test_a_malformed_answer_is_a_network_failure() -> None:
    sender = HttpWebhookSender(deadline=2.0)
    async with serving(answering(b"SMTP ready\r\n\r\n")) as server:
        attempt = await _post(sender, server)
        await sender.aclose()
    assert (attempt.status, attempt.outcome) == (None, "network")


async def test_a_refused_connection_is_a_connect_error() -> None:
    sender = HttpWebhookSender(deadline=2.0)
    attempt = await sender.post(1, "http://127.0.0.1:9/", b"{}", HEADERS)
    assert attempt.outcome == "network"
    assert attempt.error is not None and attempt.error.startswith("ConnectError: ")


async def test_forget_closes_the_idle_connections() -> None:
    sender = HttpWebhookSender(deadline=2.0)
    async with serving(answering(OK)) as server:
        await _post(sender, server)
        await sender.forget(1)
        await asyncio.sleep(0.1)
        assert server.hung_up == 1
        assert await _post(sender, server) == Attempt(200)  # a new connection
        await sender.aclose()
    assert server.accepted == 2


async def test_at_most_connections_are_kept_per_endpoint() -> None:
    async def slow(seen: Seen) -> Answer:
        await asyncio.sleep(0.1)
        return OK

    sender = HttpWebhookSender(deadline=2.0, connections=2)
    async with serving(slow) as server:
        assert (
            await asyncio.gather(*(_post(sender, server) for _ in range(4))) == [Attempt(200)] * 4
        )
        await asyncio.sleep(0.1)
        assert (server.accepted, server.hung_up) == (4, 2)
        await sender.aclose()


def _self_signed(where: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a certificate with")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_tls_with_a_trusted_certificate_and_one_that_is_not(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert, key)
    trusting = ssl.create_default_context(cafile=str(cert))
    async with serving(answering(OK), tls=served) as server:
        trusted = HttpWebhookSender(deadline=2.0, tls=trusting)
        attempts = [await _post(trusted, server) for _ in range(2)]
        await trusted.aclose()
        untrusted = HttpWebhookSender(deadline=2.0)  # the system's CAs: not this one
        refused = await _post(untrusted, server)
        await untrusted.aclose()
    assert attempts == [Attempt(200)] * 2
    # Both POSTs on the trusted one's kept-alive connection (a refused handshake never
    # reaches the server's handler).
    assert [s.connection for s in server.requests] == [1, 1]
    assert refused.outcome == "network"
    assert refused.error is not None and "CERTIFICATE_VERIFY_FAILED" in refused.error


# --- the plain answers read by hand, h11 for the rest -------------------------------------

PLAIN = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 503 \r\ncontent-length:4\r\nX-A: b\r\n\r\nbusy",
    b"HTTP/1.1 404\r\nServer: x\r\nContent-Length:  0 \r\n\r\n",
]
NOT_PLAIN = [
    b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",  # HTTP/1.0: closes after
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 204 No Content\r\nContent-Length: 2\r\n\r\n",  # 204: no body, whatever
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\n",
    b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",  # bare LF line ends
    b"HTTP/1.1 200 OK\r\nX: a\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1",  # bytes after the answer
    b"HTTP/1.1 200 OK\r\nContent-Length: 9999\r\n\r\n" + b"x" * 9999,  # past the cap
    b"HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n",
    b"SMTP ready\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n\r\nok",  # no length: until the connection closes
]


def _by_h11(data: bytes) -> tuple[int, bytes]:
    parser = h11.Connection(h11.CLIENT)
    parser.send(h11.Request(method="POST", target="/", headers=[("Host", "x")]))
    parser.send(h11.EndOfMessage())
    parser.receive_data(data)
    status, body = 0, b""
    while type(event := parser.next_event()) is not h11.EndOfMessage:
        if type(event) is h11.Response:
            status = event.status_code
        elif type(event) is h11.Data:
            body += event.data
    return status, body


@pytest.mark.parametrize("answer", PLAIN)
def test_a_plain_answer_is_read_as_h11_reads_it_and_waits_for_its_end(answer: bytes) -> None:
    assert _plain_answer(answer, MAX_BODY) == _by_h11(answer)
    for cut in range(len(answer)):  # any prefix: wait for more
        assert _plain_answer(answer[:cut], MAX_BODY) is _Verdict.MORE


@pytest.mark.parametrize("answer", NOT_PLAIN)
def test_any_other_answer_goes_to_h11(answer: bytes) -> None:
    assert _plain_answer(answer, MAX_BODY) is _Verdict.H11


async def test_an_answer_in_pieces_and_one_that_is_not_plain_both_keep_the_connection() -> None:
    pieces = Reply([b"HTTP/1.1 200 OK\r\nContent-Le", b"ngth: 2\r\n\r", b"\no", b"k"])
    chunked = b"HTTP/1.1 500 X\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nno\r\n0\r\n\r\n"
    sender = HttpWebhookSender(deadline=2.0)
    async with serving(answering(pieces, chunked, OK)) as server:
        attempts = [await _post(sender, server) for _ in range(3)]
        await sender.aclose()
    assert attempts == [Attempt(200), Attempt(500, "HTTP 500: no", "http_5xx"), Attempt(200)]
    assert [s.connection for s in server.requests] == [1, 1, 1]
