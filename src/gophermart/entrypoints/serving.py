"""Running uvicorn so that SIGINT/SIGTERM end in a graceful stop and exit status 0."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


def _ignore(_signum: int, _frame: FrameType | None) -> None:
    """Swallow the stop signal uvicorn re-raises after it has already shut down cleanly."""


@contextmanager
def clean_exit_on_stop_signals() -> Iterator[None]:
    """uvicorn (>= 0.29) restores the previous handlers and re-raises the stop signal after
    a graceful shutdown, which would end the process with -SIGTERM or KeyboardInterrupt.
    Making the previous handler a no-op turns a clean stop into exit status 0."""
    stops = (
        (signal.SIGINT, signal.SIGTERM)
        if threading.current_thread() is threading.main_thread()
        else ()
    )
    previous = {sig: signal.signal(sig, _ignore) for sig in stops}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
