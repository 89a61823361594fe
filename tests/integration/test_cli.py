"""The ``gophermart`` command as an operator meets it: settings, errors, signals."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from gophermart import Gophermart
from gophermart.domain.users import UserId
from gophermart.entrypoints.cli import build_parser, resolve_settings
from gophermart.settings import ConfigError, parse_listen_address
from tests.conftest import start_service, wait_until_up
from tests.ports import free_port


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RUN_ADDRESS", "DATABASE_URI", "ACCRUAL_SYSTEM_ADDRESS")
    }
    return subprocess.run(
        [sys.executable, "-m", "gophermart", *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_help_explains_every_setting() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    # SPEC: `gophermart --help` lists every setting by its env var name.
    from gophermart.settings import options

    unlisted = [option.env for _, option, _ in options() if option.env not in result.stdout]
    assert not unlisted, unlisted
    for needle in (
        "RUN_ADDRESS",
        "DATABASE_URI",
        "ACCRUAL_SYSTEM_ADDRESS",
        "-a",
        "-d",
        "-r",
        "worker",
        "reconcile",
        "operator",
        "accrual-sim",
        "GOPHERMART_METRICS",
        "GOPHERMART_LOG_FORMAT",
        "GOPHERMART_ACCESS_LOG",
        "GOPHERMART_ACCRUAL_TIMEOUT",
    ):
        assert needle in result.stdout, needle


#: Settings the command refuses before anything starts: (flags, env, the setting named).
REFUSED_SETTINGS = [
    (["-a", "localhost:http"], {}, "RUN_ADDRESS"),
    (["-a", "localhost:99999"], {}, "RUN_ADDRESS"),
    (["-r", "ftp://x"], {}, "ACCRUAL_SYSTEM_ADDRESS"),
    ([], {"GOPHERMART_SECRET": "short"}, "GOPHERMART_SECRET"),
    ([], {"GOPHERMART_WORKERS": "zero"}, "GOPHERMART_WORKERS"),
    ([], {"GOPHERMART_LOG_FORMAT": "xml"}, "GOPHERMART_LOG_FORMAT"),
    ([], {"GOPHERMART_METRICS": "maybe"}, "GOPHERMART_METRICS"),
    ([], {"GOPHERMART_ACCESS_LOG": "loud"}, "GOPHERMART_ACCESS_LOG"),
    ([], {"GOPHERMART_ACCRUAL_TIMEOUT": "soon"}, "GOPHERMART_ACCRUAL_TIMEOUT"),
    (["--accrual-timeout", "0.1"], {}, "GOPHERMART_ACCRUAL_TIMEOUT"),
    (["--accrual-timeout", "nan"], {}, "GOPHERMART_ACCRUAL_TIMEOUT"),
]


@pytest.mark.parametrize(("args", "env", "names"), REFUSED_SETTINGS)
def test_unusable_settings_are_refused_in_one_line_naming_the_setting(
    args: list[str], env: dict[str, str], names: str
) -> None:
    """Each refusal, in this process: the settings are read before anything starts, and
    the command prints the refusal as its one line (the process test below)."""
    parsed = build_parser().parse_args(["-a", "127.0.0.1:8080", *args])
    with pytest.raises(ConfigError) as refused:
        resolve_settings(parsed, {"DATABASE_URI": "sqlite:///ok.db", **env})
    assert names in str(refused.value)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("args", "env", "names"),
    [
        # the database, found unusable as the command starts: each way it can be
        (["-d", "mysql://root@localhost/db"], {}, "DATABASE_URI"),
        (["-d", "sqlite:///no/such/dir/x.db"], {}, "DATABASE_URI"),
        (["-d", "not a uri"], {}, "DATABASE_URI"),
        (
            [],
            {"DATABASE_URI": "postgresql://postgres@127.0.0.1:1/nope?sslmode=disable"},
            "DATABASE_URI",
        ),
        (["-d", "postgres://postgres@127.0.0.1:5432/db?sslmode=bogus"], {}, "DATABASE_URI"),
        # the settings refused above, through the real command: one by env, one by flag
        ([], {"GOPHERMART_WORKERS": "zero"}, "GOPHERMART_WORKERS"),
        (["--accrual-timeout", "nan"], {}, "GOPHERMART_ACCRUAL_TIMEOUT"),
    ],
)
def test_unusable_settings_fail_with_one_line_naming_the_setting(
    tmp_path: Path, args: list[str], env: dict[str, str], names: str
) -> None:
    result = run_cli(
        "-a",
        f"127.0.0.1:{free_port()}",
        *args,
        env={"DATABASE_URI": f"sqlite:///{tmp_path}/ok.db", **env}
        if "DATABASE_URI" not in env
        else env,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    lines = [
        line
        for line in result.stderr.splitlines()
        if line.strip() and " INFO " not in line and "[info]" not in line
    ]
    assert len(lines) == 1, result.stderr
    assert names in lines[0]
    assert "Traceback" not in result.stderr


def test_a_taken_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("-a", f"127.0.0.1:{port}", "-d", f"sqlite:///{tmp_path}/p.db")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "RUN_ADDRESS" in result.stderr and str(port) in result.stderr


def test_a_worker_without_an_accrual_system_expires_holds_and_leaves_orders_new(
    tmp_path: Path,
) -> None:
    """Before: it refused to start without ACCRUAL_SYSTEM_ADDRESS. Holds, events and
    webhooks gave the worker work of its own, which a shop without an accrual system
    needs done too."""
    from tests.integration.test_accrual_e2e import clean_env

    uri = f"sqlite:///{tmp_path}/w.db"
    new_order = "12345678903"

    async def seed() -> UserId:
        async with Gophermart.open(uri) as loyalty:
            user = await loyalty.register("wendy", "pw")
            await loyalty.upload_order(user.user_id, "9278923470")
            await loyalty.record_accrual("9278923470", 100)
            await loyalty.upload_order(user.user_id, new_order)
            await loyalty.hold(user.user_id, "2377225624", "30", ttl=1)
            return user.user_id

    async def held_and_statuses(user_id: UserId) -> tuple[int, set[str]]:
        async with Gophermart.open(uri) as loyalty:
            balance = await loyalty.balance(user_id)
            orders = await loyalty.orders(user_id)
        return balance.held.cents, {o.status for o in orders if o.number == new_order}

    user_id = asyncio.run(seed())
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gophermart", "worker", "-d", uri],
            env=clean_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        held, statuses = asyncio.run(held_and_statuses(user_id))
        while held and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            held, statuses = asyncio.run(held_and_statuses(user_id))
        log = log_path.read_text()
        assert proc.poll() is None, log
        assert held == 0, f"the hold was not expired: {log}"
        assert statuses == {"NEW"}
        assert "without an accrual system" in log, log
    finally:
        proc.terminate()
        assert proc.wait(30) == 0, log_path.read_text()


def test_flags_win_over_environment(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gophermart",
            "-a",
            f"127.0.0.1:{port}",
            "-d",
            f"sqlite:///{tmp_path}/flag.db",
        ],
        env={**os.environ, "RUN_ADDRESS": "bogus", "DATABASE_URI": "mysql://nope"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", proc)
        assert (tmp_path / "flag.db").exists()
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0


@pytest.mark.parametrize(
    ("form", "where"),
    [
        (":8080", ("0.0.0.0", 8080)),  # all interfaces
        ("http://127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
    ],
)
def test_run_address_forms(form: str, where: tuple[str, int]) -> None:
    """Each form of -a, read as the command reads it (the flag winning over a bogus
    RUN_ADDRESS) and turned into the address the server binds."""
    settings = resolve_settings(build_parser().parse_args(["-a", form]), {"RUN_ADDRESS": "bogus"})
    assert parse_listen_address(settings.run_address) == where


def test_run_address_of_all_interfaces_serves(tmp_path: Path) -> None:
    """The real command on ":port" (every interface), reached on 127.0.0.1."""
    svc = start_service(f"sqlite:///{tmp_path}/a.db", address_flag=":{port}")
    try:
        assert httpx.get(svc.url + "/healthz").status_code == 200
    finally:
        assert svc.stop() == 0


def test_postgres_uri_as_operators_pass_it(postgres_uri: str) -> None:
    """The issue's own example: env vars, `postgres://` scheme, `?sslmode=disable`."""
    uri = postgres_uri.replace("postgresql://", "postgres://", 1)
    assert "sslmode=disable" in uri
    svc = start_service(uri)
    try:
        response = httpx.post(
            svc.url + "/api/user/register", json={"login": "op", "password": "pw"}
        )
        assert response.status_code == 200
        assert response.headers["authorization"].startswith("Bearer ")
        assert "HttpOnly" in response.headers["set-cookie"]
    finally:
        assert svc.stop() == 0


async def test_generated_secret_survives_a_restart(tmp_path: Path) -> None:
    """Without GOPHERMART_SECRET the key is kept in the database: restarts keep sessions.
    Two openings of the store as the command's start-up settles it (no secret given);
    the command itself with a generated key: test_two_processes_share_the_port_and_the_secret."""
    uri = f"sqlite:///{tmp_path}/secret.db"
    async with Gophermart.open(uri) as first:
        registered = await first.register("k", "pw")
    async with Gophermart.open(uri) as second:
        assert second.authenticate(registered.token) == registered.user_id
        assert await second.balance(registered.user_id) is not None


def test_two_processes_share_the_port_and_the_secret(tmp_path: Path) -> None:
    svc = start_service(f"sqlite:///{tmp_path}/multi.db", "-w", "2", secret=None)
    try:
        token = httpx.post(
            svc.url + "/api/user/register", json={"login": "m", "password": "pw"}
        ).headers["authorization"]
        # Fresh connections land on either process; every one must accept the token.
        codes = {
            httpx.get(svc.url + "/api/user/balance", headers={"Authorization": token}).status_code
            for _ in range(20)
        }
        assert codes == {200}
    finally:
        assert svc.stop() == 0


# --- operators (issue 17) -------------------------------------------------------------


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip() and "[info]" not in line]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_operator_add_prints_the_key_last_and_it_opens_the_admin_routes(tmp_path: Path) -> None:
    """The real command beside a real server on one database: the key is the last line
    of what `operator add` prints, alone; the server takes it at once, for /api/admin/
    only, and refuses it once `operator revoke` ran. Names taken or unknown: one line."""
    uri = f"sqlite:///{tmp_path}/ops.db"
    svc = start_service(uri)
    try:
        added = run_cli("operator", "add", "night shift", "-d", uri)
        assert added.returncode == 0, added.stderr
        *before, key = added.stdout.splitlines()
        assert key.startswith("gmo_") and len(key) == 47 and key.strip() == key
        assert key not in "\n".join(before) and key not in added.stderr
        operator = {"Authorization": f"Bearer {key}"}
        admin = httpx.get(f"{svc.url}/api/admin/users/nobody", headers=operator, timeout=10)
        assert admin.status_code == 404, admin.text  # let in: there is no such user
        shopper = httpx.get(f"{svc.url}/api/user/balance", headers=operator, timeout=10)
        assert shopper.status_code == 401

        taken = run_cli("operator", "add", "night shift", "-d", uri)
        assert taken.returncode == 1 and "night shift" in _one_line(taken.stderr)
        assert "gmo_" not in taken.stdout

        revoked = run_cli("operator", "-d", uri, "revoke", "night shift")
        assert revoked.returncode == 0, revoked.stderr
        refused = httpx.get(f"{svc.url}/api/admin/users/nobody", headers=operator, timeout=10)
        assert refused.status_code == 401
        unknown = run_cli("operator", "revoke", "night shift", "-d", uri)
        assert unknown.returncode == 1 and "night shift" in _one_line(unknown.stderr)
    finally:
        assert svc.stop() == 0, svc.output()


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["add", "ops", "-d", "mysql://root@localhost/db"], "DATABASE_URI"),
        (["add", "ops", "-d", "memory://"], "DATABASE_URI"),
        (["revoke", "ops", "--db-timeout", "never"], "GOPHERMART_DB_TIMEOUT"),
        (["add", "ops"], "gophermart migrate"),  # a database never migrated
    ],
)
def test_operator_refuses_unusable_settings_in_one_line(
    tmp_path: Path, args: list[str], named: str
) -> None:
    result = run_cli("operator", *args, env={"DATABASE_URI": f"sqlite:///{tmp_path}/new.db"})
    assert result.returncode == 2, result.stderr
    assert named in _one_line(result.stderr)
    assert result.stdout == ""
