"""Migrations as a deployment step (SPEC "Embedding"): ``gophermart migrate`` (and
``--sql``), the ``migrate`` verb, and a start told not to migrate refusing a database
that is behind, in one line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gophermart import ConfigError, Gophermart
from gophermart.testing import TEST_SECRET


def gophermart(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gophermart", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def _lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and "[info]" not in line]


async def test_a_start_told_not_to_migrate_refuses_a_database_behind(database_uri: str) -> None:
    behind = Gophermart.open(database_uri, secret=TEST_SECRET, migrate=False)
    with pytest.raises(ConfigError, match=r"not migrated.*gophermart migrate") as refused:
        await behind.start()
    assert refused.value.setting == "DATABASE_URI"
    migrated = gophermart("migrate", "-d", database_uri)
    assert migrated.returncode == 0, migrated.stderr
    assert "this release's" in migrated.stdout
    async with Gophermart.open(database_uri, secret=TEST_SECRET, migrate=False) as ready:
        assert (await ready.schema()).is_current
        assert (await ready.migrate()).is_current  # idempotent


def test_the_server_and_reconcile_refuse_an_unmigrated_database_in_one_line(
    sqlite_uri: str,
) -> None:
    import os

    env = {**os.environ, "GOPHERMART_MIGRATE": "0", "DATABASE_URI": sqlite_uri}
    for args in (["-a", "127.0.0.1:0"], ["reconcile"]):
        refused = gophermart(*args, env=env)
        assert refused.returncode == 2, refused.stderr
        lines = _lines(refused.stderr)
        assert len(lines) == 1 and "gophermart migrate" in lines[0], refused.stderr
        assert "Traceback" not in refused.stderr


def test_migrate_sql_prints_the_schema_without_connecting() -> None:
    for uri, marker in (
        ("postgresql://nobody@127.0.0.1:1/nowhere", "BIGSERIAL"),
        ("sqlite:///never-opened.db", "CREATE TABLE"),
    ):
        printed = gophermart("migrate", "--sql", "-d", uri)
        assert printed.returncode == 0, printed.stderr
        assert "CREATE TABLE" in printed.stdout and marker in printed.stdout
    in_schema = gophermart(
        "migrate", "--sql", "--db-schema", "loyalty", "-d", "postgresql://nobody@127.0.0.1:1/x"
    )
    assert in_schema.returncode == 0, in_schema.stderr
    script = in_schema.stdout
    assert script.index('CREATE SCHEMA IF NOT EXISTS "loyalty"') < script.index("CREATE TABLE")
    assert 'SET SESSION search_path TO "loyalty"' in script
    assert "CREATE TABLE loyalty.gophermart_alembic_version" in script
