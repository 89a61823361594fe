"""The optional extras (pyproject.toml's ``optional-dependencies``) and what they bring.

``pip install gophermart`` is the library on SQLite or in memory; the PostgreSQL driver
and the HTTP server's stack are extras, so a host embedding the library gets no web
server it does not run. Code that needs an extra imports it where it is used, and a
missing one is reported as one line naming the extra (:func:`needs_extra`), by the
composition root (PostgreSQL), ``gophermart.http_router`` & co. and the CLI.
"""

from __future__ import annotations

from typing import Final

#: The top-level modules each extra installs, by the name ``import`` uses. An extra's
#: own extras are listed too (``server`` includes ``http`` and ``postgres``); a unit
#: test holds this table to pyproject.toml.
MODULES: Final[dict[str, tuple[str, ...]]] = {
    "postgres": ("asyncpg",),
    "http": ("litestar",),
    "server": (
        "asyncpg",
        "litestar",
        "uvicorn",
        "uvloop",
        "httptools",
        "swagger_ui",
        "prometheus_client",
        "structlog",
    ),
}


def needs_extra(what: str, extra: str) -> str:
    """The one line that says which extra to install: ``PostgreSQL needs the postgres
    extra: pip install 'gophermart[postgres]'``."""
    return f"{what} needs the {extra} extra: pip install 'gophermart[{extra}]'"


def is_from(extra: str, exc: ModuleNotFoundError) -> bool:
    """Whether ``exc`` is about a module that ``extra`` would have installed."""
    return (exc.name or "").partition(".")[0] in MODULES[extra]
