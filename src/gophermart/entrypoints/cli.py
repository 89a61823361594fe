"""The ``gophermart`` command.

    gophermart [-a ADDR] [-d URI] [-r URL] ...   serve the API (and the accrual worker)
    gophermart worker [...]                        run only the accrual worker
    gophermart reconcile [-d URI]                  check balances against the ledger
    gophermart migrate [-d URI] [--sql]            migrate the schema (or print its SQL)
    gophermart operator add|revoke NAME [-d URI]   make (printing it) or revoke an operator key
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
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from gophermart import __version__
from gophermart.domain.errors import GophermartError
from gophermart.extras import is_from, needs_extra
from gophermart.settings import (
    MIGRATE,
    OPERATOR,
    RECONCILE,
    SERVE,
    WORKER,
    ConfigError,
    Settings,
    default_text,
    options,
    parse_listen_address,
    refuse,
    resolve,
)

log = logging.getLogger("gophermart")

#: The sub-commands and what each does (``accrual-sim`` parses its own flags).
COMMANDS = {
    WORKER: "run only the accrual worker (scale-out)",
    RECONCILE: "check every balance against the ledger; non-zero exit on mismatch",
    MIGRATE: "bring the database's schema to this release's (what a start does unless "
    "GOPHERMART_MIGRATE=0); --sql prints the SQL instead",
    OPERATOR: "make or revoke an operator's key, which opens /api/admin/",
}
#: What ``gophermart operator`` does with a NAME.
OPERATOR_ACTIONS = {
    "add": "make an operator and its key, printed alone on the last line, once (only its "
    "hash is kept)",
    "revoke": "revoke an operator's key: it opens nothing from then on",
}


def _add_flags(parser: argparse.ArgumentParser, command: str, *, top: bool) -> None:
    """Every setting whose declaration offers a flag to ``command`` (settings.py).

    Sub-commands repeat the common flags with SUPPRESS defaults, so `gophermart -d X
    worker` and `gophermart worker -d X` both work and neither clobbers the other.
    """
    for name, option, default in options():
        if not option.flags or command not in option.commands:
            continue
        help_text = f"{option.help} [env {option.env}; default {default_text(option, default)}]"
        kwargs: dict[str, Any] = {
            "dest": name,
            "default": None if top else argparse.SUPPRESS,
            "help": help_text,
        }
        if option.action is not None:
            kwargs["action"] = option.action
        else:
            kwargs["metavar"] = option.metavar
        parser.add_argument(*option.flags, **kwargs)


def _environment_only() -> str:
    """The epilog: the settings with no flag here, by their environment variable (so
    ``--help`` names every setting)."""
    lines = [
        f"{option.env} ({option.help}; default {default_text(option, default)})"
        for _name, option, default in options()
        if not option.flags or SERVE not in option.commands
    ]
    return "Also, from the environment: " + "; ".join(lines) + "."


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gophermart",
        description="Gophermart loyalty-points service. Without a sub-command it serves the "
        "HTTP API and, in the same process, the accrual worker.",
        epilog=_environment_only(),
    )
    _add_flags(parser, SERVE, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command, help_text in COMMANDS.items():
        _add_flags(sub.add_parser(command, help=help_text), command, top=False)
    sub.choices[MIGRATE].add_argument(
        "--sql",
        action="store_true",
        help="print the SQL that migrating an empty database runs, for a DBA; connect to nothing",
    )
    actions = sub.choices[OPERATOR].add_subparsers(
        dest="operator_action", metavar="ACTION", required=True
    )
    for action, help_text in OPERATOR_ACTIONS.items():
        parser_of_action = actions.add_parser(action, help=help_text)
        parser_of_action.add_argument(
            "operator_name", metavar="NAME", help="the operator's name: 1-64 printable characters"
        )
        _add_flags(parser_of_action, OPERATOR, top=False)
    sub.add_parser("accrual-sim", help="run the accrual system simulator", add_help=False)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def resolve_settings(args: argparse.Namespace, env: dict[str, str]) -> Settings:
    """Flags win over environment variables, which win over defaults (settings.py)."""
    return resolve(vars(args), env)


def listening_socket(host: str, port: int, name: str = "RUN_ADDRESS") -> socket.socket:
    """A socket bound to ``host:port`` and listening (non-blocking), made before anything
    else starts: an address that cannot be used is one line naming ``name``."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        refuse(name, f"cannot resolve {host!r}: {exc.strerror}")
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        refuse(name, f"cannot listen on {host}:{port}: {exc.strerror}")
    sock.setblocking(False)
    return sock


def _sockets(settings: Settings) -> tuple[list[socket.socket], Settings]:
    """The API's listening socket and, with ``GOPHERMART_METRICS_ADDRESS``, the metrics'
    (bound here, before anything starts: an unusable address is one line; uvicorn's
    processes inherit them). The settings say which port the metrics got."""
    host, port = parse_listen_address(settings.run_address)
    sockets = [listening_socket(host, port)]
    if settings.metrics and settings.metrics_address is not None:
        name = "GOPHERMART_METRICS_ADDRESS"
        metrics_host, metrics_port = parse_listen_address(settings.metrics_address, name)
        if metrics_port == port:  # requests are told apart by the port they came to
            refuse(name, f"port {port} is RUN_ADDRESS's; give the metrics a port of their own")
        sockets.append(listening_socket(metrics_host, metrics_port, name))
        bound = sockets[-1].getsockname()[1]
        settings = replace(settings, metrics_address=f"{metrics_host}:{bound}")
    for sock in sockets:
        sock.set_inheritable(True)
    return sockets, settings


def _uvicorn_config(settings: Settings) -> Any:
    import uvicorn

    from gophermart.entrypoints.connections import ConnectionLimits

    return uvicorn.Config(
        "gophermart.entrypoints.asgi:create",
        factory=True,
        workers=settings.workers,
        loop="uvloop",
        # httptools, with a response's head and body in one write (serving.py), and
        # bounded work per client: timeouts, header size, connections (connections.py)
        **ConnectionLimits.of(settings).uvicorn_options(),
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


def serve(settings: Settings) -> int:
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from gophermart.bootstrap import prepare
    from gophermart.entrypoints.asgi import export_settings
    from gophermart.entrypoints.metrics import multiprocess_dir
    from gophermart.entrypoints.serving import clean_exit_on_stop_signals

    sockets, settings = _sockets(settings)
    settings = asyncio.run(prepare(settings))
    export_settings(settings)
    host, port = sockets[0].getsockname()[:2]
    log.info("serving on http://%s:%d with %d process(es)", host, port, settings.workers)
    if len(sockets) > 1:
        log.info("metrics on http://%s/metrics", settings.metrics_address)
    config = _uvicorn_config(settings)
    # Metrics of all server processes meet in one fresh directory, removed at exit.
    metrics_dir = multiprocess_dir() if settings.metrics else contextlib.nullcontext()
    with metrics_dir, clean_exit_on_stop_signals():
        # uvicorn.run's own two ways, on the sockets bound above (it binds only one).
        if config.workers > 1:
            Multiprocess(config, sockets=sockets).run()
            return 0
        server = uvicorn.Server(config)
        server.run(sockets=sockets)
    return 0 if server.started else 3  # uvicorn's STARTUP_FAILURE


def run_worker(settings: Settings) -> int:
    from gophermart.entrypoints.worker import run

    listening = None
    if settings.worker_address is not None:
        name = "GOPHERMART_WORKER_ADDRESS"
        listening = listening_socket(*parse_listen_address(settings.worker_address, name), name)
    return run(settings, listening)


def run_migrate(settings: Settings, sql: bool) -> int:
    from gophermart.bootstrap import migration_sql
    from gophermart.facade import Gophermart

    if sql:
        print(migration_sql(settings), end="")
        return 0

    async def migrated() -> str:
        async with Gophermart.from_settings(replace(settings, migrate=True)) as loyalty:
            return str(await loyalty.schema())

    print(f"{settings.database.display}: {asyncio.run(migrated())}")
    return 0


def run_operator(settings: Settings, action: str, name: str) -> int:
    """``operator add NAME``: the key alone on the last line of stdout (only its hash is
    kept); ``operator revoke NAME``. A name taken, unknown or malformed is one line on
    stderr and exit status 1. The database is not migrated here (as for reconcile)."""
    from gophermart.facade import Gophermart

    if settings.backend == "memory":
        refuse("DATABASE_URI", "memory:// keeps nothing: an operator's key needs a database")

    async def act() -> str | None:
        async with Gophermart.from_settings(replace(settings, migrate=False)) as loyalty:
            if action == "add":
                return await loyalty.add_operator(name)
            await loyalty.revoke_operator(name)
            return None

    try:
        key = asyncio.run(act())
    except ConfigError:
        raise
    except GophermartError as exc:
        print(f"gophermart: {exc}", file=sys.stderr)
        return 1
    where = settings.database.display
    if key is None:
        print(f"operator {name} revoked on {where}: its key opens nothing from now on")
    else:
        print(
            f"operator {name} added on {where}; its key, shown this once (only its hash is kept):"
        )
        print(key)
    return 0


def run_reconcile(settings: Settings) -> int:
    from gophermart.entrypoints.reconcile import run

    return run(settings)


#: What needs the server extra, by command, for the one line that says so.
_SERVER_PARTS = {
    SERVE: "the HTTP server",
    WORKER: "the accrual worker",
    "accrual-sim": "the accrual simulator",
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _run(argv)
    except ModuleNotFoundError as exc:
        if not is_from("server", exc):
            raise
        command = next((arg for arg in argv if arg in _SERVER_PARTS), SERVE)
        print(f"gophermart: {needs_extra(_SERVER_PARTS[command], 'server')}", file=sys.stderr)
        return 2


def _run(argv: list[str]) -> int:
    if argv[:1] == ["accrual-sim"]:
        from gophermart.entrypoints.accrual_sim import main as sim_main

        return int(sim_main(argv[1:]))
    args = build_parser().parse_args(argv)
    try:
        settings = resolve_settings(args, dict(os.environ))
        _configure_logging(settings)
        if args.command == "worker":
            return run_worker(settings)
        if args.command == "reconcile":
            return run_reconcile(settings)
        if args.command == "migrate":
            return run_migrate(settings, args.sql)
        if args.command == OPERATOR:
            return run_operator(settings, args.operator_action, args.operator_name)
        return serve(settings)
    except ConfigError as exc:
        print(f"gophermart: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


def _configure_logging(settings: Settings) -> None:
    """structlog's lines (entrypoints/logs.py), which come with the server extra; without
    it (a host running `gophermart migrate` beside the library) the standard library's."""
    try:
        from gophermart.entrypoints.logs import configure_logging
    except ModuleNotFoundError as exc:
        if not is_from("server", exc):
            raise
        if settings.log_format != "text":
            refuse("GOPHERMART_LOG_FORMAT", needs_extra(f"{settings.log_format!r}", "server"))
        logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s %(message)s")
        return
    configure_logging(settings.log_level, settings.log_format)
