"""The pieces behind "an outage looks like an outage" (issue 9, finding 4), one by one.

* :func:`is_unavailable` tells an outage (refused, reset, timed out, shutting down,
  locked past the busy timeout) from an error the database answered with;
* :class:`DatabaseGuard` cuts an operation at its deadline, logs an outage once (and its
  end once), and while the database is down answers at once, letting one probe through
  per interval;
* the HTTP layer answers :class:`StoreUnavailable` with 503, ``Retry-After`` and a JSON
  error, and serves ``/livez``, ``/healthz`` and ``/readyz``;
* :class:`SqlReadiness` checks that the database answers and its schema is current;
* ``GOPHERMART_DB_TIMEOUT`` is a validated setting.

The whole story against a real PostgreSQL stopped and frozen is test_db_faults.py.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import asyncpg
import pytest
import sqlalchemy.exc
from dependency_injector import providers
from litestar.testing import AsyncTestClient
from sqlalchemy import text

from gophermart.adapters.stores import memory
from gophermart.adapters.stores.guard import DatabaseGuard, GuardedUnitOfWork, guarded
from gophermart.adapters.stores.outages import Outage, is_unavailable, outage_of
from gophermart.adapters.stores.sql.migrate import migrate
from gophermart.adapters.stores.sql.readiness import SqlReadiness, alembic_head, revision_on_engine
from gophermart.application.errors import StoreUnavailable
from gophermart.application.readiness import Readiness
from gophermart.bootstrap import Container
from gophermart.domain.errors import InsufficientPoints
from gophermart.domain.points import Points
from gophermart.domain.users import UserId
from gophermart.entrypoints.cli import build_parser, resolve_settings
from gophermart.entrypoints.http.app import http_app
from gophermart.facade import Gophermart
from gophermart.settings import MEMORY_URI, ConfigError, Settings
from gophermart.testing import TEST_SECRET, loyalty_for_tests, use_test_doubles
from tests.integration.test_cli import run_cli
from tests.sql_database import database_for


def _locked_error(tmp_path: Path) -> sqlite3.OperationalError:
    """A real "database is locked" (the sqlite3 module sets its error code itself)."""
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            return exc
        finally:
            other.close()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    raise AssertionError("no lock conflict")


def _raised_while_handling(first: BaseException, then: BaseException) -> BaseException:
    try:
        try:
            raise first
        except BaseException:
            raise then  # noqa: B904 - the implicit context is the point
    except BaseException as exc:
        return exc


# --- telling an outage from an answer ----------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "Connection refused"),
        ConnectionResetError(104, "Connection reset by peer"),
        TimeoutError(),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.QueryCanceledError("canceling statement due to statement timeout"),
        asyncpg.InterfaceError("connection is closed"),
        sqlalchemy.exc.TimeoutError("QueuePool limit of size 2 overflow 3 reached"),
        sqlalchemy.exc.OperationalError("SELECT 1", None, ConnectionRefusedError()),
        _raised_while_handling(TimeoutError(), asyncpg.InterfaceError("released to the pool")),
    ],
    ids=repr,
)
def test_outages_are_recognised(exc: BaseException) -> None:
    assert is_unavailable(exc)


def test_sqlite_locked_past_the_busy_timeout_is_an_outage(tmp_path: Path) -> None:
    locked = _locked_error(tmp_path)
    assert is_unavailable(locked)
    assert is_unavailable(sqlalchemy.exc.OperationalError("BEGIN IMMEDIATE", None, locked))


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("a bug"),
        asyncpg.UniqueViolationError("duplicate key value violates unique constraint"),
        asyncpg.UndefinedTableError('relation "orders" does not exist'),
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
        sqlite3.IntegrityError("UNIQUE constraint failed: orders.number"),
        sqlalchemy.exc.IntegrityError("INSERT", None, sqlite3.IntegrityError("UNIQUE")),
        InsufficientPoints(Points(500), Points(100)),
        asyncio.CancelledError(),
    ],
    ids=repr,
)
def test_answers_and_bugs_are_not_outages(exc: BaseException) -> None:
    assert not is_unavailable(exc)


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (ConnectionRefusedError(111, "Connection refused"), Outage.DOWN),
        (asyncpg.AdminShutdownError("terminating connection"), Outage.DOWN),
        (asyncpg.ConnectionDoesNotExistError("closed in the middle"), Outage.DOWN),
        (asyncpg.InterfaceError("connection is closed"), Outage.DOWN),
        (TimeoutError(), Outage.SLOW),
        (asyncpg.QueryCanceledError("canceling statement due to statement timeout"), Outage.SLOW),
        (asyncpg.LockNotAvailableError("could not obtain lock"), Outage.SLOW),
        (asyncpg.TooManyConnectionsError("sorry, too many clients already"), Outage.SLOW),
        (sqlalchemy.exc.TimeoutError("QueuePool limit of size 2 overflow 3 reached"), Outage.SLOW),
        (asyncpg.DiskFullError("could not extend file"), Outage.FAILED),
        (sqlite3.OperationalError("database or disk is full"), None),  # no error code
    ],
    ids=repr,
)
def test_a_down_database_is_told_from_a_slow_or_refused_operation(
    exc: BaseException, kind: Outage | None
) -> None:
    assert outage_of(exc) is kind


def test_sqlite_says_which_kind_by_its_error_code(tmp_path: Path) -> None:
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = 13  # type: ignore[attr-defined]
    cannot_open = sqlite3.OperationalError("unable to open database file")
    cannot_open.sqlite_errorcode = 14  # type: ignore[attr-defined]
    assert outage_of(full) is Outage.FAILED
    assert outage_of(cannot_open) is Outage.DOWN
    assert outage_of(_locked_error(tmp_path)) is Outage.SLOW


def test_an_error_that_disowns_its_context_is_judged_alone() -> None:
    exc = _raised_while_handling(TimeoutError(), ValueError("a bug"))
    exc.__suppress_context__ = True  # what `raise ... from None` does
    assert not is_unavailable(exc)


# --- the guard ---------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class HangingUnitOfWork:
    """Enters fine; its first statement never answers (a frozen server)."""

    def __init__(self) -> None:
        self.exited_with: type[BaseException] | None = None
        self.users: Any = self
        self.orders: Any = self
        self.accounts: Any = self

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.exited_with = exc_type

    async def add(self, *_args: object) -> None:
        await asyncio.Event().wait()

    async def commit(self) -> None:
        raise AssertionError("never reached")


async def test_a_unit_of_work_that_hangs_is_cut_at_the_deadline() -> None:
    inner = HangingUnitOfWork()
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match=r"no answer within 0\.2s") as caught:
        async with GuardedUnitOfWork(inner, DatabaseGuard(0.2)) as uow:
            await uow.users.add("x", "y")
            await uow.commit()
    assert 0.2 <= time.monotonic() - started < 1.0
    assert caught.value.retry_after == 1
    # The inner unit of work was told it was cut short (and so abandons its connection).
    assert inner.exited_with is asyncio.CancelledError


async def fails(guard: DatabaseGuard, exc: BaseException) -> None:
    with pytest.raises(StoreUnavailable):
        async with guard.watch():
            raise exc


async def test_an_outage_is_logged_once_then_its_end_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    guard = DatabaseGuard(5.0, clock=clock)
    caplog.set_level(logging.INFO, logger="gophermart.database")
    for _ in range(50):  # a minute of probes, each refused
        await fails(guard, ConnectionRefusedError(111, "Connection refused"))
        clock.now += 1.2
    assert guard.is_down
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2, [r.getMessage() for r in errors]  # the start, and 30 s later
    assert "ConnectionRefusedError" in errors[0].getMessage()
    assert "still" in errors[1].getMessage()
    caplog.clear()
    async with guard.watch():
        pass
    assert not guard.is_down
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "answers again" in caplog.records[0].getMessage()


async def test_while_down_requests_fail_at_once_and_one_probe_per_interval_goes_through() -> None:
    clock = Clock()
    guard = DatabaseGuard(5.0, clock=clock)
    await fails(guard, ConnectionRefusedError(111, "Connection refused"))
    ran = []

    async def attempt(name: str, until: asyncio.Event | None = None) -> str:
        try:
            async with guard.watch():
                ran.append(name)
                if until is not None:
                    await until.wait()
        except StoreUnavailable:
            return "refused"
        return "served"

    clock.now += 0.5
    assert await attempt("too soon") == "refused"
    clock.now += 0.6
    answer = asyncio.Event()
    probe = asyncio.create_task(attempt("probe", answer))
    await asyncio.sleep(0)
    assert await attempt("while probing") == "refused"  # one probe at a time
    answer.set()
    assert await probe == "served"
    assert await attempt("after") == "served"
    assert ran == ["probe", "after"]


async def test_a_slow_operation_fails_alone_when_the_database_answers_a_probe(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A row locked by someone else: the operation waiting for it fails (503), the
    probe finds the database answering, and nobody else is refused."""
    probes = []

    async def answers() -> None:
        probes.append("ok")

    guard = DatabaseGuard(5.0, probe=answers)
    caplog.set_level(logging.INFO, logger="gophermart.database")
    for _ in range(3):
        with pytest.raises(StoreUnavailable, match="too slow"):
            async with guard.watch():
                raise asyncpg.QueryCanceledError("canceling statement due to statement timeout")
        await asyncio.sleep(0.01)  # the probe runs
    assert not guard.is_down
    assert probes == ["ok"] * 3
    async with guard.watch():  # a bystander is served
        pass
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "ran out of time" in warnings[0]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_slow_operation_whose_probe_fails_opens_the_breaker() -> None:
    async def refused() -> None:
        raise ConnectionRefusedError(111, "Connection refused")

    guard = DatabaseGuard(0.05, probe=refused)
    with pytest.raises(StoreUnavailable, match="too slow"):
        async with guard.watch():
            await asyncio.Event().wait()  # cut at the deadline
    await asyncio.sleep(0.01)
    assert guard.is_down
    await fails(guard, ValueError("never run: refused at once"))


async def test_a_refused_operation_fails_alone() -> None:
    guard = DatabaseGuard(5.0)
    with pytest.raises(StoreUnavailable, match="refused"):
        async with guard.watch():
            raise asyncpg.DiskFullError("could not extend file")
    assert not guard.is_down
    async with guard.watch():
        pass


async def test_errors_the_database_answered_pass_through_untouched() -> None:
    guard = DatabaseGuard(5.0)
    with pytest.raises(InsufficientPoints):
        async with guard.watch():
            raise InsufficientPoints(Points(500), Points(100))
    assert not guard.is_down


async def test_a_cancellation_from_outside_is_not_an_outage() -> None:
    guard = DatabaseGuard(5.0)

    async def work() -> None:
        async with guard.watch():
            await asyncio.Event().wait()

    task = asyncio.create_task(work())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not guard.is_down


# --- over HTTP -------------------------------------------------------------------


class DownReadModel:
    async def balance(self, user_id: UserId) -> Any:
        raise ConnectionRefusedError(111, "Connection refused")

    orders = withdrawals = balance


class Probe:
    def __init__(self, verdict: Readiness) -> None:
        self.verdict = verdict

    async def __call__(self) -> Readiness:
        return self.verdict


async def client_of(loyalty: Gophermart) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(app=http_app(loyalty)) as client:
        yield client


@pytest.fixture
async def down_api() -> AsyncIterator[AsyncTestClient[Any]]:
    store = memory.Store()
    store.read_model.override(providers.Object(guarded(DownReadModel(), DatabaseGuard(1.0))))
    store.readiness.override(
        providers.Object(
            Probe(Readiness(False, {"database": "unavailable: refused", "migrations": "?"}))
        )
    )
    settings = Settings.for_database(MEMORY_URI, secret=TEST_SECRET)
    loyalty = Gophermart(use_test_doubles(Container(settings=settings, store=store)))
    async for client in client_of(loyalty):
        yield client


async def test_an_outage_answers_503_with_retry_after_and_a_json_error(
    down_api: AsyncTestClient[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for _ in range(3):
        r = await down_api.get("/api/user/balance", headers={"Authorization": "Bearer t1"})
        assert r.status_code == 503
        assert r.headers["retry-after"] == "1"
        assert r.headers["content-type"].startswith("application/json")
        assert "database unavailable" in r.json()["error"]
    http_lines = [r for r in caplog.records if r.name == "gophermart.http"]
    assert not http_lines, "an outage is logged by the guard, once, not per request"
    assert sum("database unavailable" in r.getMessage() for r in caplog.records) == 1


async def test_livez_and_healthz_answer_without_the_database(
    down_api: AsyncTestClient[Any],
) -> None:
    for path in ("/livez", "/healthz"):
        r = await down_api.get(path)
        assert r.status_code == 200 and r.json() == {"status": "ok"}
        assert (await down_api.head(path)).status_code == 200


async def test_readyz_says_what_failed(down_api: AsyncTestClient[Any]) -> None:
    r = await down_api.get("/readyz")
    assert r.status_code == 503
    body = r.json()
    assert body["error"] == "not ready: database: unavailable: refused; migrations: ?"
    assert body["checks"] == {"database": "unavailable: refused", "migrations": "?"}


async def test_readyz_is_200_in_memory() -> None:
    async for client in client_of(loyalty_for_tests()):
        r = await client.get("/readyz")
        assert r.status_code == 200
        assert r.json() == {"status": "ready", "checks": {"database": "ok (in memory)"}}


# --- the readiness check on a real database --------------------------------------


async def test_readiness_wants_the_database_at_this_codes_migration(tmp_path: Path) -> None:
    database = database_for(f"sqlite:///{tmp_path / 'ready.db'}", 2)
    readiness = SqlReadiness(partial(revision_on_engine, database.read), timeout=2)
    try:
        needs = f"this code needs {alembic_head()}"
        assert await readiness() == Readiness(
            False, {"database": "ok", "migrations": f"database not migrated, {needs}"}
        )
        await migrate(database)
        verdict = await readiness()
        assert verdict.ready, verdict
        assert verdict.checks["migrations"] == f"current ({alembic_head()})"
        async with database.write.begin() as conn:
            await conn.execute(
                text("UPDATE gophermart_alembic_version SET version_num = 'from_the_future'")
            )
        verdict = await readiness()
        assert not verdict.ready
        assert verdict.checks["migrations"] == f"database at from_the_future, {needs}"
    finally:
        await database.dispose()


async def test_readiness_of_an_unreachable_database_is_not_ready_and_quick() -> None:
    uri = "postgresql://postgres@127.0.0.1:1/nope?sslmode=disable"
    database = database_for(uri, 1)
    started = time.monotonic()
    try:
        verdict = await SqlReadiness(partial(revision_on_engine, database.read), timeout=1)()
    finally:
        await database.dispose()
    assert time.monotonic() - started < 1.5
    assert not verdict.ready
    assert verdict.checks["database"].startswith("unavailable: "), verdict


# --- the setting -----------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan", "100000"])
def test_an_unusable_db_timeout_is_refused_in_one_line(tmp_path: Path, value: str) -> None:
    parsed = build_parser().parse_args(["reconcile"])
    env = {"DATABASE_URI": f"sqlite:///{tmp_path}/x.db", "GOPHERMART_DB_TIMEOUT": value}
    with pytest.raises(ConfigError) as refused:
        resolve_settings(parsed, env)
    assert "GOPHERMART_DB_TIMEOUT" in str(refused.value) and "\n" not in str(refused.value)


def test_an_unusable_db_timeout_stops_the_start_with_one_line(tmp_path: Path) -> None:
    """The refusal above, through the real command (each value: in this process, above)."""
    result = run_cli(
        "reconcile",
        env={"DATABASE_URI": f"sqlite:///{tmp_path}/x.db", "GOPHERMART_DB_TIMEOUT": "soon"},
    )
    assert result.returncode == 2, result
    assert result.stderr.count("\n") == 1 and "GOPHERMART_DB_TIMEOUT" in result.stderr, result


def test_db_timeout_flag_wins_over_the_environment(tmp_path: Path) -> None:
    result = run_cli(
        "reconcile",
        "--db-timeout",
        "soon",
        env={"DATABASE_URI": f"sqlite:///{tmp_path}/x.db", "GOPHERMART_DB_TIMEOUT": "2"},
    )
    assert result.returncode == 2 and "GOPHERMART_DB_TIMEOUT" in result.stderr, result
