"""Turning an operator's ``DATABASE_URI`` into something SQLAlchemy can open.

Operators pass libpq URIs (``postgres://u:p@h/db?sslmode=disable``). SQLAlchemy's
asyncpg dialect does not understand libpq query parameters, but asyncpg's own DSN
parser does, so PostgreSQL connections are opened by asyncpg from the URI exactly as
given (``sslmode``, ``connect_timeout``, ``application_name``... all work).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from gophermart.settings import ConfigError


@dataclass(frozen=True, slots=True)
class DatabaseTarget:
    kind: Literal["sqlite", "postgresql"]
    #: for PostgreSQL: the libpq URI as given; for SQLite: the file path
    location: str

    @property
    def display(self) -> str:
        """The target without credentials, for logs and error messages."""
        if self.kind == "sqlite":
            return f"sqlite:///{self.location}"
        parts = urlsplit(self.location)
        host = parts.hostname or "localhost"
        port = f":{parts.port}" if parts.port else ""
        return f"postgresql://{host}{port}{parts.path}"


def parse_database_uri(uri: str) -> DatabaseTarget:
    uri = uri.strip()
    if not uri:
        raise ConfigError("DATABASE_URI: empty value")
    scheme, sep, rest = uri.partition("://")
    if not sep:
        raise ConfigError(
            "DATABASE_URI: not a URI; expected postgres://, postgresql:// or sqlite:///PATH"
        )
    scheme = scheme.lower()
    if scheme in ("postgres", "postgresql", "postgresql+asyncpg"):
        location = uri if scheme != "postgresql+asyncpg" else "postgresql://" + rest
        try:
            parts = urlsplit(location)
            _ = parts.port  # raises ValueError on a non-numeric port
        except ValueError as exc:
            raise ConfigError(f"DATABASE_URI: malformed PostgreSQL URI ({exc})") from None
        return DatabaseTarget("postgresql", location)
    if scheme in ("sqlite", "sqlite+aiosqlite"):
        if not rest.startswith("/"):
            raise ConfigError(
                "DATABASE_URI: SQLite URIs look like sqlite:///relative.db or "
                "sqlite:////absolute/path.db"
            )
        path = rest[1:].split("?", 1)[0]
        if not path or path == ":memory:":
            raise ConfigError("DATABASE_URI: in-memory SQLite would lose all data; name a file")
        parent = Path(path).expanduser().resolve().parent
        if not parent.is_dir():
            raise ConfigError(f"DATABASE_URI: directory {parent} does not exist")
        return DatabaseTarget("sqlite", path)
    raise ConfigError(
        f"DATABASE_URI: unsupported scheme {scheme!r}; use postgres://, postgresql:// or sqlite:///"
    )
