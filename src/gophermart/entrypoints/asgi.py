"""The ASGI factory each server process calls (``uvicorn ...asgi:create --factory``).

The CLI resolves settings once (flags over env over defaults, secret settled) and
hands them to the server processes in one private environment variable.
"""

from __future__ import annotations

import os

import msgspec
from litestar import Litestar

from gophermart.bootstrap import http_app
from gophermart.settings import ConfigError, Settings, configure_logging

RESOLVED_SETTINGS_ENV = "_GOPHERMART_RESOLVED_SETTINGS"


def export_settings(settings: Settings) -> None:
    os.environ[RESOLVED_SETTINGS_ENV] = msgspec.json.encode(settings).decode()


def create() -> Litestar:
    raw = os.environ.get(RESOLVED_SETTINGS_ENV)
    if raw is None:
        raise ConfigError("start the service with the `gophermart` command")
    settings = msgspec.json.decode(raw, type=Settings)
    configure_logging(settings.log_level)
    return http_app(settings)
