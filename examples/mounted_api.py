"""The loyalty HTTP API mounted at /loyalty inside a shop's own Litestar app, sharing
its lifespan: the shop's routes and SPEC.md's routes side by side on one server."""

import sys

from litestar import Litestar, get
from litestar.testing import TestClient

from gophermart import Gophermart, http_router, loyalty_lifespan


@get("/")
async def shop_home() -> str:
    return "Welcome to the shop"


def create_app(url: str) -> Litestar:
    loyalty = Gophermart.open(url)
    return Litestar(
        route_handlers=[shop_home, http_router(loyalty, path="/loyalty")],
        lifespan=[loyalty_lifespan(loyalty)],  # started and closed with the shop's app
    )


def main(url: str) -> None:
    # Serve it with `uvicorn --factory mounted_api:create_app`; here, one in-process tour.
    with TestClient(app=create_app(url)) as client:
        print(client.get("/").text)
        signed = client.post("/loyalty/api/user/register", json={"login": "eve", "password": "s3"})
        token = signed.headers["Authorization"]
        upload = client.post("/loyalty/api/user/orders", content="9278923470")
        print("upload", upload.status_code)  # 202: the cookie set at register authenticates
        balance = client.get("/loyalty/api/user/balance", headers={"Authorization": token})
        print("balance", balance.status_code, balance.json())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "sqlite:///mounted_api.db")
