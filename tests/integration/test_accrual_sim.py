"""The accrual simulator must behave like the external accrual system in SPEC.md.

The gophermart poller's end-to-end tests trust this simulator, so its codes, exact amounts,
status timeline, throttling and failure hooks are pinned here, in process and over a socket.
"""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient

from gophermart.entrypoints.accrual_sim import (
    SimSettings,
    _parse_address,
    _parser,
    create_sim_app,
    main,
)
from tests.ports import free_port

Client = AsyncTestClient[Any]
MakeClient = Callable[..., Awaitable[Client]]

ORDER = "79927398713"  # Luhn-valid
OTHER = "12345678903"  # Luhn-valid


class FakeClock:
    """A monotonic clock the test moves by hand, so timing rules are checked exactly."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    async with AsyncExitStack() as stack:

        async def make(
            settings: SimSettings | None = None, clock: FakeClock | None = None
        ) -> Client:
            settings = settings or SimSettings(seed_goods=False)
            app = create_sim_app(settings, clock=clock) if clock else create_sim_app(settings)
            return await stack.enter_async_context(AsyncTestClient(app=app))

        yield make


async def add_goods(client: Client, match: str, reward: Any, kind: str) -> None:
    response = await client.post(
        "/api/goods", json={"match": match, "reward": reward, "reward_type": kind}
    )
    assert response.status_code == 200, response.text


async def add_order(client: Client, number: str, goods: list[tuple[str, str]]) -> None:
    items = ",".join(f'{{"description": {json.dumps(d)}, "price": {p}}}' for d, p in goods)
    body = f'{{"order": "{number}", "goods": [{items}]}}'
    response = await client.post("/api/orders", content=body)
    assert response.status_code == 202, response.text


def decoded(response: httpx.Response) -> Any:
    return json.loads(response.content, parse_float=Decimal)


async def test_goods_registration_answers_200_then_409(make_client: MakeClient) -> None:
    client = await make_client()
    body = {"match": "Acme", "reward": 10, "reward_type": "%"}
    first = await client.post("/api/goods", json=body)
    again = await client.post("/api/goods", json={**body, "reward": 5, "reward_type": "pt"})
    assert (first.status_code, first.content) == (200, b"")
    assert again.status_code == 409


@pytest.mark.parametrize(
    "body",
    [
        "{not json",
        '{"match": "Acme", "reward": 10}',
        '{"match": "Acme", "reward": "10", "reward_type": "%"}',
        '{"match": "Acme", "reward": true, "reward_type": "%"}',
        '{"match": "Acme", "reward": 10, "reward_type": "percent"}',
        '{"match": "Acme", "reward": -1, "reward_type": "pt"}',
        '{"match": "Acme", "reward": 0, "reward_type": "pt"}',
        '{"match": "Acme", "reward": 100.5, "reward_type": "%"}',
        '{"match": "Acme", "reward": 1e16, "reward_type": "pt"}',
        '{"match": "", "reward": 10, "reward_type": "%"}',
    ],
)
async def test_goods_registration_refuses_bad_bodies_with_400(
    make_client: MakeClient, body: str
) -> None:
    client = await make_client()
    response = await client.post("/api/goods", content=body)
    assert response.status_code == 400
    # Nothing was registered: the same match is still free.
    assert (
        await client.post("/api/goods", json={"match": "Acme", "reward": 1, "reward_type": "pt"})
    ).status_code == 200


async def test_order_registration_answers_202_then_409(make_client: MakeClient) -> None:
    client = await make_client()
    body = {"order": ORDER, "goods": [{"description": "chair", "price": 100}]}
    first = await client.post("/api/orders", json=body)
    again = await client.post("/api/orders", json=body)
    assert (first.status_code, first.content) == (202, b"")
    assert again.status_code == 409


@pytest.mark.parametrize(
    "body",
    [
        "[]",
        '{"order": "79927398710", "goods": []}',  # Luhn fails
        '{"order": "7992a398713", "goods": []}',
        '{"order": "", "goods": []}',
        '{"order": "\u0661\u0668", "goods": []}',  # Arabic-Indic digits are not ASCII digits
        '{"order": 79927398713, "goods": []}',
        '{"order": "79927398713"}',
        '{"order": "79927398713", "goods": [{"description": "x", "price": "100"}]}',
        '{"order": "79927398713", "goods": [{"description": "x", "price": -1}]}',
        '{"order": "79927398713", "goods": [{"description": "x", "price": 1e-21}]}',
    ],
)
async def test_order_registration_refuses_bad_bodies_with_400(
    make_client: MakeClient, body: str
) -> None:
    client = await make_client()
    response = await client.post("/api/orders", content=body)
    assert response.status_code == 400
    assert (await client.get(f"/api/orders/{ORDER}")).status_code == 204


async def test_accrual_is_exact_and_not_rounded(make_client: MakeClient) -> None:
    client = await make_client()
    await add_goods(client, "Bork", 10, "%")
    await add_order(client, ORDER, [("Bork kettle", "7297.75")])
    response = await client.get(f"/api/orders/{ORDER}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert b'"accrual":729.775' in response.content  # a JSON number, three decimals kept
    assert decoded(response) == {
        "order": ORDER,
        "status": "PROCESSED",
        "accrual": Decimal("729.775"),
    }


async def test_accrual_sums_goods_with_first_registered_matching_mechanic(
    make_client: MakeClient,
) -> None:
    client = await make_client()
    await add_goods(client, "Acme", 10, "%")
    await add_goods(client, "Acme Pro", 500, "pt")  # registered second: never wins over "Acme"
    await add_goods(client, "Gopher", 0.5, "pt")
    goods = [
        ("Acme Pro phone", "1000.10"),
        ("plush Gopher", "3"),
        ("unrelated", "99"),
        ("acme lower", "50"),
    ]
    await add_order(client, ORDER, goods)
    body = decoded(await client.get(f"/api/orders/{ORDER}"))
    assert body["accrual"] == Decimal("100.010") + Decimal("0.5")


async def test_order_with_no_matching_goods_is_processed_without_accrual(
    make_client: MakeClient,
) -> None:
    client = await make_client()
    await add_goods(client, "Bork", 10, "%")
    await add_order(client, ORDER, [("chair", "100")])
    await add_order(client, OTHER, [("Bork sample", "0")])  # matches, but earns nothing
    assert decoded(await client.get(f"/api/orders/{ORDER}")) == {
        "order": ORDER,
        "status": "PROCESSED",
    }
    assert decoded(await client.get(f"/api/orders/{OTHER}")) == {
        "order": OTHER,
        "status": "PROCESSED",
    }


async def test_order_with_empty_goods_is_invalid(make_client: MakeClient) -> None:
    client = await make_client()
    assert (await client.post("/api/orders", json={"order": ORDER, "goods": []})).status_code == 202
    assert decoded(await client.get(f"/api/orders/{ORDER}")) == {
        "order": ORDER,
        "status": "INVALID",
    }


async def test_seeded_goods_make_the_demo_work(make_client: MakeClient) -> None:
    client = await make_client(SimSettings())
    await add_order(client, ORDER, [("Bork kettle", "7000"), ("Gopher toy", "1")])
    assert decoded(await client.get(f"/api/orders/{ORDER}"))["accrual"] == Decimal(715)
    assert (
        await client.post("/api/goods", json={"match": "Bork", "reward": 1, "reward_type": "pt"})
    ).status_code == 409


@pytest.mark.parametrize("number", [OTHER, "not-a-number", "0"])
async def test_unknown_order_answers_204_without_body(make_client: MakeClient, number: str) -> None:
    client = await make_client()
    await add_order(client, ORDER, [("chair", "1")])
    response = await client.get(f"/api/orders/{number}")
    assert (response.status_code, response.content) == (204, b"")


async def test_status_timeline_follows_calc_delay(make_client: MakeClient) -> None:
    clock = FakeClock()
    client = await make_client(SimSettings(calc_delay=10, seed_goods=False), clock)
    await add_goods(client, "Bork", 10, "%")
    await add_order(client, ORDER, [("Bork", "100")])
    start = clock.now
    seen = []
    for offset in (0, 4.999, 5, 9.999, 10, 1000):
        clock.now = start + offset
        seen.append(decoded(await client.get(f"/api/orders/{ORDER}")))
    expected_statuses = [
        "REGISTERED",
        "REGISTERED",
        "PROCESSING",
        "PROCESSING",
        "PROCESSED",
        "PROCESSED",
    ]
    assert [s["status"] for s in seen] == expected_statuses
    assert [s.get("accrual") for s in seen] == [None] * 4 + [Decimal(10)] * 2


async def test_status_timeline_with_a_real_small_delay(make_client: MakeClient) -> None:
    client = await make_client(SimSettings(calc_delay=1.0, seed_goods=False))
    registered = time.monotonic()
    await add_order(client, ORDER, [("chair", "1")])

    async def status_at(offset: float) -> str:
        await asyncio.sleep(max(0.0, registered + offset - time.monotonic()))
        return str(decoded(await client.get(f"/api/orders/{ORDER}"))["status"])

    assert [await status_at(0), await status_at(0.65), await status_at(1.1)] == [
        "REGISTERED",
        "PROCESSING",
        "PROCESSED",
    ]


async def test_rate_limit_answers_429_and_counts_in_a_rolling_minute(
    make_client: MakeClient,
) -> None:
    clock = FakeClock()
    client = await make_client(SimSettings(rate_limit=2, retry_after=7, seed_goods=False), clock)
    await add_order(client, ORDER, [("chair", "1")])
    codes = []
    times = [0.0, 1.0, 30.0, 59.999, 60.0, 60.5, 61.0]
    for t in times:
        clock.now = 1000.0 + t
        response = await client.get(f"/api/orders/{ORDER}")
        codes.append(response.status_code)
        if response.status_code == 429:
            assert response.headers["retry-after"] == "7"
            assert response.headers["content-type"].startswith("text/plain")
            assert response.text == "No more than 2 requests per minute allowed"
    # The refused calls at 30 and 59.999 do not extend the pause: at 60 the first slot is free.
    assert codes == [200, 200, 429, 429, 200, 429, 200]
    stats = (await client.get("/__sim/stats")).json()
    assert stats == {"requests": 7, "throttled": 3, "request_times": [1000.0 + t for t in times]}


async def test_without_rate_limit_nothing_is_throttled(make_client: MakeClient) -> None:
    client = await make_client()
    codes = {(await client.get(f"/api/orders/{ORDER}")).status_code for _ in range(200)}
    stats = (await client.get("/__sim/stats")).json()
    assert codes == {204}
    assert (stats["requests"], stats["throttled"], len(stats["request_times"])) == (200, 0, 200)


async def test_reset_stats_clears_counters_but_not_the_limiter(make_client: MakeClient) -> None:
    client = await make_client(SimSettings(rate_limit=1, seed_goods=False))
    assert (await client.get(f"/api/orders/{ORDER}")).status_code == 204
    assert (await client.get(f"/api/orders/{ORDER}")).status_code == 429
    assert (await client.post("/__sim/reset-stats")).status_code == 204
    assert (await client.get("/__sim/stats")).json() == {
        "requests": 0,
        "throttled": 0,
        "request_times": [],
    }
    assert (await client.get(f"/api/orders/{ORDER}")).status_code == 429


async def test_fail_hook_answers_the_injected_status_the_given_number_of_times(
    make_client: MakeClient,
) -> None:
    client = await make_client()
    await add_order(client, ORDER, [("chair", "1")])
    hook = await client.post("/__sim/fail", json={"order": ORDER, "times": 2, "status": 500})
    assert hook.status_code == 200
    codes = [(await client.get(f"/api/orders/{ORDER}")).status_code for _ in range(3)]
    other = await client.get(f"/api/orders/{OTHER}")
    assert codes == [500, 500, 200]
    assert other.status_code == 204  # only the named order is affected


async def test_fail_hook_can_inject_a_429_that_counts_as_throttled(make_client: MakeClient) -> None:
    client = await make_client(SimSettings(retry_after=3, seed_goods=False))
    await client.post("/__sim/fail", json={"order": ORDER, "times": 1, "status": 429})
    response = await client.get(f"/api/orders/{ORDER}")
    assert (response.status_code, response.headers["retry-after"]) == (429, "3")
    assert (await client.get("/__sim/stats")).json()["throttled"] == 1


@pytest.mark.parametrize(
    "body",
    [
        {"order": ORDER, "times": 0, "status": 500},
        {"order": ORDER, "times": 1, "status": 200},
        {"order": ORDER, "times": 1, "status": 600},
        {"order": ORDER, "times": "1", "status": 500},
    ],
)
async def test_fail_hook_refuses_bad_bodies(make_client: MakeClient, body: dict[str, Any]) -> None:
    client = await make_client()
    assert (await client.post("/__sim/fail", json=body)).status_code == 400
    assert (await client.get(f"/api/orders/{ORDER}")).status_code == 204


async def test_fixed_outcome_orders_honour_the_delay(make_client: MakeClient) -> None:
    clock = FakeClock()
    client = await make_client(SimSettings(calc_delay=2, seed_goods=False), clock)
    fixed = {"order": ORDER, "status": "PROCESSED", "accrual": 500.005}
    assert (await client.post("/__sim/orders", json=fixed)).status_code == 202
    assert (
        await client.post("/__sim/orders", json={"order": OTHER, "status": "INVALID"})
    ).status_code == 202
    assert (await client.post("/__sim/orders", json=fixed)).status_code == 409
    assert decoded(await client.get(f"/api/orders/{ORDER}"))["status"] == "REGISTERED"
    clock.now += 2
    assert decoded(await client.get(f"/api/orders/{ORDER}"))["accrual"] == Decimal("500.005")
    assert decoded(await client.get(f"/api/orders/{OTHER}")) == {
        "order": OTHER,
        "status": "INVALID",
    }


async def test_fixed_outcome_invalid_with_accrual_is_refused(make_client: MakeClient) -> None:
    client = await make_client()
    body = {"order": ORDER, "status": "INVALID", "accrual": 5}
    assert (await client.post("/__sim/orders", json=body)).status_code == 400
    assert (await client.get(f"/api/orders/{ORDER}")).status_code == 204


@pytest.mark.parametrize(
    "settings",
    [{"calc_delay": -1}, {"calc_delay": float("nan")}, {"rate_limit": 0}, {"retry_after": -1}],
)
def test_settings_refuse_nonsense(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(settings))):
        SimSettings(**settings)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("localhost:8081", ("localhost", 8081)),
        (":9000", ("0.0.0.0", 9000)),
        ("http://127.0.0.1:8081", ("127.0.0.1", 8081)),
        ("http://[::1]:8081/", ("::1", 8081)),
    ],
)
def test_address_forms(text: str, expected: tuple[str, int]) -> None:
    assert _parse_address(text) == expected


@pytest.mark.parametrize(
    "argv", [["-a", "localhost"], ["-a", "h:70000"], ["--delay", "-1"], ["--rate-limit", "x"]]
)
def test_cli_refuses_bad_options(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "error" in capsys.readouterr().err


def test_cli_help_explains_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    out = capsys.readouterr().out
    assert exited.value.code == 0
    for option in ("--address", "--delay", "--rate-limit", "--retry-after", "ACCRUAL_RUN_ADDRESS"):
        assert option in out


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_main_serves_over_a_real_socket_and_exits_0_on_signal(
    tmp_path: Path, stop: signal.Signals
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = ["-a", f"127.0.0.1:{port}", "--retry-after", "5"]
    code = f"from gophermart.entrypoints.accrual_sim import main; main({argv!r})"
    env = {**os.environ, "ACCRUAL_RATE_LIMIT": "2"}
    with (tmp_path / "sim.log").open("w+") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT, env=env
        )
        try:
            wait_until_it_answers(proc, base, tmp_path / "sim.log")
            order = {"order": ORDER, "goods": [{"description": "Bork kettle", "price": 7297.75}]}
            assert httpx.post(f"{base}/api/orders", json=order).status_code == 202
            polled = httpx.get(f"{base}/api/orders/{ORDER}")
            assert b'"accrual":729.775' in polled.content
            assert httpx.get(f"{base}/api/orders/{OTHER}").status_code == 204
            throttled = httpx.get(f"{base}/api/orders/{ORDER}")  # env limit of 2 applies
            assert (throttled.status_code, throttled.headers["retry-after"]) == (429, "5")
        finally:
            proc.send_signal(stop)
            returncode = proc.wait(timeout=15)
    assert returncode == 0, (tmp_path / "sim.log").read_text()


def wait_until_it_answers(proc: subprocess.Popen[Any], base: str, log: Path) -> None:
    deadline = time.monotonic() + 15
    while True:
        assert proc.poll() is None, f"simulator died early:\n{log.read_text()}"
        try:
            if httpx.get(f"{base}/__sim/stats", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            assert time.monotonic() < deadline, "simulator never answered"
            time.sleep(0.05)


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        ([], {}, ("localhost", 8081)),
        ([], {"RUN_ADDRESS": ":9001"}, ("0.0.0.0", 9001)),
        ([], {"RUN_ADDRESS": ":9001", "ACCRUAL_RUN_ADDRESS": ":9002"}, ("0.0.0.0", 9002)),
        (
            ["-a", ":9003"],
            {"RUN_ADDRESS": ":9001", "ACCRUAL_RUN_ADDRESS": ":9002"},
            ("0.0.0.0", 9003),
        ),
    ],
)
def test_the_address_is_the_flag_else_accrual_run_address_else_run_address(
    argv: list[str],
    env: dict[str, str],
    expected: tuple[str, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RUN_ADDRESS", raising=False)
    monkeypatch.delenv("ACCRUAL_RUN_ADDRESS", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert _parser().parse_args(argv).address == expected


def test_started_like_the_reference_binary_with_run_address_only(tmp_path: Path) -> None:
    """A client of the reference accrual binary starts it with RUN_ADDRESS and nothing
    else: `gophermart accrual-sim` in its place listens there."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "ACCRUAL_RUN_ADDRESS"}
    env["RUN_ADDRESS"] = f"127.0.0.1:{port}"
    with (tmp_path / "sim.log").open("w+") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gophermart", "accrual-sim"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            wait_until_it_answers(proc, f"http://127.0.0.1:{port}", tmp_path / "sim.log")
        finally:
            proc.send_signal(signal.SIGTERM)
            returncode = proc.wait(timeout=15)
    assert returncode == 0, (tmp_path / "sim.log").read_text()
