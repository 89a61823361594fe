"""Structured logs: structlog renders every line, ours and our libraries' alike.

The code logs through the standard library (``logging.getLogger(...)``, ``extra={...}``
for fields), which keeps the core free of logging frameworks; structlog's
``ProcessorFormatter`` sits on the root handler and turns each record into one line:
readable ``key=value`` text by default, one JSON object per line with
``GOPHERMART_LOG_FORMAT=json``. Every line logged while a request is served carries its
``request_id`` (set by :mod:`gophermart.entrypoints.observe`).

No secrets in logs: a last processor drops fields named like credentials and masks
anything shaped like a JWT, whatever the message (defence in depth: nothing is meant to
log them in the first place).
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
import structlog
from structlog.types import EventDict, Processor, WrappedLogger

from gophermart.settings import LOG_FORMATS

#: The id of the request being served in this task (``None`` outside requests).
REQUEST_ID: ContextVar[str | None] = ContextVar("gophermart_request_id", default=None)

_SECRET_KEYS: Final = re.compile(r"pass|token|secret|authori|cookie|jwt", re.IGNORECASE)
_JWT: Final = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}")
_BEARER: Final = re.compile(r"(?i)(bearer\s+)[^\s'\"]+")
REDACTED: Final = "[redacted]"


_JWT_BYTES: Final = re.compile(_JWT.pattern.encode())


def looks_like_credential(raw: bytes) -> bool:
    """Whether a value a client chose (a request id) is shaped like a credential: a JWT
    anywhere in it, or the word "bearer". Such a value is never written into a log line."""
    return (b"eyJ" in raw and _JWT_BYTES.search(raw) is not None) or b"bearer" in raw.lower()


def _drop_noise(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    event.pop("color_message", None)  # uvicorn's ANSI-coloured copy of the message
    return event


def _add_request_id(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    request_id = REQUEST_ID.get()
    if request_id is not None and "request_id" not in event:
        event["request_id"] = request_id
    return event


def _scrub(text: str) -> str:
    if "eyJ" in text:
        text = _JWT.sub(REDACTED, text)
    if "earer" in text:
        text = _BEARER.sub(r"\1" + REDACTED, text)
    return text


def redact(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """Drop credentials from a log line: values of fields named like them, and tokens
    wherever they appear in text (the message, an exception, another field)."""
    for key, value in event.items():
        if key != "event" and _SECRET_KEYS.search(key):
            event[key] = REDACTED
        elif isinstance(value, str):
            event[key] = _scrub(value)
    return event


def _shared() -> list[Processor]:
    return [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
        _drop_noise,
        _add_request_id,
    ]


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """One format for every process (the CLI's and each server process uvicorn starts);
    existing ``logging`` calls keep working and get the same rendering."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {LOG_FORMATS}, got {fmt!r}")
    shared = _shared()
    final: list[Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if fmt == "json":
        final += [
            structlog.processors.format_exc_info,
            redact,
            structlog.processors.JSONRenderer(),
        ]
    else:
        final += [
            structlog.processors.format_exc_info,
            redact,
            structlog.dev.ConsoleRenderer(colors=False, pad_event_to=0, pad_level=False),
        ]
    formatter = structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=final)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    global _access_writer, _access_handler
    flush_access_lines()
    _access_writer = _fast_access_writer(handler, fmt)
    _access_handler = handler
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for chatty in ("alembic", "httpx", "httpcore"):  # narrate every step at INFO
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    for name in ("uvicorn", "uvicorn.error"):  # through our handler
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    # uvicorn's access lines duplicate ours (entrypoints/observe.py), without the route
    uvicorn_access = logging.getLogger("uvicorn.access")
    uvicorn_access.handlers.clear()
    uvicorn_access.propagate = False
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


# --- the access line's fast path ---------------------------------------------------
#
# One line per request is the one log call on the hot path. Through the generic chain
# (a LogRecord, the processors, ConsoleRenderer) it costs 20-30 us, an eighth of what a
# whole GET /api/user/balance costs the server (docs/operations.md); rendered directly
# into the same handler's stream, with the same fields and layout, it costs a few. Its
# fields are ours and known (no credential can be among them); the path is scrubbed.
# Lines are written in batches, at most 0.1 s late (measured: a write per line cost the
# server 8-16 us per request; a batch per event-loop iteration still ~8).

AccessWriter = Callable[[str, str, str, int, float, str], None]
_access_writer: AccessWriter | None = None
_access_handler: logging.StreamHandler | None = None  # type: ignore[type-arg]
_ACCESS: Final = "gophermart.access"
access_logger = logging.getLogger(_ACCESS)


_second: list[Any] = [-1, ""]  # the last whole second seen, and its rendering


def _now() -> str:
    """Now as structlog's TimeStamper(fmt="iso", utc=True) writes it, at a quarter of
    the cost: the date and time are rendered once per second."""
    now = time.time()
    second = int(now)
    if second != _second[0]:
        _second[0] = second
        _second[1] = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{_second[1]}.{int((now - second) * 1_000_000):06d}Z"


def _fast_access_writer(handler: logging.StreamHandler, fmt: str) -> AccessWriter:  # type: ignore[type-arg]
    encode = msgspec.json.encode

    def write_json(method: str, route: str, path: str, status: int, ms: float, level: str) -> None:
        line = encode(
            {
                "event": f"{method} {route} {status} {ms:.1f}ms",
                "method": method,
                "route": route,
                "path": _scrub(path),
                "status": status,
                "duration_ms": round(ms, 3),
                "request_id": REQUEST_ID.get(),
                "level": level,
                "logger": _ACCESS,
                "timestamp": _now(),
            }
        )
        _emit(handler, line.decode() + "\n")

    def write_text(method: str, route: str, path: str, status: int, ms: float, level: str) -> None:
        shown = _scrub(path)
        if not shown.isprintable() or " " in shown:
            shown = encode(shown).decode()
        _emit(
            handler,
            f"{_now()} [{level}] {method} {route} {status} {ms:.1f}ms [{_ACCESS}] "
            f"duration_ms={round(ms, 3)} method={method} path={shown} "
            f"request_id={REQUEST_ID.get()} route={route} status={status}\n",
        )

    return write_json if fmt == "json" else write_text


#: Access lines are written in batches: at most this many, at most this late.
ACCESS_FLUSH_LINES: Final = 256
ACCESS_FLUSH_SECONDS: Final = 0.1
_pending: list[str] = []
_flush_scheduled = False


def _emit(handler: logging.StreamHandler, line: str) -> None:  # type: ignore[type-arg]
    """Queue the line; queued lines go out in one write when ``ACCESS_FLUSH_LINES``
    gather or ``ACCESS_FLUSH_SECONDS`` pass, whichever comes first (nginx's access_log
    ``buffer=``/``flush=``): a write per line cost the server 8-16 us per request."""
    global _flush_scheduled
    _pending.append(line)
    if len(_pending) >= ACCESS_FLUSH_LINES:
        _flush(handler)
        return
    if _flush_scheduled:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not in a loop: write now
        _flush(handler)
        return
    _flush_scheduled = True
    loop.call_later(ACCESS_FLUSH_SECONDS, _flush, handler)


def _flush(handler: logging.StreamHandler) -> None:  # type: ignore[type-arg]
    global _flush_scheduled
    _flush_scheduled = False
    if not _pending:
        return
    text = "".join(_pending)
    _pending.clear()
    with handler.lock:  # type: ignore[union-attr]
        handler.stream.write(text)


def flush_access_lines() -> None:
    """Write queued access lines now (at shutdown; tests)."""
    if _access_handler is not None:
        _flush(_access_handler)


def access_line(
    method: str, route: str, path: str, status: int, ms: float, level: int = logging.INFO
) -> None:
    """Log one request on ``gophermart.access`` at ``level`` (if that level is enabled)."""
    if not access_logger.isEnabledFor(level):
        return
    writer = _access_writer
    if writer is not None:
        writer(method, route, path, status, ms, "info" if level == logging.INFO else "debug")
        return
    access_logger.log(  # logging configured by someone else: the generic way
        level,
        "%s %s %d %.1fms",
        method,
        route,
        status,
        ms,
        extra={
            "method": method,
            "route": route,
            "path": _scrub(path),
            "status": status,
            "duration_ms": round(ms, 3),
        },
    )
