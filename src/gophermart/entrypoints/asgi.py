"""The ASGI factory each server process calls (``uvicorn ...asgi:create --factory``).

The CLI resolves settings once (flags over env over defaults, secret settled) and
hands them to the server processes in one private environment variable.
"""

from __future__ import annotations

import os

import msgspec
from litestar import Litestar

from gophermart.bootstrap import http_app
from gophermart.settings import ConfigError, Settings

RESOLVED_SETTINGS_ENV = "_GOPHERMART_RESOLVED_SETTINGS"


def export_settings(settings: Settings) -> None:
    os.environ[RESOLVED_SETTINGS_ENV] = msgspec.json.encode(settings).decode()


def create() -> Litestar:
    raw = os.environ.get(RESOLVED_SETTINGS_ENV)
    if raw is None:
        raise ConfigError("start the service with the `gophermart` command")
    return http_app(msgspec.json.decode(raw, type=Settings))
