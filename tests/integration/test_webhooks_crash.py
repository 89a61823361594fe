"""A ``kill -9`` of the delivery worker mid-batch loses nothing (issue 18, "Done when"),
on SQLite and PostgreSQL: a ``gophermart worker`` is killed while its stream's POSTs to a
slow receiver are in flight; what it had in flight was never recorded (the endpoint's
cursor stays before it), and a second worker takes the stream over once its lease ends
and delivers every event (at least once)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gophermart import Gophermart, Points
from gophermart.testing import TEST_SECRET
from tests.integration.receiver import Receiver, receiving

#: A POST may take 2 s: a stream's (and a claimed delivery's) lease is 2 + 5 s.
WORKER_ENV = {
    "GOPHERMART_WEBHOOK_TIMEOUT": "2",
    "GOPHERMART_WEBHOOK_BACKOFF": "0.05",
    "GOPHERMART_WEBHOOK_BACKOFF_CAP": "0.2",
    "GOPHERMART_WEBHOOK_CONCURRENCY": "4",
    "GOPHERMART_SECRET": TEST_SECRET,
}
EVENTS = 12


@contextmanager
def worker(database_uri: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOPHERMART_")}
    env.pop("DATABASE_URI", None)
    env.update(WORKER_ENV)
    with log.open("wb") as out:
        # -r: a worker polls an accrual system too; none is needed (no orders are uploaded)
        command = [sys.executable, "-m", "gophermart", "worker", "-d", database_uri]
        proc = subprocess.Popen(
            [*command, "-r", "http://127.0.0.1:9"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


async def _prepare(database_uri: str, url: str) -> tuple[int, str]:
    """The endpoint, then EVENTS adjustments for three users (ledger.adjustment events)."""
    async with Gophermart.open(database_uri, secret=TEST_SECRET) as loyalty:
        new = await loyalty.add_webhook(url, ["ledger.adjustment"])
        users = [
            (await loyalty.register(f"c-{uuid.uuid4().hex[:8]}", "pw")).user_id for _ in range(3)
        ]
        for k in range(EVENTS):
            await loyalty.adjust(users[k % 3], Points(100 + k), "seed", operator="tests")
        return new.endpoint.id, new.secret


async def _states(database_uri: str, endpoint_id: int) -> list[tuple[int, str, int]]:
    async with Gophermart.open(database_uri, secret=TEST_SECRET) as loyalty:
        views = await loyalty.webhook_deliveries(endpoint_id)
        return [(v.event_id, v.state, v.attempts) for v in views]


@pytest.mark.slow
def test_a_killed_worker_loses_no_delivery(database_uri: str, tmp_path: Path) -> None:
    with receiving() as receiver:
        _run(database_uri, tmp_path, receiver)


def _run(database_uri: str, tmp_path: Path, receiver: Receiver) -> None:
    receiver.delay = 1.5  # slow: the first worker's POSTs are in flight when it dies
    endpoint, secret = asyncio.run(_prepare(database_uri, receiver.url))
    with worker(database_uri, tmp_path / "first.log") as first:
        wait_for(lambda: receiver.in_flight >= 2, "POSTs in flight", timeout=30)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    killed_at = time.monotonic()
    recorded = asyncio.run(_states(database_uri, endpoint))
    assert len(recorded) < EVENTS, recorded  # what was in flight is not recorded
    receiver.delay = 0.0
    with worker(database_uri, tmp_path / "second.log") as second:
        wait_for(
            lambda: len(set(receiver.event_ids())) == EVENTS and receiver.in_flight == 0,
            "every event",
            timeout=30,
        )
        states = asyncio.run(_states(database_uri, endpoint))
        deadline = time.monotonic() + 10
        while {s for _, s, _ in states} != {"delivered"}:
            assert time.monotonic() < deadline, states
            time.sleep(0.1)
            states = asyncio.run(_states(database_uri, endpoint))
        second.send_signal(signal.SIGTERM)
        assert second.wait(20) == 0, (tmp_path / "second.log").read_text()
    took = time.monotonic() - killed_at
    assert took < 7 + 10, took  # the lease (2 + 5 s), then at once
    assert len(states) == EVENTS
    # What the dead worker had in flight was sent again: at least once, never zero.
    assert len(receiver.received) >= EVENTS
    assert all(r.verifies(secret) for r in receiver.received)
    per_user: dict[int, list[int]] = {}
    for r in receiver.received:
        per_user.setdefault(r.event.user_id, []).append(r.event.id)
    for ids in per_user.values():
        firsts = list(dict.fromkeys(ids))  # first arrivals, in order
        assert firsts == sorted(firsts)
