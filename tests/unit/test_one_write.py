"""A response's head and body leave in one write (entrypoints/serving.py)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from gophermart.entrypoints.serving import _OneWritePerTurn


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> Any:
        return f"info:{name}"


async def test_the_writes_of_one_turn_leave_together_in_order() -> None:
    real = FakeTransport()
    batching = _OneWritePerTurn(cast(asyncio.Transport, real), asyncio.get_running_loop())
    batching.write(b"HTTP/1.1 200 OK\r\n\r\n")
    batching.write(memoryview(b"{}"))
    assert real.writes == []  # not yet: the turn is not over
    await asyncio.sleep(0)
    assert real.writes == [b"HTTP/1.1 200 OK\r\n\r\n{}"]
    batching.writelines([b"a", b"b"])
    await asyncio.sleep(0)
    assert real.writes[1:] == [b"ab"]
    assert batching.get_extra_info("peername") == "info:peername"  # the rest: as is


async def test_close_sends_what_is_gathered_first() -> None:
    real = FakeTransport()
    batching = _OneWritePerTurn(cast(asyncio.Transport, real), asyncio.get_running_loop())
    batching.write(b"head")
    batching.write(b"body")
    batching.close()
    assert real.writes == [b"headbody"] and real.closed
    await asyncio.sleep(0)  # the scheduled flush finds nothing more to send
    assert real.writes == [b"headbody"]
