"""The HTTP API inside a Starlette (or FastAPI) shop: mounted under /loyalty, started and
closed by the shop's own lifespan (docs/embedding.md, "The HTTP API inside the shop's app").

Needs ``gophermart[http]`` and Starlette; FastAPI is the same (``app.mount(...)`` and
``FastAPI(lifespan=...)``). Run with a database URL: ``python starlette_mount.py
sqlite:///shop.db``; it serves nothing itself, it sends a few requests to the app the
way an ASGI server would.
"""

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from typing import cast

import httpx
from litestar import Litestar
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.types import ASGIApp

from gophermart import Gophermart, http_router


async def home(_request: Request) -> PlainTextResponse:
    return PlainTextResponse("the shop")


def shop_app(loyalty: Gophermart) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        # A Starlette host runs its own lifespan only, never a mounted app's: the
        # loyalty instance is started here (forgotten, every route answers 503).
        async with loyalty:
            yield

    api = Litestar(route_handlers=[http_router(loyalty)])  # SPEC's routes, their errors
    # Any ASGI app mounts; the two frameworks just spell the ASGI types differently.
    mounted = Mount("/loyalty", app=cast(ASGIApp, api))
    return Starlette(routes=[Route("/", home), mounted], lifespan=lifespan)


async def main(url: str) -> None:
    app = shop_app(Gophermart.open(url))
    async with (
        app.router.lifespan_context(app),  # what the ASGI server does at start and stop
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shop") as web,
    ):
        signed_up = await web.post(
            "/loyalty/api/user/register", json={"login": "frank", "password": "pw"}
        )
        signed_up.raise_for_status()
        token = signed_up.headers["Authorization"]
        cookie = signed_up.headers.get_list("set-cookie")[0]  # the token's, below the mount
        assert "Path=/loyalty/;" in cookie, cookie
        uploaded = await web.post(
            "/loyalty/api/user/orders",
            content="9278923470",
            headers={"Authorization": token, "Content-Type": "text/plain"},
        )
        balance = await web.get("/loyalty/api/user/balance", headers={"Authorization": token})
        print("upload", uploaded.status_code, "balance", balance.json())
        print("home", (await web.get("/")).text)
        assert uploaded.status_code == 202
        assert balance.json() == {"current": 0, "withdrawn": 0, "held": 0, "owed": 0}


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "sqlite:///starlette_mount.db"))
