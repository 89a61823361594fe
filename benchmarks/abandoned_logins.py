"""Abandoned logins (issue 15, finding 1): what a hostile client's hung-up logins cost
the owner of an account.

Starts a real ``gophermart`` process (on a throwaway SQLite file unless ``--database``
names another), registers an owner, then sends ``--attempts`` logins with wrong
passwords (each on its own connection, each for another login) and hangs up on every
one of them at once: the whole volley takes a few milliseconds. Then the owner logs in,
``--owner-logins`` times in a row, and each of those logins is timed. Prints one JSON
object: the owner's login times, the statuses the volley would have had (none: it hung
up), and the rows ``login_failures`` holds afterwards (SQLite only).

    python benchmarks/abandoned_logins.py [--attempts 100] [--service-src /tmp/before/src]

``--service-src`` runs the ``gophermart`` package of another tree (before/after).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start(database: str, service_src: str | None) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOPHERMART_")}
    env |= {
        "RUN_ADDRESS": f"127.0.0.1:{port}",
        "DATABASE_URI": database,
        "GOPHERMART_SECRET": "abandoned-logins-" + "x" * 32,
        "GOPHERMART_METRICS": "0",
    }
    if service_src:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [service_src, env.get("PYTHONPATH")]))
    log = Path(tempfile.mkstemp(prefix="abandoned-", suffix=".log")[1])
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gophermart", "--no-worker"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/livez", timeout=0.5)
            return proc, url, log
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"the service did not start:\n{log.read_text(errors='replace')}")


def volley(url: str, attempts: int) -> float:
    """``attempts`` logins sent and abandoned; returns how long sending them took (s)."""
    host, port = url.removeprefix("http://").split(":")
    started = time.monotonic()
    sockets = []
    for i in range(attempts):
        body = json.dumps({"login": f"nobody-{i}-{uuid.uuid4().hex[:6]}", "password": "guess"})
        request = (
            f"POST /api/user/login HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}"
        ).encode()
        s = socket.create_connection((host, int(port)))
        s.sendall(request)
        sockets.append(s)
    for s in sockets:  # hang up on every one, answered or not
        s.close()
    return time.monotonic() - started


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--attempts", type=int, default=100)
    p.add_argument("--owner-logins", type=int, default=2)
    p.add_argument("--database", help="DATABASE_URI (default: a throwaway SQLite file)")
    p.add_argument("--service-src", help="run the gophermart package found in this directory")
    a = p.parse_args()
    db_file = Path(tempfile.mkdtemp(prefix="abandoned-")) / "gophermart.db"
    database = a.database or f"sqlite:///{db_file}"
    proc, url, _log = start(database, a.service_src)
    try:
        with httpx.Client(base_url=url, timeout=120) as c:
            owner = {"login": "owner", "password": "correct horse"}
            assert c.post("/api/user/register", json=owner).status_code == 200
            sent = volley(url, a.attempts)
            times, statuses = [], []
            for _ in range(a.owner_logins):
                t0 = time.monotonic()
                r = c.post("/api/user/login", json=owner)
                times.append(round(time.monotonic() - t0, 3))
                statuses.append(r.status_code)
        time.sleep(2)  # let whatever still runs finish before the rows are counted
        rows = None
        if not a.database:
            with sqlite3.connect(db_file) as conn:
                rows = conn.execute("SELECT count(*) FROM gophermart_login_failures").fetchone()[0]
        print(
            json.dumps(
                {
                    "attempts": a.attempts,
                    "volley_seconds": round(sent, 4),
                    "owner_login_seconds": times,
                    "owner_statuses": statuses,
                    "login_failures_rows": rows,
                }
            )
        )
    finally:
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    main()
