"""The accrual simulator as a real subprocess, for end-to-end tests over sockets.

Its output goes to a file, never a pipe: the simulator (uvicorn) logs every request, and
nobody reads a pipe while a test runs, so a pipe would fill up and freeze the process.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.ports import free_port

_POLL_LINE = re.compile(r'"GET /api/orders/(\d+) HTTP/[\d.]+" (\d{3})')


@dataclass
class Simulator:
    """A running ``gophermart accrual-sim`` process and a client for it."""

    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    client: httpx.Client

    def register_goods(self, number: str, price: str | int | float) -> None:
        """An order of one 'Bork' good (seeded mechanic: 10 %)."""
        response = self.client.post(
            "/api/orders",
            content=f'{{"order": "{number}", "goods": '
            f'[{{"description": "Bork phone", "price": {price}}}]}}',
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 202, response.text

    def register_fixed(self, number: str, status: str, accrual: str | None = None) -> None:
        """An order with a fixed outcome; ``accrual`` is a JSON number's text, kept exact."""
        body = f'{{"order": "{number}", "status": "{status}", "accrual": {accrual or "null"}}}'
        response = self.client.post(
            "/__sim/orders", content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 202, response.text

    def fail(self, number: str, times: int, status: int) -> None:
        response = self.client.post(
            "/__sim/fail", json={"order": number, "times": times, "status": status}
        )
        assert response.status_code == 200, response.text

    def stats(self) -> dict[str, Any]:
        response = self.client.get("/__sim/stats")
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def polls(self, number: str) -> list[int]:
        """The status codes the simulator answered to GETs of ``number``, in order
        (read from its access log, so the count is the simulator's, not the client's)."""
        return [int(code) for n, code in _POLL_LINE.findall(self.log()) if n == number]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 10.0) -> int:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise


def start_simulator(
    log_dir: Path,
    *,
    delay: float = 0.0,
    rate_limit: int = 0,
    retry_after: int = 60,
    timeout: float = 20.0,
) -> Simulator:
    port = free_port()
    log_path = log_dir / f"accrual-sim-{port}.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gophermart",
                "accrual-sim",
                "-a",
                f"127.0.0.1:{port}",
                "--delay",
                str(delay),
                "--rate-limit",
                str(rate_limit),
                "--retry-after",
                str(retry_after),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    client = httpx.Client(base_url=url, timeout=10)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            client.close()
            raise RuntimeError(f"simulator exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            if client.get("/__sim/stats").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            client.close()
            raise RuntimeError(f"simulator did not come up within {timeout}s")
        time.sleep(0.05)
    return Simulator(url, proc, log_path, client)


@contextmanager
def running_simulator(log_dir: Path, **options: Any) -> Iterator[Simulator]:
    sim = start_simulator(log_dir, **options)
    try:
        yield sim
    finally:
        code = sim.stop()
        assert code == 0, f"simulator exited with {code}:\n{sim.log()}"
