"""What the connection limits cost per request (entrypoints/connections.py), in process.

    .venv/bin/python benchmarks/protocol_micro.py [ROUNDS]

Feeds keep-alive ``GET`` requests to uvicorn's httptools protocol on a fake transport,
with a trivial app, and prints this process's CPU time per request: the protocol before
the limits (``OneWriteHttpToolsProtocol``) and with them (``BoundedHttpToolsProtocol``),
interleaved in short rounds so that a busy machine's drift hits both alike. The minimum
and the first quartile are the steadier figures on a shared machine.
"""

from __future__ import annotations

import asyncio
import functools
import statistics
import sys
import time
from typing import Any

import uvloop
from uvicorn.config import Config
from uvicorn.server import ServerState

from gophermart.entrypoints.connections import BoundedHttpToolsProtocol, ConnectionLimits
from gophermart.entrypoints.serving import OneWriteHttpToolsProtocol

REQUEST = (
    b"GET /api/user/balance HTTP/1.1\r\nHost: bench\r\nUser-Agent: wrk\r\n"
    b"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLWhlcmU\r\n"
    b"Accept: */*\r\n\r\n"
)


async def app(_scope: Any, _receive: Any, send: Any) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"{}"})


class Transport:
    def __init__(self) -> None:
        self.closing = False

    def write(self, data: bytes) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 5555)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def drive(factory: Any, n: int) -> float:
    protocol = factory(_loop=asyncio.get_running_loop())
    protocol.connection_made(Transport())
    started = time.process_time()
    for _ in range(n):
        protocol.data_received(REQUEST)
        while protocol.tasks:
            await asyncio.sleep(0)
        await asyncio.sleep(0)
    return (time.process_time() - started) / n * 1e6


async def main(rounds: int) -> None:
    config = Config(app, log_config=None, access_log=False, lifespan="off")
    config.load()
    state = ServerState()
    common = {"config": config, "server_state": state, "app_state": {}}
    variants = {
        "one-write (before)": functools.partial(OneWriteHttpToolsProtocol, **common),
        "bounded (after)": functools.partial(
            BoundedHttpToolsProtocol, **common, limits=ConnectionLimits()
        ),
    }
    results: dict[str, list[float]] = {name: [] for name in variants}
    for variant in variants.values():
        await drive(variant, 2000)  # warm-up
    for _ in range(rounds):
        for name, variant in variants.items():
            results[name].append(await drive(variant, 3000))
    for name, samples in results.items():
        samples.sort()
        print(
            f"{name:20s} min {samples[0]:6.2f}  p25 {samples[len(samples) // 4]:6.2f}  "
            f"median {statistics.median(samples):6.2f} us/request"
        )


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 60))
