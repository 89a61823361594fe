"""What an operator sees: /metrics summed over `-w 2` processes and switchable off, the
worker's gauges moving against a rate-limited accrual system, request ids, structured
(text or JSON) log lines, and no secret in any log of a full run."""

from __future__ import annotations

import concurrent.futures
import json
import re
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Service, start_service
from tests.integration.prometheus import scrape, value
from tests.integration.seeding import luhn
from tests.integration.simulator import Simulator, running_simulator
from tests.integration.test_accrual_e2e import worker_process
from tests.ports import free_port

SECRET = "operations-secret-" + "q" * 30


@pytest.fixture
def stopped_cleanly() -> Iterator[list[Service]]:
    services: list[Service] = []
    yield services
    for svc in services:
        code = svc.stop()
        assert code == 0, f"service exited with {code}:\n{svc.output()}"


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def _metrics_dir(pid: int) -> Path:
    for name, _, setting in (
        entry.partition("=") for entry in Path(f"/proc/{pid}/environ").read_text().split("\0")
    ):
        if name == "PROMETHEUS_MULTIPROC_DIR":
            return Path(setting)
    raise AssertionError("the server processes have no PROMETHEUS_MULTIPROC_DIR")


def _busy_processes(directory: Path) -> dict[str, float]:
    """Per process (metric file), the balance requests it has published."""
    from prometheus_client.multiprocess import MultiProcessCollector

    per_process = {}
    for path in directory.glob("counter_*.db"):
        total = 0.0
        for metric in MultiProcessCollector._read_metrics([str(path)]).values():  # type: ignore[attr-defined]
            for sample in metric.samples:
                if (
                    sample.name == "gophermart_http_requests_total"
                    and dict(sample.labels).get("route") == "/api/user/balance"
                ):
                    total += sample.value
        per_process[path.name] = total
    return {name: n for name, n in per_process.items() if n > 0}


@pytest.mark.slow
@pytest.mark.parametrize("own_address", [False, True], ids=["api-address", "metrics-address"])
def test_metrics_sum_the_requests_of_every_process(
    tmp_path: Path, stopped_cleanly: list[Service], own_address: bool
) -> None:
    """With ``GOPHERMART_METRICS_ADDRESS`` the scrape there sums both processes too, and
    the API's address no longer answers ``/metrics`` (issue 15)."""
    env = {"GOPHERMART_METRICS_ADDRESS": f"127.0.0.1:{free_port()}"} if own_address else {}
    svc = start_service(f"sqlite:///{tmp_path / 'm.db'}", "-w", "2", secret=SECRET, env=env)
    stopped_cleanly.append(svc)
    metrics_url = f"http://{env['GOPHERMART_METRICS_ADDRESS']}" if own_address else svc.url
    if own_address:
        on_api = httpx.get(svc.url + "/metrics", timeout=10)
        assert on_api.status_code == 404 and on_api.json() == {"error": "Not Found"}
        assert httpx.get(metrics_url + "/livez", timeout=10).status_code == 404
    workers = _children(svc.proc.pid)
    assert len(workers) >= 2, workers
    directory = _metrics_dir(workers[0])
    before = value(
        scrape(metrics_url),
        "gophermart_http_requests_total",
        method="GET",
        route="/api/user/balance",
        status="401",
    )

    def hit(_: int) -> int:
        # A new connection each time: the kernel spreads them over both processes.
        return httpx.get(svc.url + "/api/user/balance", timeout=10).status_code

    sent = 200
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        assert set(pool.map(hit, range(sent))) == {401}
        # On a busy machine one process may have taken them all: more, until both served.
        for _ in range(3):
            if len(_busy_processes(directory)) == 2:
                break
            assert set(pool.map(hit, range(200))) == {401}
            sent += 200

    # Each process publishes its tally every second: within two, the scrape has them all.
    deadline = time.monotonic() + 10
    while True:
        samples = scrape(metrics_url)
        counted = value(
            samples,
            "gophermart_http_requests_total",
            method="GET",
            route="/api/user/balance",
            status="401",
        )
        if counted - before >= sent or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert counted - before == sent
    assert (
        value(
            samples,
            "gophermart_http_request_duration_seconds_count",
            method="GET",
            route="/api/user/balance",
        )
        >= sent
    )
    assert (
        value(
            samples,
            "gophermart_http_request_duration_seconds_bucket",
            method="GET",
            route="/api/user/balance",
            le="+Inf",
        )
        >= sent
    )

    # Both processes answered some of them, and the scrape summed their files.
    busy = _busy_processes(directory)
    assert len(busy) == 2, busy
    assert sum(busy.values()) == counted

    # Labels are bounded: a 404 is `unmatched`, never the raw path; odd methods are OTHER.
    httpx.get(svc.url + f"/no/such/{uuid.uuid4().hex}", timeout=10)
    # BREW is refused by the HTTP parser before the app; PROPFIND reaches it.
    httpx.request("BREW", svc.url + "/api/user/balance", timeout=10)
    httpx.request("PROPFIND", svc.url + "/api/user/balance", timeout=10)
    # The other process may have served them: its tally is published within a second.
    deadline = time.monotonic() + 10
    while True:
        text = httpx.get(metrics_url + "/metrics", timeout=10).text
        if 'route="unmatched"' in text and 'method="OTHER"' in text:
            break
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert "/no/such" not in text and "BREW" not in text and "PROPFIND" not in text
    assert 'route="unmatched"' in text
    assert 'method="OTHER"' in text

    # The pools are published by each process.
    samples = scrape(metrics_url)
    assert value(samples, "gophermart_db_pool_max_connections", pool="sqlalchemy_read") >= 2
    assert value(samples, "gophermart_accrual_queue_scrape_ok") == 1

    assert svc.stop() == 0
    assert not directory.exists(), "the run's metric files must be removed at exit"


def test_a_metrics_address_taken_or_the_api_s_port_is_one_line(tmp_path: Path) -> None:
    from tests.integration.test_cli import run_cli

    database = f"sqlite:///{tmp_path}/t.db"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(
            "-d", database, "-a", f"127.0.0.1:{free_port()}",
            env={"GOPHERMART_METRICS_ADDRESS": f"127.0.0.1:{port}"},
        )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "GOPHERMART_METRICS_ADDRESS" in result.stderr and str(port) in result.stderr
    api = free_port()
    same = run_cli(
        "-d", database, "-a", f"127.0.0.1:{api}",
        env={"GOPHERMART_METRICS_ADDRESS": f"0.0.0.0:{api}"},
    )  # fmt: skip
    assert same.returncode == 2 and "GOPHERMART_METRICS_ADDRESS" in same.stderr, same.stderr


def test_metrics_can_be_switched_off(tmp_path: Path, stopped_cleanly: list[Service]) -> None:
    svc = start_service(
        f"sqlite:///{tmp_path / 'off.db'}", env={"GOPHERMART_METRICS": "0"}, secret=SECRET
    )
    stopped_cleanly.append(svc)
    assert httpx.get(svc.url + "/metrics", timeout=10).status_code == 404
    workers = _children(svc.proc.pid) or [svc.proc.pid]
    env = Path(f"/proc/{workers[0]}/environ").read_text()
    assert "PROMETHEUS_MULTIPROC_DIR" not in env
    # request ids do not depend on metrics
    response = httpx.get(svc.url + "/api/user/balance", timeout=10)
    assert re.fullmatch(r"[0-9a-f]{16}", response.headers["x-request-id"])
    # and by default (GOPHERMART_ACCESS_LOG unset, level INFO) there is no access line
    assert svc.stop() == 0
    assert "[gophermart.access]" not in svc.output()


def _register(url: str, login: str, password: str) -> str:
    response = httpx.post(
        url + "/api/user/register", json={"login": login, "password": password}, timeout=30
    )
    assert response.status_code == 200, response.text
    return response.headers["authorization"].removeprefix("Bearer ")


def _upload_processed(url: str, token: str, sim: Simulator, count: int, accrual: str) -> list[str]:
    """``count`` new orders the simulator will call PROCESSED with ``accrual``, uploaded."""
    numbers = [luhn(f"5{uuid.uuid4().int % 10**10:010d}") for _ in range(count)]
    for number in numbers:
        sim.register_fixed(number, "PROCESSED", accrual)
        response = httpx.post(
            url + "/api/user/orders",
            content=number,
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert response.status_code == 202, response.text
    return numbers


@pytest.mark.slow
def test_worker_gauges_move_against_a_rate_limited_accrual_system(
    tmp_path: Path, stopped_cleanly: list[Service]
) -> None:
    limit, retry_after = 3, 2
    with running_simulator(tmp_path, rate_limit=limit, retry_after=retry_after) as sim:
        # -w 2: both processes run a worker; the scrape sums their counters
        svc = start_service(
            f"sqlite:///{tmp_path / 'w.db'}", "-w", "2", accrual=sim.url, secret=SECRET
        )
        stopped_cleanly.append(svc)
        token = _register(svc.url, f"w-{uuid.uuid4().hex[:8]}", "worker gauges")
        # `limit` pass, then 429 and a pause; the rest would take a minute at 3/min.
        _upload_processed(svc.url, token, sim, limit + 2, "10.5")

        seen_paused = seen_queue = False
        deadline = time.monotonic() + 60
        samples = scrape(svc.url)
        while time.monotonic() < deadline:
            samples = scrape(svc.url)
            paused_until = value(samples, "gophermart_accrual_paused_until_seconds")
            if paused_until > time.time() - 1:
                seen_paused = True
                assert value(samples, "gophermart_accrual_rate_limit_per_minute") == limit
            if value(samples, "gophermart_accrual_queue_orders", state="scheduled") > 0:
                seen_queue = True
            if seen_paused and value(samples, "gophermart_accrual_credits_total") >= limit:
                break
            time.sleep(0.2)
        assert value(samples, "gophermart_accrual_polls_total", outcome="429") >= 1
        credits = value(samples, "gophermart_accrual_credits_total")
        assert credits >= limit
        assert value(samples, "gophermart_accrual_polls_total", outcome="200_processed") == credits
        assert value(samples, "gophermart_accrual_credited_points_total") == pytest.approx(
            10.5 * credits
        )
        assert seen_paused, "the pause gauge never showed the 429 pause"
        assert seen_queue, "the queue gauges never showed orders waiting"
        assert value(samples, "gophermart_accrual_queue_orders", state="overdue") == 0


@pytest.mark.slow
def test_a_standalone_worker_serves_health_and_its_own_metrics(
    tmp_path: Path, stopped_cleanly: list[Service]
) -> None:
    """``gophermart worker --address``: probes and a scrape of what that worker did.
    Before: a separate worker served nothing, so its polls and credits were invisible."""
    database = f"sqlite:///{tmp_path / 'standalone.db'}"
    port = free_port()
    worker_url = f"http://127.0.0.1:{port}"
    with running_simulator(tmp_path) as sim:
        svc = start_service(database, "--no-worker", accrual=sim.url, secret=SECRET)
        stopped_cleanly.append(svc)
        with worker_process(database, sim.url, tmp_path / "worker.log", "-a", f"127.0.0.1:{port}"):
            assert httpx.get(worker_url + "/livez", timeout=10).json() == {"status": "ok"}
            ready = httpx.get(worker_url + "/readyz", timeout=10)
            assert ready.status_code == 200 and ready.json()["status"] == "ready"
            # No API there: the worker's face is health and metrics only.
            assert httpx.get(worker_url + "/api/user/balance", timeout=10).status_code == 404

            token = _register(svc.url, f"s-{uuid.uuid4().hex[:8]}", "standalone worker")
            numbers = _upload_processed(svc.url, token, sim, 3, "2.5")
            deadline = time.monotonic() + 30
            samples = scrape(worker_url)
            while time.monotonic() < deadline:
                samples = scrape(worker_url)
                if value(samples, "gophermart_accrual_credits_total") >= len(numbers):
                    break
                time.sleep(0.2)
            assert value(samples, "gophermart_accrual_credits_total") == len(numbers)
            assert value(samples, "gophermart_accrual_credited_points_total") == pytest.approx(
                2.5 * len(numbers)
            )
            assert value(samples, "gophermart_accrual_queue_scrape_ok") == 1
            assert value(samples, "gophermart_db_pool_max_connections", pool="sqlalchemy_read") >= 1
            # The server ran no worker: its own scrape credited nothing.
            assert value(scrape(svc.url), "gophermart_accrual_credits_total") == 0
    # worker_process asserted the worker's exit status 0 on SIGTERM


def test_a_standalone_worker_address_taken_is_one_line(tmp_path: Path) -> None:
    from tests.integration.test_cli import run_cli

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(
            "worker",
            "-d",
            f"sqlite:///{tmp_path}/t.db",
            "-r",
            "http://127.0.0.1:9",
            env={"GOPHERMART_WORKER_ADDRESS": f"127.0.0.1:{port}"},
        )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "GOPHERMART_WORKER_ADDRESS" in result.stderr and str(port) in result.stderr
    bad = run_cli("worker", "-r", "http://127.0.0.1:9", "-a", "no-port-here")
    assert bad.returncode == 2 and "GOPHERMART_WORKER_ADDRESS" in bad.stderr, bad.stderr


def test_login_refusals_are_counted(tmp_path: Path, stopped_cleanly: list[Service]) -> None:
    svc = start_service(f"sqlite:///{tmp_path / 't.db'}", secret=SECRET)
    stopped_cleanly.append(svc)
    login = f"t-{uuid.uuid4().hex[:8]}"
    _register(svc.url, login, "right password")
    statuses = [
        httpx.post(
            svc.url + "/api/user/login", json={"login": login, "password": "wrong"}, timeout=30
        ).status_code
        for _ in range(7)
    ]
    assert 429 in statuses
    samples = scrape(svc.url)
    assert value(samples, "gophermart_login_throttled_total") == statuses.count(429)


# --- logs ---------------------------------------------------------------------------


def test_request_ids_are_taken_when_sane_generated_otherwise_and_echoed(
    tmp_path: Path, stopped_cleanly: list[Service]
) -> None:
    svc = start_service(
        f"sqlite:///{tmp_path / 'r.db'}", secret=SECRET, env={"GOPHERMART_ACCESS_LOG": "1"}
    )
    stopped_cleanly.append(svc)
    url = svc.url + "/api/user/balance"
    assert (
        httpx.get(url, headers={"X-Request-ID": "edge-42.a:b"}, timeout=10).headers["x-request-id"]
        == "edge-42.a:b"
    )
    for insane in ("has space", "x" * 129, 'quote"d', ""):
        echoed = httpx.get(url, headers={"X-Request-ID": insane}, timeout=10).headers[
            "x-request-id"
        ]
        assert re.fullmatch(r"[0-9a-f]{16}", echoed), (insane, echoed)
    first = httpx.get(url, timeout=10).headers["x-request-id"]
    second = httpx.get(url, timeout=10).headers["x-request-id"]
    assert first != second
    svc.stop()
    output = svc.output()
    # text by default: one readable access line per request, with its id
    line = next(line for line in output.splitlines() if f"request_id={first}" in line)
    assert "GET /api/user/balance 401" in line and "[gophermart.access]" in line
    assert "request_id=edge-42.a:b" in output
    assert not output.lstrip().startswith("{")


def test_a_full_run_logs_json_lines_and_never_a_secret(
    tmp_path: Path, stopped_cleanly: list[Service]
) -> None:
    """Register, log in (right and wrong), upload, let the worker credit, withdraw,
    read everything; then no log line anywhere holds a password, a token or the secret."""
    password = "pw-" + uuid.uuid4().hex
    wrong = "wrong-" + uuid.uuid4().hex
    login = f"j-{uuid.uuid4().hex[:8]}"
    number = luhn(f"4{uuid.uuid4().int % 10**10:010d}")
    with running_simulator(tmp_path) as sim:
        svc = start_service(
            f"sqlite:///{tmp_path / 'j.db'}",
            accrual=sim.url,
            secret=SECRET,
            env={"GOPHERMART_LOG_FORMAT": "json", "GOPHERMART_LOG_LEVEL": "DEBUG"},
        )
        stopped_cleanly.append(svc)
        sim.register_fixed(number, "PROCESSED", "900")
        token = _register(svc.url, login, password)
        auth = {"Authorization": f"Bearer {token}"}
        login_answer = httpx.post(
            svc.url + "/api/user/login", json={"login": login, "password": password}, timeout=30
        )
        token2 = login_answer.headers["authorization"].removeprefix("Bearer ")
        assert (
            httpx.post(
                svc.url + "/api/user/login", json={"login": login, "password": wrong}, timeout=30
            ).status_code
            == 401
        )
        # a malformed body that echoes the password back in the parser's complaint
        httpx.post(
            svc.url + "/api/user/register",
            content=f'{{"login": 1, "password": "{password}"',
            timeout=30,
        )
        assert (
            httpx.post(
                svc.url + "/api/user/orders", content=number, headers=auth, timeout=10
            ).status_code
            == 202
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            orders = httpx.get(svc.url + "/api/user/orders", cookies={"token": token2}, timeout=10)
            if orders.status_code == 200 and orders.json()[0]["status"] == "PROCESSED":
                break
            time.sleep(0.1)
        spend = luhn(f"3{uuid.uuid4().int % 10**10:010d}")
        withdraw = httpx.post(
            svc.url + "/api/user/balance/withdraw",
            json={"order": spend, "sum": 100},
            headers=auth,
            timeout=10,
        )
        assert withdraw.status_code == 200
        httpx.get(svc.url + "/api/user/balance", headers=auth, timeout=10)
        httpx.get(
            svc.url + "/api/user/withdrawals",
            headers={"Authorization": "Bearer " + token[:-3] + "abc"},
            timeout=10,
        )
        httpx.get(svc.url + "/metrics", timeout=10)
        assert svc.stop() == 0
        output = svc.output() + sim.log()

    for secret in (password, wrong, token, token2, token.split(".")[2], SECRET):
        assert secret not in output, f"a secret leaked into the logs: {secret[:12]}..."

    records = []
    for line in svc.output().splitlines():
        if line.strip():
            records.append(json.loads(line))  # every line is one JSON object
    access = [r for r in records if r.get("logger") == "gophermart.access"]
    assert access and all(
        {"request_id", "method", "route", "status", "duration_ms", "timestamp", "level"} <= set(r)
        for r in access
    )
    assert {r["route"] for r in access} >= {
        "/api/user/register",
        "/api/user/login",
        "/api/user/orders",
        "/api/user/balance/withdraw",
    }
    credited = [r for r in records if r.get("order") == number and r.get("status") == "PROCESSED"]
    assert credited, "the worker's event for the order carries its number"
    assert credited[0]["logger"] == "gophermart.worker"


# --- the documentation names what exists ----------------------------------------------


def test_operations_doc_and_dashboard_name_only_real_metrics() -> None:
    from gophermart import LedgerGauges, Points
    from gophermart.application.ports import WebhookLag
    from gophermart.entrypoints.metrics import (
        Metrics,
        _LedgerCollector,
        _QueueCollector,
        _WebhookLagCollector,
    )

    root = Path(__file__).resolve().parents[2]
    metrics = Metrics()
    defined = set()
    for attribute in [*vars(metrics).values(), *vars(metrics.webhooks).values()]:
        describe = getattr(attribute, "describe", None)
        if describe is not None:
            for family in describe():
                defined |= {family.name, family.name + "_total", family.name + "_bucket"}
    defined |= {family.name for family in _QueueCollector(None).collect()}
    nothing_open = LedgerGauges(0, Points(0), 0, Points(0))
    defined |= {family.name for family in _LedgerCollector(nothing_open).collect()}
    defined |= {family.name for family in _WebhookLagCollector([WebhookLag(1, 0, None)]).collect()}
    defined.add("gophermart_accrual_queue_orders")

    doc = (root / "docs" / "operations.md").read_text()
    documented = set(re.findall(r"`(gophermart_[a-z_]+)`", doc))
    assert documented, "docs/operations.md lists no metric"
    assert documented <= defined, documented - defined
    counters_and_gauges = {n for n in defined if not n.endswith(("_bucket", "_total"))}
    missing = {n for n in counters_and_gauges if n not in doc and n + "_total" not in doc}
    assert not missing, f"metrics not documented: {missing}"

    dashboard = json.loads((root / "docs" / "grafana-dashboard.json").read_text())
    assert len(dashboard["panels"]) == 5
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for name in re.findall(r"gophermart_[a-z_]+", target["expr"]):
                assert name in defined, (panel["title"], name)
