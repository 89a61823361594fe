"""The login and register handlers' watch for a client that hangs up (``accounts.py``).

uvicorn does not cancel a handler whose client went away; the ASGI ``receive`` says so
with ``http.disconnect``. The watch cancels the handler's work then (a hash waiting its
turn leaves the line), and otherwise stays out of the way: the work's result or error
comes back as it is, and a server that answers ``receive`` with anything else (or an
error) is never taken for a hang-up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import pytest

from gophermart.domain.errors import InvalidCredentials
from gophermart.entrypoints.http.controllers.accounts import _unless_hung_up


def request(receive: Callable[[], Awaitable[dict[str, Any]]]) -> Any:
    return SimpleNamespace(receive=receive)


async def never() -> dict[str, Any]:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def test_a_hang_up_cancels_the_work() -> None:
    cancelled = asyncio.Event()

    async def waiting_for_the_hasher() -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "hashed"

    async def hang_up() -> dict[str, Any]:
        await asyncio.sleep(0.01)
        return {"type": "http.disconnect"}

    assert await _unless_hung_up(request(hang_up), waiting_for_the_hasher()) is None
    assert cancelled.is_set()


async def test_the_work_answers_when_the_client_stays() -> None:
    async def quick() -> str:
        return "token"

    async def refused() -> str:
        raise InvalidCredentials("wrong login or password")

    assert await _unless_hung_up(request(never), quick()) == "token"
    with pytest.raises(InvalidCredentials):
        await _unless_hung_up(request(never), refused())


@pytest.mark.parametrize("answer", [{"type": "http.request", "body": b""}, RuntimeError()])
async def test_anything_but_a_disconnect_is_not_a_hang_up(answer: object) -> None:
    async def receive() -> dict[str, Any]:
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]

    async def slow() -> str:
        await asyncio.sleep(0.02)
        return "token"

    assert await _unless_hung_up(request(receive), slow()) == "token"
