"""Shared fixtures: throwaway databases on SQLite and PostgreSQL, and real servers.

PostgreSQL tests are not optional: if the server cannot be reached they fail, loudly,
unless GOPHERMART_SKIP_PG=1 says on purpose that this run is SQLite-only.
Each PostgreSQL test database is created for the test and dropped after it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from gophermart import Gophermart
from gophermart.testing import FrozenClock, loyalty_for_tests
from tests.ports import free_port

PG_ADMIN_DSN = os.environ.get(
    "GOPHERMART_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
SKIP_PG = os.environ.get("GOPHERMART_SKIP_PG") == "1"
TEST_SECRET = "test-secret-" + "x" * 40


def _with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + name))


async def _admin_async(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _admin(sql: str) -> None:
    """Run one admin statement on its own thread and loop: fixtures that need a database
    are also requested from async fixtures, where this thread's loop is already running."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _admin_async(sql)).result()


@pytest.fixture(scope="session")
def postgres_available() -> None:
    if SKIP_PG:
        pytest.skip("GOPHERMART_SKIP_PG=1: PostgreSQL tests deliberately skipped")
    try:
        _admin("SELECT 1")
    except Exception as exc:  # fail, never skip: a missing database is a broken setup
        pytest.fail(
            f"PostgreSQL is required at {PG_ADMIN_DSN} ({exc}); start it or set "
            "GOPHERMART_SKIP_PG=1 to run the SQLite half only",
            pytrace=False,
        )


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """Create a database for the caller and drop it afterwards, whatever happens."""
    name = f"gm_test_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(PG_ADMIN_DSN, name) + "?sslmode=disable"
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_uri(postgres_available: None) -> Iterator[str]:
    """A fresh, empty PostgreSQL database as a libpq URI with ?sslmode=disable."""
    with throwaway_postgres() as uri:
        yield uri


@pytest.fixture
def sqlite_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'gophermart.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_uri(request: pytest.FixtureRequest) -> str:
    """Runs the test once per SQL engine."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_uri"))
    return str(request.getfixturevalue("postgres_uri"))


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def backend_uri(request: pytest.FixtureRequest) -> str:
    """Runs the test once per store: memory, SQLite, PostgreSQL."""
    if request.param == "memory":
        return "memory://"
    fixture = "sqlite_uri" if request.param == "sqlite" else "postgres_uri"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def clock() -> FrozenClock:
    """A clock the test moves by hand."""
    return FrozenClock()


@pytest.fixture
async def loyalty(backend_uri: str, clock: FrozenClock) -> AsyncIterator[Gophermart]:
    """The library with the test doubles on each store (``backend_uri``), on ``clock``."""
    async with loyalty_for_tests(clock=clock, database_uri=backend_uri) as opened:
        yield opened


def wait_until_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=0.5)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up within {timeout}s")


@dataclass
class Service:
    """A ``gophermart`` process serving on a real socket."""

    url: str
    proc: subprocess.Popen[bytes]
    database_uri: str
    log: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def output(self) -> str:
        """Everything the process printed (a file, not a pipe: a pipe nobody reads fills
        up and freezes a chatty process)."""
        return self.log.read_text(errors="replace")


def start_service(
    database_uri: str,
    *args: str,
    accrual: str | None = None,
    env: dict[str, str] | None = None,
    secret: str | None = TEST_SECRET,
    address_flag: str | None = None,
    preexec: Callable[[], None] | None = None,
) -> Service:
    """Start ``python -m gophermart *args`` on a free port and wait until it answers.

    ``address_flag`` (e.g. ``":{port}"``) passes the address as ``-a`` instead of env;
    ``preexec`` runs in the child before it starts (e.g. to lower its open-file limit).
    """
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("GOPHERMART_")}
    full_env.update(env or {})
    if secret:
        full_env["GOPHERMART_SECRET"] = secret
    full_env["RUN_ADDRESS"] = f"127.0.0.1:{port}"
    full_env["DATABASE_URI"] = database_uri
    full_env.pop("ACCRUAL_SYSTEM_ADDRESS", None)
    if accrual:
        full_env["ACCRUAL_SYSTEM_ADDRESS"] = accrual
    if address_flag is not None:
        args = ("-a", address_flag.format(port=port), *args)
        full_env["RUN_ADDRESS"] = "bogus-the-flag-must-win"
    log = Path(tempfile.mkstemp(prefix=f"gophermart-{port}-", suffix=".log")[1])
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gophermart", *args],
            env=full_env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec,  # e.g. a resource limit, set before exec
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url + "/healthz", proc)
    except Exception as exc:
        proc.kill()
        raise RuntimeError(f"{exc}; its output:\n{log.read_text(errors='replace')}") from None
    return Service(url, proc, database_uri, log)


@pytest.fixture
def service(database_uri: str) -> Iterator[Service]:
    """The service on a real socket, once per engine; must exit 0 on SIGTERM."""
    svc = start_service(database_uri)
    try:
        yield svc
    finally:
        code = svc.stop()
        assert code == 0, f"service exited with {code}:\n{svc.output()}"


# --- scheduling over pytest-xdist workers ------------------------------------------
#
# The suite mostly waits (servers starting, workers polling, timeouts running out), so nox
# runs it on several xdist workers with --dist loadscope (pyproject addopts, inert without
# -n): each module goes to one worker whole, so a module's shared servers (module-scoped
# fixtures) start once. The modules go out in the order below, longest first.
# (--dist loadgroup would allow finer units, but pytest-xdist 3.8 cannot tag pytest 9's
# node ids with a group: it falls back to one test per unit.)

_SHARED_SCOPES = frozenset({"module", "package", "class"})
#: Long modules whose scenarios carry no slow mark (a minute of server processes each).
_LONG_MODULES = frozenset({"tests/integration/test_login_throttle.py"})
#: The first modules out, in this order: the longest (the rate limit's minute, mostly
#: idle), beside it the outage and fault scenarios, whose bounds are timings (better not
#: beside the crash scenarios' 300 orders and 20 argon2 sign-ups, which come next).
_FIRST_MODULES = (
    "tests/integration/test_accrual_rate_limit.py",
    "tests/integration/test_db_faults.py",
    "tests/integration/test_accrual_faults.py",
    "tests/integration/test_accrual_crash.py",
)


def _shares_a_fixture(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(
        str(definition.scope) in _SHARED_SCOPES
        for definitions in info.name2fixturedefs.values()
        for definition in definitions
    )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with slow scenarios first, then modules whose tests share a server, then
    the other integration modules, unit tests last; pytest's order within a module."""
    rank: dict[str, int] = {}
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        if "tests/unit/" in module:
            here = 3
        elif item.get_closest_marker("slow") or module in _LONG_MODULES:
            here = 0
        elif _shares_a_fixture(item):
            here = 1
        else:
            here = 2
        rank[module] = min(rank.get(module, here), here)

    def order(item: pytest.Item) -> tuple[int, int]:
        module = item.nodeid.split("::", 1)[0]
        first = _FIRST_MODULES.index(module) if module in _FIRST_MODULES else len(_FIRST_MODULES)
        return rank[module], first

    items.sort(key=order)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI a skipped test is a failure: nothing may silently not run."""
    if os.environ.get("GOPHERMART_FORBID_SKIPS") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped:
        print(f"\nGOPHERMART_FORBID_SKIPS=1: {skipped} test(s) were skipped; failing the run")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
