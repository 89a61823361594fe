"""The log renderer: text or JSON lines, the request id of the request being served, the
order number of worker events, and credentials dropped or masked whatever the call."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from gophermart.entrypoints.logs import REDACTED, REQUEST_ID, configure_logging

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLWhlcmU"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    sink = io.StringIO()
    yield sink
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved_handlers:
        root.addHandler(handler)
    root.setLevel(saved_level)


def _configure(fmt: str, sink: io.StringIO) -> None:
    configure_logging("INFO", fmt)
    logging.getLogger().handlers[0].setStream(sink)  # type: ignore[attr-defined]


def test_json_lines_carry_the_request_id_and_fields(captured: io.StringIO) -> None:
    _configure("json", captured)
    token = REQUEST_ID.set("req-1")
    try:
        logging.getLogger("gophermart.worker").info(
            "order %s is %s", "9278923470", "PROCESSED", extra={"order": "9278923470"}
        )
    finally:
        REQUEST_ID.reset(token)
    logging.getLogger("gophermart").info("outside a request")
    first, second = (json.loads(line) for line in captured.getvalue().splitlines())
    assert first["event"] == "order 9278923470 is PROCESSED"
    assert first["order"] == "9278923470"
    assert first["request_id"] == "req-1"
    assert first["level"] == "info" and first["logger"] == "gophermart.worker"
    assert "timestamp" in first
    assert "request_id" not in second


def test_text_is_the_default_and_readable(captured: io.StringIO) -> None:
    _configure("text", captured)
    logging.getLogger("gophermart.access").info("GET /x 200", extra={"status": 200})
    line = captured.getvalue().strip()
    assert "[info]" in line and "GET /x 200" in line and "status=200" in line
    assert not line.startswith("{")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_credentials_never_reach_a_line(captured: io.StringIO, fmt: str) -> None:
    _configure(fmt, captured)
    log = logging.getLogger("gophermart.test")
    log.info("login with %s", "x", extra={"password": "hunter2", "Authorization": "Bearer abc"})
    log.info("token in the message: %s", TOKEN)
    log.warning("header was %s", "Bearer s3cr3t-v4lue")
    try:
        raise ValueError(f"bad token {TOKEN}")
    except ValueError:
        log.exception("failed")
    out = captured.getvalue()
    for secret in ("hunter2", TOKEN, "s3cr3t-v4lue", "Bearer abc"):
        assert secret not in out
    assert REDACTED in out


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="log format"):
        configure_logging("INFO", "xml")
