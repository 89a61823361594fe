"""The log renderer: text or JSON lines, the request id of the request being served, the
order number of worker events, and credentials dropped or masked whatever the call."""

from __future__ import annotations

import io
import json
import logging

import pytest

from gophermart.entrypoints.logs import REDACTED, REQUEST_ID, configure_logging

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLWhlcmU"


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


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_the_access_line_fast_path_renders_like_the_generic_one(
    captured: io.StringIO, fmt: str
) -> None:
    from gophermart.entrypoints.logs import access_line

    _configure(fmt, captured)
    token = REQUEST_ID.set("rid-7")
    try:
        access_line("GET", "/api/user/balance", f"/api/user/{TOKEN}", 200, 4.25)
    finally:
        REQUEST_ID.reset(token)
    line = captured.getvalue().strip()
    assert TOKEN not in line and REDACTED in line
    if fmt == "json":
        record = json.loads(line)
        assert record["event"] == "GET /api/user/balance 200 4.2ms"
        assert {k: record[k] for k in ("method", "route", "status", "request_id", "logger")} == {
            "method": "GET",
            "route": "/api/user/balance",
            "status": 200,
            "request_id": "rid-7",
            "logger": "gophermart.access",
        }
        assert record["level"] == "info" and record["timestamp"].endswith("Z")
    else:
        assert "[info] GET /api/user/balance 200 4.2ms [gophermart.access]" in line
        assert "request_id=rid-7" in line and "status=200" in line


def test_the_access_line_obeys_the_level(captured: io.StringIO) -> None:
    from gophermart.entrypoints.logs import access_line

    configure_logging("WARNING", "json")
    logging.getLogger().handlers[0].setStream(captured)  # type: ignore[attr-defined]
    access_line("GET", "/x", "/x", 200, 1.0)
    assert captured.getvalue() == ""


async def test_access_lines_are_batched_and_flushed(captured: io.StringIO) -> None:
    import asyncio

    from gophermart.entrypoints.logs import (
        ACCESS_FLUSH_LINES,
        ACCESS_FLUSH_SECONDS,
        access_line,
        flush_access_lines,
    )

    _configure("text", captured)
    for _ in range(3):
        access_line("GET", "/a", "/a", 200, 1.0)
    assert captured.getvalue() == ""  # queued, not yet written
    await asyncio.sleep(ACCESS_FLUSH_SECONDS * 2)
    assert captured.getvalue().count("GET /a 200") == 3  # at most 0.1 s late
    for _ in range(ACCESS_FLUSH_LINES):
        access_line("GET", "/b", "/b", 200, 1.0)
    assert captured.getvalue().count("GET /b 200") == ACCESS_FLUSH_LINES  # a full batch: now
    access_line("GET", "/c", "/c", 200, 1.0)
    flush_access_lines()  # at shutdown
    assert "GET /c 200" in captured.getvalue()
