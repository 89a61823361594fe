"""Unit tests get their wiring from the composition root, overridden with the fast
doubles (:func:`gophermart.testing.use_test_doubles`), never by hand."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from gophermart.bootstrap import Container, build
from gophermart.settings import MEMORY_URI, Settings
from gophermart.testing import (
    TEST_SECRET,
    EventCounter,
    FrozenClock,
    ScriptedAccrual,
    use_test_doubles,
)


@pytest.fixture
def container() -> Container:
    """The in-memory container with a hand-moved clock, a scripted accrual system and
    an upload-event counter (``container.clock()``, ``.accrual_client()``, ``.wakeup()``)."""
    return use_test_doubles(
        build(Settings.for_database(MEMORY_URI, secret=TEST_SECRET)),
        clock=FrozenClock(),
        accrual=ScriptedAccrual(),
        events=EventCounter(),
    )


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """A sink for log lines; the root logger's handlers and level are put back after."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    sink = io.StringIO()
    yield sink
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved_handlers:
        root.addHandler(handler)
    root.setLevel(saved_level)
