"""Service settings: what an operator can set, with env vars, flags and defaults.

A leaf module (imports nothing of ours) so every layer's edge can raise
:class:`ConfigError`, which the CLI prints as one line.
"""

from __future__ import annotations

import ipaddress
import logging
import sys
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit


class ConfigError(Exception):
    """An unusable setting: printed as one line naming it, then exit status 2."""


DEFAULT_DATABASE_URI = "sqlite:///gophermart.db"


@dataclass(frozen=True, slots=True)
class Settings:
    run_address: str = "localhost:8080"
    database_uri: str = DEFAULT_DATABASE_URI
    accrual_address: str | None = None
    secret: str | None = None
    #: This database's random identity, settled by ``bootstrap.prepare`` (never set by
    #: an operator): tokens are signed with a key bound to it.
    database_id: str | None = None
    token_ttl: timedelta = timedelta(hours=24)
    workers: int = 1
    run_worker: bool = True
    accrual_concurrency: int = 16
    #: Seconds one poll of the accrual system may take, body included; a claimed order's
    #: lease is this plus 5 s, and is what a crashed worker's orders wait.
    accrual_timeout: float = 5.0
    log_level: str = "INFO"
    cookie_secure: bool = False
    #: Seconds a request may wait for the database (connect, pooled connection, each
    #: statement, commit) before it is answered 503 (docs/failure-behaviour.md).
    db_timeout: float = 5.0
    #: Peers whose X-Forwarded-For names the client (IPs or CIDR networks, or "*"). None
    #: by default: the client is the TCP peer, so a client cannot pick its own address
    #: to dodge the login throttle's per-address counters.
    trusted_proxies: tuple[str, ...] = ()
    #: Prometheus metrics at /metrics (GOPHERMART_METRICS=0 turns them off).
    metrics: bool = True
    #: ``text`` (readable key=value lines) or ``json`` (one object per line).
    log_format: str = "text"
    #: One INFO line per request (GOPHERMART_ACCESS_LOG=1); otherwise at DEBUG level.
    access_log: bool = False
    #: ``gophermart worker`` only: where it serves /livez, /readyz and /metrics
    #: (``host:port``). None: it serves no HTTP at all.
    worker_address: str | None = None


def parse_listen_address(value: str, name: str = "RUN_ADDRESS") -> tuple[str, int]:
    """``host:port``, ``:port`` (all interfaces) or ``http://host:port``; errors name
    ``name``, the setting it came from."""
    raw = value.strip()
    if not raw:
        raise ConfigError(f"{name}: empty value")
    if "://" in raw:
        parts = urlsplit(raw)
        if parts.scheme not in ("http", "https") or parts.path not in ("", "/"):
            raise ConfigError(f"{name}: expected host:port or http://host:port, got {value!r}")
        raw = parts.netloc
    host, sep, port_text = raw.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ConfigError(f"{name}: expected host:port, :port or http://host:port, got {value!r}")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ConfigError(f"{name}: port {port} is out of range")
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104 - ":port" means all interfaces
    return host, port


def parse_trusted_proxies(value: str) -> tuple[str, ...]:
    """A comma-separated list of IP addresses and CIDR networks, or ``*`` (any peer)."""
    entries = tuple(item.strip() for item in value.split(",") if item.strip())
    if entries == ("*",):
        return entries
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ConfigError(
                f"GOPHERMART_TRUSTED_PROXIES: {entry!r} is not an IP address or network"
            ) from None
    return entries


def parse_accrual_address(value: str) -> str:
    raw = value.strip().rstrip("/")
    if "://" not in raw:
        raw = "http://" + raw
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"ACCRUAL_SYSTEM_ADDRESS: expected http://host:port, got {value!r}")
    try:
        _ = parts.port
    except ValueError:
        raise ConfigError(f"ACCRUAL_SYSTEM_ADDRESS: bad port in {value!r}") from None
    return raw


def configure_logging(level: str) -> None:
    """Plain stdlib logging, for a host or a script that wants no more; the ``gophermart``
    command renders through structlog instead (``gophermart.entrypoints.logs``)."""
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    for chatty in ("alembic", "httpx", "httpcore"):  # narrate every step at INFO
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLevelName(level)))
