"""The ``gophermart`` command.

    gophermart [-a ADDR] [-d URI] [-r URL] ...   serve the API (and the accrual worker)
    gophermart worker [...]                        run only the accrual worker
    gophermart reconcile [-d URI]                  check balances against the ledger
    gophermart accrual-sim [...]                   run the accrual system simulator

Every setting comes from a flag, else its environment variable, else a default.
Problems with settings are reported as one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any, TypeVar

from gophermart.entrypoints.logs import LOG_FORMATS, configure_logging
from gophermart.settings import (
    DEFAULT_DATABASE_URI,
    ConfigError,
    Settings,
    parse_accrual_address,
    parse_listen_address,
    parse_trusted_proxies,
)

log = logging.getLogger("gophermart")

T = TypeVar("T")

_ENV = {
    "run_address": "RUN_ADDRESS",
    "database_uri": "DATABASE_URI",
    "accrual_address": "ACCRUAL_SYSTEM_ADDRESS",
    "workers": "GOPHERMART_WORKERS",
    "run_worker": "GOPHERMART_RUN_WORKER",
    "accrual_concurrency": "GOPHERMART_ACCRUAL_CONCURRENCY",
    "accrual_timeout": "GOPHERMART_ACCRUAL_TIMEOUT",
    "token_ttl": "GOPHERMART_TOKEN_TTL",
    "log_level": "GOPHERMART_LOG_LEVEL",
    "cookie_secure": "GOPHERMART_COOKIE_SECURE",
    "secret": "GOPHERMART_SECRET",
    "db_timeout": "GOPHERMART_DB_TIMEOUT",
    "trusted_proxies": "GOPHERMART_TRUSTED_PROXIES",
    "metrics": "GOPHERMART_METRICS",
    "log_format": "GOPHERMART_LOG_FORMAT",
    "access_log": "GOPHERMART_ACCESS_LOG",
    "worker_address": "GOPHERMART_WORKER_ADDRESS",
}


def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # Sub-commands repeat the flags with SUPPRESS defaults, so `gophermart -d X worker`
    # and `gophermart worker -d X` both work and neither clobbers the other.
    d = None if top else argparse.SUPPRESS
    parser.add_argument(
        "-d",
        "--database-uri",
        dest="database_uri",
        default=d,
        metavar="URI",
        help="database: postgres://user:pass@host:5432/db?sslmode=disable, "
        f"sqlite:///relative.db or sqlite:////abs/path.db [env DATABASE_URI; "
        f"default {DEFAULT_DATABASE_URI}]",
    )
    parser.add_argument(
        "-r",
        "--accrual-address",
        dest="accrual_address",
        default=d,
        metavar="URL",
        help="accrual system base URL, e.g. http://localhost:8081 "
        "[env ACCRUAL_SYSTEM_ADDRESS; without it orders stay NEW]",
    )
    parser.add_argument(
        "--accrual-timeout",
        dest="accrual_timeout",
        default=d,
        metavar="SECONDS",
        help="how long one poll of the accrual system may take; a crashed worker's orders "
        "are picked up this + 5 s after their claim [env GOPHERMART_ACCRUAL_TIMEOUT; "
        "default 5]",
    )
    parser.add_argument(
        "--db-timeout",
        dest="db_timeout",
        default=d,
        metavar="SECONDS",
        help="how long a request waits for the database before it is answered 503 "
        "[env GOPHERMART_DB_TIMEOUT; default 5]",
    )
    parser.add_argument(
        "--log-level",
        dest="log_level",
        default=d,
        metavar="LEVEL",
        help="DEBUG, INFO, WARNING or ERROR [env GOPHERMART_LOG_LEVEL; default INFO]",
    )
    parser.add_argument(
        "--log-format",
        dest="log_format",
        default=d,
        choices=LOG_FORMATS,
        help="text (readable key=value lines) or json (one object per line) "
        "[env GOPHERMART_LOG_FORMAT; default text]",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gophermart",
        description="Gophermart loyalty-points service. Without a sub-command it serves the "
        "HTTP API and, in the same process, the accrual worker.",
        epilog="Also: GOPHERMART_SECRET (token signing key, >= 32 chars; default: generated "
        "once and kept in the database), GOPHERMART_TOKEN_TTL (seconds, default 86400), "
        "GOPHERMART_COOKIE_SECURE (1 to mark the cookie Secure behind HTTPS), "
        "GOPHERMART_TRUSTED_PROXIES (comma-separated IPs/CIDRs of reverse proxies whose "
        "X-Forwarded-For names the client; default none: the client is the TCP peer), "
        "GOPHERMART_METRICS (0 turns off Prometheus metrics at /metrics; default 1), "
        "GOPHERMART_ACCESS_LOG (1 logs one line per request at INFO; default 0: at DEBUG), "
        "GOPHERMART_WORKER_ADDRESS (`gophermart worker` only: host:port where it serves "
        "/livez, /readyz and /metrics; default none).",
    )
    _server_flags(parser)
    _common(parser, top=True)
    _subcommands(parser)
    return parser


def _server_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of the HTTP server (no sub-command): address, processes, its worker."""
    parser.add_argument(
        "-a",
        "--address",
        dest="run_address",
        default=None,
        metavar="HOST:PORT",
        help="listen address: host:port, :port (all interfaces) or http://host:port "
        "[env RUN_ADDRESS; default localhost:8080]",
    )
    parser.add_argument(
        "-w",
        "--workers",
        dest="workers",
        type=int,
        default=None,
        metavar="N",
        help="server processes sharing the port [env GOPHERMART_WORKERS; default 1]",
    )
    parser.add_argument(
        "--no-worker",
        dest="run_worker",
        action="store_false",
        default=None,
        help="do not run the accrual worker inside the server (run `gophermart worker` "
        "instead) [env GOPHERMART_RUN_WORKER=0]",
    )
    parser.add_argument(
        "--accrual-concurrency",
        dest="accrual_concurrency",
        type=int,
        default=None,
        metavar="N",
        help="accrual requests in flight per process [env GOPHERMART_ACCRUAL_CONCURRENCY; "
        "default 16]",
    )


def _subcommands(parser: argparse.ArgumentParser) -> None:
    """``worker``, ``reconcile`` and ``accrual-sim``, each with the common flags."""
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    worker = sub.add_parser("worker", help="run only the accrual worker (scale-out)")
    worker.add_argument(
        "-a",
        "--address",
        dest="worker_address",
        default=None,
        metavar="HOST:PORT",
        help="serve /livez, /readyz and /metrics here [env GOPHERMART_WORKER_ADDRESS; "
        "default: no HTTP at all]",
    )
    _common(worker, top=False)
    reconcile = sub.add_parser(
        "reconcile", help="check every balance against the ledger; non-zero exit on mismatch"
    )
    _common(reconcile, top=False)
    sub.add_parser("accrual-sim", help="run the accrual system simulator", add_help=False)


def _bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name}: expected 1/0, true/false, got {value!r}")


def _int(name: str, value: object, low: int, high: int) -> int:
    try:
        number = int(str(value))
    except ValueError:
        raise ConfigError(f"{name}: expected a whole number, got {value!r}") from None
    if not low <= number <= high:
        raise ConfigError(f"{name}: must be between {low} and {high}, got {number}")
    return number


def _seconds(name: str, value: object, low: float, high: float) -> float:
    try:
        number = float(str(value))
    except ValueError:
        raise ConfigError(f"{name}: expected a number of seconds, got {value!r}") from None
    if not low <= number <= high:  # also refuses nan
        raise ConfigError(f"{name}: must be between {low:g} and {high:g} seconds, got {value}")
    return number


def resolve_settings(args: argparse.Namespace, env: dict[str, str]) -> Settings:
    """Flags win over environment variables, which win over defaults."""

    def pick(field: str) -> object | None:
        flag = getattr(args, field, None)
        return flag if flag is not None else env.get(_ENV[field])

    def given(field: str, parse: Callable[[str, Any], T], default: T) -> T:
        """``field``'s flag or env value through ``parse`` (which names the env var in
        its one-line error), else ``default``."""
        value = pick(field)
        return default if value is None else parse(_ENV[field], value)

    s = Settings()
    run_address = str(pick("run_address") or s.run_address)
    parse_listen_address(run_address)
    accrual = pick("accrual_address")
    level = str(pick("log_level") or s.log_level).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(f"GOPHERMART_LOG_LEVEL: unknown level {level!r}")
    secret = env.get(_ENV["secret"]) or None
    if secret is not None and len(secret) < 32:
        raise ConfigError("GOPHERMART_SECRET: must be at least 32 characters")
    proxies = env.get(_ENV["trusted_proxies"])
    log_format = str(pick("log_format") or s.log_format).strip().lower()
    if log_format not in LOG_FORMATS:
        raise ConfigError(f"GOPHERMART_LOG_FORMAT: expected text or json, got {log_format!r}")
    return replace(
        s,
        run_address=run_address,
        database_uri=str(pick("database_uri") or s.database_uri),
        accrual_address=parse_accrual_address(str(accrual)) if accrual else None,
        workers=given("workers", lambda n, v: _int(n, v, 1, 64), 1),
        run_worker=given(
            "run_worker", lambda n, v: v if isinstance(v, bool) else _bool(n, str(v)), True
        ),
        accrual_concurrency=given(
            "accrual_concurrency", lambda n, v: _int(n, v, 1, 1024), s.accrual_concurrency
        ),
        token_ttl=given(
            "token_ttl", lambda n, v: timedelta(seconds=_int(n, v, 60, 10**8)), s.token_ttl
        ),
        log_level=level,
        secret=secret,
        cookie_secure=given("cookie_secure", _bool, False),
        db_timeout=given("db_timeout", lambda n, v: _seconds(n, v, 0.1, 600), s.db_timeout),
        accrual_timeout=given(
            "accrual_timeout", lambda n, v: _seconds(n, v, 0.5, 300), s.accrual_timeout
        ),
        trusted_proxies=parse_trusted_proxies(proxies) if proxies else (),
        log_format=log_format,
        metrics=given("metrics", _bool, s.metrics),
        access_log=given("access_log", _bool, s.access_log),
        worker_address=given("worker_address", _listen_address, None),
    )


def _listen_address(name: str, value: object) -> str:
    parse_listen_address(str(value), name)
    return str(value).strip()


def listening_socket(host: str, port: int, name: str = "RUN_ADDRESS") -> socket.socket:
    """A socket bound to ``host:port`` and listening (non-blocking), made before anything
    else starts: an address that cannot be used is one line naming ``name``."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError(f"{name}: cannot resolve {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"{name}: cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


def serve(settings: Settings) -> int:
    import uvicorn

    from gophermart.bootstrap import prepare
    from gophermart.entrypoints.asgi import export_settings
    from gophermart.entrypoints.metrics import multiprocess_dir
    from gophermart.entrypoints.serving import clean_exit_on_stop_signals

    host, port = parse_listen_address(settings.run_address)
    listening_socket(host, port).close()  # uvicorn binds its own, in each process
    settings = asyncio.run(prepare(settings))
    export_settings(settings)
    log.info("serving on http://%s:%d with %d process(es)", host, port, settings.workers)
    # Metrics of all server processes meet in one fresh directory, removed at exit.
    metrics_dir = multiprocess_dir() if settings.metrics else contextlib.nullcontext()
    with metrics_dir, clean_exit_on_stop_signals():
        uvicorn.run(
            "gophermart.entrypoints.asgi:create",
            factory=True,
            host=host,
            port=port,
            workers=settings.workers if settings.workers > 1 else None,
            loop="uvloop",
            # httptools, with a response's head and body in one write (serving.py)
            http="gophermart.entrypoints.serving:OneWriteHttpToolsProtocol",
            log_level=settings.log_level.lower(),
            log_config=None,  # our handler (entrypoints/logs.py) renders uvicorn's lines too
            access_log=False,  # ours is entrypoints/observe.py's, with the request id
            timeout_graceful_shutdown=15,
            lifespan="on",
            server_header=False,
            # X-Forwarded-For only from configured proxies (uvicorn's default trusts
            # any local peer, which lets a client choose the address it is counted as).
            proxy_headers=bool(settings.trusted_proxies),
            forwarded_allow_ips=list(settings.trusted_proxies) or None,
        )
    return 0


def run_worker(settings: Settings) -> int:
    from gophermart.entrypoints.worker import run

    if not settings.accrual_address:
        raise ConfigError("ACCRUAL_SYSTEM_ADDRESS: the worker needs the accrual system's URL")
    listening = None
    if settings.worker_address is not None:
        name = _ENV["worker_address"]
        listening = listening_socket(*parse_listen_address(settings.worker_address, name), name)
    return run(settings, listening)


def run_reconcile(settings: Settings) -> int:
    from gophermart.entrypoints.reconcile import run

    return run(settings)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["accrual-sim"]:
        from gophermart.entrypoints.accrual_sim import main as sim_main

        return int(sim_main(argv[1:]))
    args = build_parser().parse_args(argv)
    try:
        settings = resolve_settings(args, dict(os.environ))
        configure_logging(settings.log_level, settings.log_format)
        if args.command == "worker":
            return run_worker(settings)
        if args.command == "reconcile":
            return run_reconcile(settings)
        return serve(settings)
    except ConfigError as exc:
        print(f"gophermart: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
