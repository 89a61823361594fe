"""Issue 15, finding 1, replayed over real sockets against a real ``gophermart``: bounded
work per client (SPEC.md: "Header size, header and idle timeouts, connections … are
capped … Past a cap: a fast refusal (431, 503 + Retry-After), never a slowdown for
everyone").

Before (uvicorn alone): idle and slowloris connections were still open after 40 s; a
32 MB header got 200, and 8 unfinished ones cost ~300 MB; under ``ulimit -n 256``, 250
idle sockets made every new client get a reset.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Service, start_service

HEADER_TIMEOUT = 1.0
IDLE_TIMEOUT = 2.0
MAX_HEADER_BYTES = 16 * 1024
MAX_CONNECTIONS = 24
#: How late a deadline may be enforced: one sweep (a quarter of the shortest timeout,
#: at most 1 s) plus a busy machine's scheduling.
SLACK = 1.5


@pytest.fixture(scope="module")
def bounded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = start_service(
        f"sqlite:///{tmp_path_factory.mktemp('limits') / 'l.db'}",
        env={
            "GOPHERMART_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
            "GOPHERMART_IDLE_TIMEOUT": str(IDLE_TIMEOUT),
            "GOPHERMART_MAX_HEADER_BYTES": str(MAX_HEADER_BYTES),
            "GOPHERMART_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        },
    )
    try:
        yield svc
    finally:
        assert svc.stop() == 0, svc.output()
    assert "Traceback" not in svc.output(), svc.output()


def connect(svc: Service, timeout: float = 10.0) -> socket.socket:
    host, port = svc.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=timeout)


def read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes (or ``limit`` seconds pass), and when
    the close came (seconds from now)."""
    started = time.monotonic()
    sock.settimeout(limit)
    received = b""
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while chunk := sock.recv(65536):
            received += chunk
    return received, time.monotonic() - started


def served(svc: Service) -> int:
    return httpx.get(svc.url + "/livez", timeout=5).status_code


def test_a_connection_that_never_sends_is_closed_after_the_header_timeout(
    bounded: Service,
) -> None:
    with connect(bounded) as sock:
        received, after = read_until_closed(sock, HEADER_TIMEOUT + SLACK + 5)
    assert received == b""  # nothing was asked: closed without an answer
    assert HEADER_TIMEOUT - 0.2 <= after <= HEADER_TIMEOUT + SLACK, after


def test_a_first_request_s_deadline_runs_from_the_connection_s_start(bounded: Service) -> None:
    with connect(bounded) as sock:
        time.sleep(HEADER_TIMEOUT * 0.7)
        sock.sendall(b"GET /livez HTTP/1.1\r\n")  # late, then slow: cut at the deadline
        answer, after = read_until_closed(sock, HEADER_TIMEOUT + SLACK + 5)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert after <= HEADER_TIMEOUT * 0.3 + SLACK, after


def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(
    bounded: Service,
) -> None:
    with connect(bounded) as sock:
        sock.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200"), first
        received, after = read_until_closed(sock, IDLE_TIMEOUT + SLACK + 5)
    assert received == b""
    assert after <= IDLE_TIMEOUT + SLACK, after


def test_a_slowloris_head_is_cut_with_408_after_the_header_timeout(bounded: Service) -> None:
    with connect(bounded) as sock:
        sock.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        answer = b""
        sock.settimeout(0.2)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while time.monotonic() - started < HEADER_TIMEOUT + SLACK + 5:
                sock.sendall(b"X-Drip: 1\r\n")  # a byte line now and then: never idle
                with contextlib.suppress(TimeoutError):
                    answer += sock.recv(65536)
                    if answer == b"" or answer.endswith(b"}"):
                        break
        after = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer
    assert b'{"error":"request headers not received in time"}' in answer
    assert after <= HEADER_TIMEOUT + SLACK, after


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _send_huge_header(svc: Service, megabytes: int) -> tuple[bytes, float]:
    """Send a header of ``megabytes`` MB (as far as the server lets us): its answer, and
    how long it took to come."""
    with connect(svc) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Huge: ")
        chunk = b"a" * 65536
        sock.settimeout(5)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, TimeoutError):
            for _ in range(megabytes * 16):
                sock.sendall(chunk)
        received, _after = read_until_closed(sock, 10)
        return received, time.monotonic() - started


def test_a_huge_header_is_431_fast_and_costs_no_memory(bounded: Service) -> None:
    import concurrent.futures

    pid = bounded.proc.pid
    assert served(bounded) == 200
    before = _rss_kib(pid)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: _send_huge_header(bounded, 32), range(8)))
    grown_mib = (_rss_kib(pid) - before) / 1024
    for answer, seconds in answers:
        assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), answer
        assert b'{"error":"request headers too large"}' in answer
        assert seconds < 5, seconds
    assert grown_mib < 20, f"the server grew by {grown_mib:.0f} MiB"
    assert served(bounded) == 200


def test_a_long_but_allowed_header_is_served(bounded: Service) -> None:
    headers = {f"X-Pad-{i}": "p" * 1000 for i in range(MAX_HEADER_BYTES // 1100)}
    assert httpx.get(bounded.url + "/livez", headers=headers, timeout=5).status_code == 200
    too_long = {f"X-Pad-{i}": "p" * 1000 for i in range(MAX_HEADER_BYTES // 900)}
    refused = httpx.get(bounded.url + "/livez", headers=too_long, timeout=5)
    assert refused.status_code == 431, refused.text
    # A head over the cap arriving in one read, with its body in the same read:
    with connect(bounded) as sock:
        pad = b"X-Pad: " + b"p" * MAX_HEADER_BYTES + b"\r\n"
        sock.sendall(
            b"POST /api/user/login HTTP/1.1\r\nHost: x\r\n" + pad + b"Content-Length: 2\r\n\r\n{}"
        )
        answer, _ = read_until_closed(sock, 5)
    assert answer.startswith(b"HTTP/1.1 431 "), answer


def test_at_the_cap_idle_connections_make_room_and_busy_ones_get_a_fast_503(
    bounded: Service,
) -> None:
    # Idle connections fill the cap: a new client is still served (the longest idle go).
    idle = [connect(bounded) for _ in range(MAX_CONNECTIONS + 8)]
    try:
        time.sleep(0.3)
        assert served(bounded) == 200
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.3)
    # Busy connections (a request whose body is still to come) fill it: a fast 503.
    busy = [connect(bounded) for _ in range(MAX_CONNECTIONS)]
    try:
        for sock in busy:
            sock.sendall(
                b"POST /api/user/login HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"
            )
        time.sleep(0.3)
        started = time.monotonic()
        refused = httpx.get(bounded.url + "/livez", timeout=5)
        assert time.monotonic() - started < 0.5
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"] == "1"
        assert refused.json() == {"error": "too many connections"}
        # The bodies that stopped coming are cut after the idle timeout: room again.
        time.sleep(IDLE_TIMEOUT + SLACK)
        assert served(bounded) == 200
    finally:
        for sock in busy:
            sock.close()


def _lower_open_files(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


def test_with_256_files_250_idle_sockets_leave_room_for_a_client(tmp_path: Path) -> None:
    """The issue's "done when": ``ulimit -n 256``, 250 idle sockets, and a new client is
    still served (before: reset). The default cap is sized to the open-file limit."""
    svc = start_service(f"sqlite:///{tmp_path / 'fd.db'}", preexec=lambda: _lower_open_files(256))
    idle: list[socket.socket] = []
    try:
        for _ in range(250):
            idle.append(connect(svc))
        time.sleep(0.5)
        for _ in range(5):
            assert served(svc) == 200
        response = httpx.post(
            svc.url + "/api/user/register", json={"login": "fd", "password": "pw"}
        )
        assert response.status_code == 200
    finally:
        for sock in idle:
            sock.close()
        assert svc.stop() == 0, svc.output()
    assert "Traceback" not in svc.output(), svc.output()
