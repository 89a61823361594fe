"""Service settings, each declared once.

Every setting is one field of :class:`Settings` declared with :func:`setting`: its
default, the environment variable and the flags that set it, the parser that reads
and checks it, its help text and the commands that offer it. The CLI's argparse
options, the environment lookup, ``--help`` and the README's table are all derived
from these declarations (``gophermart.entrypoints.cli``); nothing else repeats a
default or an environment variable's name.

This is also the one module that raises :class:`ConfigError`: the parsers here, and
:func:`refuse` for the checks that can only happen later (a database that does not
answer, a port that is taken), which the composition root and the CLI call with the
setting's name. A leaf of the package: it imports only the domain's error base.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import sys
from collections.abc import Callable
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Final, Literal, NoReturn, TypeVar
from urllib.parse import urlsplit

from gophermart.domain.errors import GophermartError

T = TypeVar("T")


class ConfigError(GophermartError):
    """An unusable setting: printed by the CLI as one line naming it (exit status 2).

    ``setting`` is the environment variable's name (what an operator greps for),
    ``reason`` what is wrong with the value.
    """

    def __init__(self, setting: str, reason: str) -> None:
        super().__init__(f"{setting}: {reason}")
        self.setting = setting
        self.reason = reason


def refuse(setting: str, reason: str) -> NoReturn:
    """Raise the :class:`ConfigError` for ``setting``: checks made outside this module
    (opening the database, binding the port) end here, so there is one source of them."""
    raise ConfigError(setting, reason)


# --- the commands that offer a flag ---------------------------------------------------

SERVE: Final = "serve"  # `gophermart` with no sub-command
WORKER: Final = "worker"
RECONCILE: Final = "reconcile"
MIGRATE: Final = "migrate"
OPERATOR: Final = "operator"  # `gophermart operator add|revoke NAME`
EVERY_COMMAND: Final = (SERVE, WORKER, RECONCILE, MIGRATE, OPERATOR)


@dataclass(frozen=True, slots=True)
class Option:
    """How an operator sets one field of :class:`Settings`."""

    env: str
    parse: Callable[[str, str], Any]
    help: str
    flags: tuple[str, ...] = ()
    commands: tuple[str, ...] = (SERVE,)
    metavar: str | None = None
    #: ``store_false`` / ``store_true`` for a flag that takes no value.
    action: str | None = None
    #: How ``--help`` and the README word the default (else the default's text).
    default_text: str | None = None


def setting(
    default: T,
    env: str,
    parse: Callable[[str, str], T],
    help: str,
    *,
    flags: tuple[str, ...] = (),
    commands: tuple[str, ...] = (SERVE,),
    metavar: str | None = None,
    action: str | None = None,
    default_text: str | None = None,
) -> T:
    """A :class:`Settings` field with its :class:`Option` (see the module docstring)."""
    option = Option(env, parse, help, flags, commands, metavar, action, default_text)
    declared: T = field(default=default, metadata={"option": option})
    return declared


def option_of(f: Field[Any]) -> Option | None:
    option = f.metadata.get("option")
    return option if isinstance(option, Option) else None


def options() -> list[tuple[str, Option, Any]]:
    """Every declared setting: (field name, option, default), in declaration order."""
    found = []
    for f in fields(Settings):
        option = option_of(f)
        if option is not None:
            found.append((f.name, option, f.default if f.default is not MISSING else None))
    return found


# --- parsers: (setting name, raw text) -> value, or ConfigError naming the setting ----


def _text(_name: str, value: str) -> str:
    return value.strip()


def _optional_text(_name: str, value: str) -> str | None:
    return value.strip() or None


def _bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    refuse(name, f"expected 1/0, true/false, got {value!r}")


def whole_number(low: int, high: int) -> Callable[[str, str], int]:
    def parse(name: str, value: str) -> int:
        try:
            number = int(value.strip())
        except ValueError:
            refuse(name, f"expected a whole number, got {value!r}")
        if not low <= number <= high:
            refuse(name, f"must be between {low} and {high}, got {number}")
        return number

    return parse


def seconds(low: float, high: float) -> Callable[[str, str], float]:
    def parse(name: str, value: str) -> float:
        try:
            number = float(value.strip())
        except ValueError:
            refuse(name, f"expected a number of seconds, got {value!r}")
        if not low <= number <= high:  # also refuses nan
            refuse(name, f"must be between {low:g} and {high:g} seconds, got {value}")
        return number

    return parse


def _duration(name: str, value: str) -> timedelta:
    return timedelta(seconds=whole_number(60, 10**8)(name, value))


def parse_listen_address(value: str, name: str = "RUN_ADDRESS") -> tuple[str, int]:
    """``host:port``, ``:port`` (all interfaces) or ``http://host:port``."""
    raw = value.strip()
    if not raw:
        refuse(name, "empty value")
    if "://" in raw:
        parts = urlsplit(raw)
        if parts.scheme not in ("http", "https") or parts.path not in ("", "/"):
            refuse(name, f"expected host:port or http://host:port, got {value!r}")
        raw = parts.netloc
    host, sep, port_text = raw.rpartition(":")
    if not sep or not port_text.isdigit():
        refuse(name, f"expected host:port, :port or http://host:port, got {value!r}")
    port = int(port_text)
    if not 0 <= port <= 65535:
        refuse(name, f"port {port} is out of range")
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104 - ":port" means all interfaces
    return host, port


def _listen_address(name: str, value: str) -> str:
    parse_listen_address(value, name)
    return value.strip()


def _accrual_address(name: str, value: str) -> str | None:
    raw = value.strip().rstrip("/")
    if not raw:
        return None
    if "://" not in raw:
        raw = "http://" + raw
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        refuse(name, f"expected http://host:port, got {value!r}")
    try:
        _ = parts.port
    except ValueError:
        refuse(name, f"bad port in {value!r}")
    return raw


def _trusted_proxies(name: str, value: str) -> tuple[str, ...]:
    """A comma-separated list of IP addresses and CIDR networks, or ``*`` (any peer)."""
    entries = tuple(item.strip() for item in value.split(",") if item.strip())
    if entries == ("*",):
        return entries
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            refuse(name, f"{entry!r} is not an IP address or network")
    return entries


def _secret(name: str, value: str) -> str | None:
    if not value:
        return None
    if len(value) < 32:
        refuse(name, "must be at least 32 characters")
    return value


LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS: Final = ("text", "json")


def _log_level(name: str, value: str) -> str:
    level = value.strip().upper()
    if level not in LOG_LEVELS:
        refuse(name, f"unknown level {level!r}")
    return level


def _log_format(name: str, value: str) -> str:
    fmt = value.strip().lower()
    if fmt not in LOG_FORMATS:
        refuse(name, f"expected text or json, got {fmt!r}")
    return fmt


# --- the database ---------------------------------------------------------------------

#: A PostgreSQL schema name we accept: lower-case, unquoted, not one of PostgreSQL's own.
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def _schema_name(name: str, value: str) -> str | None:
    schema = value.strip()
    if not schema:
        return None
    if not _SCHEMA_NAME.fullmatch(schema) or schema.startswith("pg_"):
        refuse(name, f"expected a lower-case schema name (a-z, 0-9, _; not pg_*), got {value!r}")
    if schema == "information_schema":
        refuse(name, "information_schema is PostgreSQL's own")
    return schema


Backend = Literal["memory", "sqlite", "postgresql"]

#: The database URI of the in-memory backend (nothing is kept after the process ends).
MEMORY_URI: Final = "memory://"
DEFAULT_DATABASE_URI: Final = "sqlite:///gophermart.db"


@dataclass(frozen=True, slots=True)
class DatabaseTarget:
    """``DATABASE_URI``, parsed once: which store, and where."""

    kind: Backend
    #: PostgreSQL: the libpq URI as given (asyncpg reads its query parameters);
    #: SQLite: the file's path; memory: empty.
    location: str = ""

    @classmethod
    def parse(cls, uri: str, name: str = "DATABASE_URI") -> DatabaseTarget:
        uri = uri.strip()
        if not uri:
            refuse(name, "empty value")
        if uri.lower().startswith("memory:"):
            return cls("memory")
        scheme, sep, rest = uri.partition("://")
        if not sep:
            refuse(name, "not a URI; expected postgres://, postgresql:// or sqlite:///PATH")
        scheme = scheme.lower()
        if scheme in ("postgres", "postgresql", "postgresql+asyncpg"):
            location = uri if scheme != "postgresql+asyncpg" else "postgresql://" + rest
            try:
                _ = urlsplit(location).port  # raises ValueError on a non-numeric port
            except ValueError as exc:
                refuse(name, f"malformed PostgreSQL URI ({exc})")
            return cls("postgresql", location)
        if scheme in ("sqlite", "sqlite+aiosqlite"):
            return cls("sqlite", _sqlite_path(rest, name))
        refuse(name, f"unsupported scheme {scheme!r}; use postgres://, postgresql:// or sqlite:///")

    @property
    def display(self) -> str:
        """The target without credentials, for logs and error messages."""
        if self.kind != "postgresql":
            return f"sqlite:///{self.location}" if self.kind == "sqlite" else MEMORY_URI
        parts = urlsplit(self.location)
        host = parts.hostname or "localhost"
        port = f":{parts.port}" if parts.port else ""
        return f"postgresql://{host}{port}{parts.path}"


def _sqlite_path(rest: str, name: str) -> str:
    if not rest.startswith("/"):
        refuse(name, "SQLite URIs look like sqlite:///relative.db or sqlite:////absolute/path.db")
    path = rest[1:].split("?", 1)[0]
    if not path or path == ":memory:":
        refuse(name, "in-memory SQLite would lose all data; name a file (or use memory://)")
    parent = Path(path).expanduser().resolve().parent
    if not parent.is_dir():
        refuse(name, f"directory {parent} does not exist")
    return path


# --- the settings -----------------------------------------------------------------------

_ALL = EVERY_COMMAND
_ACCRUAL = (SERVE, WORKER)
_DEFAULT_DATABASE = DatabaseTarget.parse(DEFAULT_DATABASE_URI)
_DAY = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The HTTP server's bounds on each client connection (part of :class:`Settings`,
    declared apart: they are one concern, read by the server's protocol only)."""

    header_timeout: float = setting(
        10.0,
        "GOPHERMART_HEADER_TIMEOUT",
        seconds(0.5, 600),
        "seconds a request's line and headers may take (0.5-600): the first request's from "
        "the connection's start, a later one's from its first byte; then 408 and close",
        commands=_ACCRUAL,
    )
    idle_timeout: float = setting(
        75.0,
        "GOPHERMART_IDLE_TIMEOUT",
        seconds(1, 3600),
        "seconds a connection may idle between requests, or a request body stall (1-3600); "
        "keep it above a proxy's keep-alive (nginx's upstream default: 60)",
        commands=_ACCRUAL,
    )
    max_header_bytes: int = setting(
        32 * 1024,
        "GOPHERMART_MAX_HEADER_BYTES",
        whole_number(1024, 1 << 20),
        "most bytes of a request's line and headers (1024-1048576); more is 431 and close",
        commands=_ACCRUAL,
    )
    max_connections: int | None = setting(
        None,
        "GOPHERMART_MAX_CONNECTIONS",
        whole_number(1, 1 << 20),
        "client connections per server process: past it the longest-idle are closed, or, "
        "all busy, a new client gets 503 with Retry-After",
        commands=_ACCRUAL,
        default_text="the open-file limit (ulimit -n) less 128",
    )
    metrics_address: str | None = setting(
        None,
        "GOPHERMART_METRICS_ADDRESS",
        _listen_address,
        "serve /metrics (summed over the -w processes) on host:port, not the API's address",
        default_text="none: /metrics is on the API's address",
    )


@dataclass(frozen=True, slots=True)
class WebhookLimits(ConnectionLimits):
    """How the webhook delivery worker retries and bounds each endpoint (part of
    :class:`Settings`, declared apart: one concern, read by the composition root)."""

    webhook_retry_for: float = setting(
        86400.0,
        "GOPHERMART_WEBHOOK_RETRY_FOR",
        seconds(1, 30 * 86400),
        "seconds a webhook delivery is retried from its first attempt (1-2592000); then "
        "it is failed, listed and replayable",
        commands=_ACCRUAL,
    )
    webhook_timeout: float = setting(
        10.0,
        "GOPHERMART_WEBHOOK_TIMEOUT",
        seconds(0.1, 300),
        "seconds one webhook POST may take, answer included (0.1-300); a claimed "
        "delivery's lease is this + 5 s, which is also what a crash costs",
        commands=_ACCRUAL,
    )
    webhook_concurrency: int = setting(
        16,
        "GOPHERMART_WEBHOOK_CONCURRENCY",
        whole_number(1, 1024),
        "webhook POSTs in flight per endpoint and process",
        commands=_ACCRUAL,
    )
    webhook_backoff: float = setting(
        1.0,
        "GOPHERMART_WEBHOOK_BACKOFF",
        seconds(0.01, 3600),
        "seconds: a failed webhook delivery is retried after a random wait under this "
        "doubled per failure (full jitter), up to GOPHERMART_WEBHOOK_BACKOFF_CAP",
        commands=_ACCRUAL,
    )
    webhook_backoff_cap: float = setting(
        600.0,
        "GOPHERMART_WEBHOOK_BACKOFF_CAP",
        seconds(0.01, 86400),
        "seconds: the longest wait between two attempts of a webhook delivery",
        commands=_ACCRUAL,
    )

    def __post_init__(self) -> None:
        if self.webhook_backoff > self.webhook_backoff_cap:
            refuse(
                "GOPHERMART_WEBHOOK_BACKOFF",
                f"must not exceed GOPHERMART_WEBHOOK_BACKOFF_CAP ({self.webhook_backoff_cap:g})",
            )


@dataclass(frozen=True, slots=True)
class Settings(WebhookLimits):
    """What an operator can set (each field declared once, see the module docstring),
    and the two values settled at start by the composition root."""

    run_address: str = setting(
        "localhost:8080",
        "RUN_ADDRESS",
        _listen_address,
        "listen address: host:port, :port (all interfaces) or http://host:port",
        flags=("-a", "--address"),
        metavar="HOST:PORT",
    )
    database: DatabaseTarget = setting(
        _DEFAULT_DATABASE,
        "DATABASE_URI",
        lambda name, value: DatabaseTarget.parse(value, name),
        "database: postgres://user:pass@host:5432/db?sslmode=disable (libpq parameters "
        "work), sqlite:///relative.db, sqlite:////abs/path.db or memory://",
        flags=("-d", "--database-uri"),
        commands=_ALL,
        metavar="URI",
    )
    accrual_address: str | None = setting(
        None,
        "ACCRUAL_SYSTEM_ADDRESS",
        _accrual_address,
        "accrual system base URL, e.g. http://localhost:8081",
        flags=("-r", "--accrual-address"),
        commands=_ACCRUAL,
        metavar="URL",
        default_text="none: orders are accepted and stay NEW until it is set",
    )
    workers: int = setting(
        1,
        "GOPHERMART_WORKERS",
        whole_number(1, 64),
        "server processes sharing the port",
        flags=("-w", "--workers"),
        metavar="N",
    )
    run_worker: bool = setting(
        True,
        "GOPHERMART_RUN_WORKER",
        _bool,
        "run the accrual worker inside the server (--no-worker: run `gophermart worker` instead)",
        flags=("--no-worker",),
        action="store_false",
    )
    accrual_concurrency: int = setting(
        16,
        "GOPHERMART_ACCRUAL_CONCURRENCY",
        whole_number(1, 1024),
        "accrual requests in flight per process",
        flags=("--accrual-concurrency",),
        commands=_ACCRUAL,
        metavar="N",
    )
    accrual_timeout: float = setting(
        5.0,
        "GOPHERMART_ACCRUAL_TIMEOUT",
        seconds(0.5, 300),
        "seconds one poll of the accrual system may take, body included (0.5-300); a "
        "claimed order's lease is this + 5 s, which is also what a crash costs",
        flags=("--accrual-timeout",),
        commands=_ACCRUAL,
        metavar="SECONDS",
    )
    secret: str | None = setting(
        None,
        "GOPHERMART_SECRET",
        _secret,
        "token signing key (at least 32 characters)",
        default_text="generated once and kept in the database",
    )
    token_ttl: timedelta = setting(
        _DAY,
        "GOPHERMART_TOKEN_TTL",
        _duration,
        "token lifetime, seconds",
    )
    events_retention: timedelta = setting(
        timedelta(days=7),
        "GOPHERMART_EVENTS_RETENTION",
        _duration,
        "seconds events are kept in the feed before the worker prunes them",
        commands=_ACCRUAL,
    )
    cookie_secure: bool = setting(
        False,
        "GOPHERMART_COOKIE_SECURE",
        _bool,
        "mark the cookie Secure (behind HTTPS)",
    )
    #: None by default: the client is the TCP peer, so a client cannot pick its own
    #: address to dodge the login throttle's per-address counters.
    trusted_proxies: tuple[str, ...] = setting(
        (),
        "GOPHERMART_TRUSTED_PROXIES",
        _trusted_proxies,
        "reverse proxies whose X-Forwarded-For names the client: comma-separated IPs or "
        "CIDR networks, or *",
        default_text="none: the client is the TCP peer",
    )
    log_level: str = setting(
        "INFO",
        "GOPHERMART_LOG_LEVEL",
        _log_level,
        "log level: DEBUG, INFO, WARNING or ERROR",
        flags=("--log-level",),
        commands=_ALL,
        metavar="LEVEL",
    )
    db_timeout: float = setting(
        5.0,
        "GOPHERMART_DB_TIMEOUT",
        seconds(0.1, 600),
        "seconds a request may wait for the database before it is answered 503 (0.1-600)",
        flags=("--db-timeout",),
        commands=_ALL,
        metavar="SECONDS",
    )
    log_format: str = setting(
        "text",
        "GOPHERMART_LOG_FORMAT",
        _log_format,
        "log format: text (readable key=value lines) or json (one object per line)",
        flags=("--log-format",),
        commands=_ALL,
        metavar="FORMAT",
    )
    access_log: bool = setting(
        False,
        "GOPHERMART_ACCESS_LOG",
        _bool,
        "one access line per request at INFO (method, route, status, duration, request "
        "id); off, they are DEBUG-level",
    )
    metrics: bool = setting(
        True,
        "GOPHERMART_METRICS",
        _bool,
        "Prometheus metrics at /metrics, summed over the -w processes (0 turns them off)",
    )
    worker_address: str | None = setting(
        None,
        "GOPHERMART_WORKER_ADDRESS",
        _listen_address,
        "`gophermart worker` only: serve its /livez, /readyz and /metrics on host:port",
        flags=("-a", "--address"),
        commands=(WORKER,),
        metavar="HOST:PORT",
        default_text="none: the worker serves no HTTP",
    )
    db_schema: str | None = setting(
        None,
        "GOPHERMART_DB_SCHEMA",
        _schema_name,
        "PostgreSQL only: keep our tables in this schema (created if absent), beside a "
        "shop's own; every connection we open uses it",
        flags=("--db-schema",),
        commands=_ALL,
        metavar="NAME",
        default_text="none: the connection's own search_path (normally public)",
    )
    migrate: bool = setting(
        True,
        "GOPHERMART_MIGRATE",
        _bool,
        "migrate the database at start (0: migrations are a deployment step, `gophermart "
        "migrate`; a database behind this release is then refused at start, in one line)",
        commands=(SERVE, WORKER),
    )
    #: Settled at start (never set by an operator): the database's random identity,
    #: to which token signing keys are bound.
    database_id: str | None = None

    def __post_init__(self) -> None:
        WebhookLimits.__post_init__(self)
        if self.db_schema is not None and self.database.kind != "postgresql":
            refuse("GOPHERMART_DB_SCHEMA", f"only PostgreSQL has schemas, not {self.database.kind}")

    @classmethod
    def for_database(cls, uri: str, **changes: Any) -> Settings:
        """The defaults on the database ``uri`` (parsed here, once), with ``changes``."""
        return replace(cls(database=DatabaseTarget.parse(uri)), **changes)

    @property
    def backend(self) -> Backend:
        return self.database.kind


def default_text(option: Option, default: Any) -> str:
    """How ``--help`` and the docs word a setting's default."""
    if option.default_text is not None:
        return option.default_text
    if isinstance(default, DatabaseTarget):
        return default.display
    if isinstance(default, bool):
        return "on" if default else "off"
    if isinstance(default, timedelta):
        return str(int(default.total_seconds()))
    if isinstance(default, float):
        return f"{default:g}"
    return "none" if default in (None, ()) else str(default)


def resolve(flags: dict[str, Any], env: dict[str, str]) -> Settings:
    """Settings from the command line's values (``flags``, by field name; a value given
    as text is parsed like its environment variable), then the environment, then the
    defaults: flags win over the environment, which wins over the defaults."""
    changes: dict[str, Any] = {}
    for name, option, _default in options():
        raw = flags.get(name)
        if raw is None:
            raw = env.get(option.env)
        if raw is None:
            continue
        changes[name] = raw if not isinstance(raw, str) else option.parse(option.env, raw)
    return replace(Settings(), **changes)


def configure_logging(level: str) -> None:
    """Plain stdlib logging, for a host or a script that wants no more; the ``gophermart``
    command renders through structlog instead (``gophermart.entrypoints.logs``)."""
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    for chatty in ("alembic", "httpx", "httpcore"):  # narrate every step at INFO
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLevelName(level)))
