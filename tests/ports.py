"""Ports for processes a test starts and then points at: one definition for the suite.

``bind(("127.0.0.1", 0))`` hands out a port from the kernel's *ephemeral* range, the same
range it draws the local port of every outgoing connection from. Between the probe
closing its socket and the service binding the port, any connection the machine opens
(to PostgreSQL, to a simulator, another test suite's client) can take it, and the
service then fails to start with "address already in use". Ports below that range are
never handed to outgoing connections, so the only possible rival is another process
binding explicitly; picking at random, and never twice in one run, makes that unlikely.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_LOWEST = 20000
_handed_out: set[int] = set()


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on, outside the ephemeral range."""
    ceiling = _ephemeral_floor() - 1
    if ceiling - _LOWEST < 1000:  # an unusual range: fall back to the kernel's choice
        with socket.socket() as sock:
            sock.bind((host, 0))
            return int(sock.getsockname()[1])
    for _ in range(200):
        port = random.randint(_LOWEST, ceiling)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue  # in use, or lingering in TIME_WAIT: try another
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port found between {_LOWEST} and {ceiling}")
