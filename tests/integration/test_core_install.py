"""`pip install gophermart` without extras, as the library and the command meet it.

The suite's venv has every extra installed, so a core-only install is made here by
hiding the extras' modules from a fresh interpreter (``sys.modules[name] = None`` makes
``import name`` raise ModuleNotFoundError, as an absent package does). `nox -s bare`
checks the same on a real bare install of the built wheel; these run on every suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import gophermart
from gophermart.extras import MODULES

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
#: Prepended to every snippet: the interpreter then behaves as if only the core were
#: installed (nothing of it has been imported yet when this runs).
WITHOUT_EXTRAS = (
    f"import sys\nfor _name in {sorted(MODULES['server'])!r}:\n    sys.modules[_name] = None\n"
)


#: Settings a developer's shell might carry that would change what a command does.
UNSET = ("RUN_ADDRESS", "DATABASE_URI", "ACCRUAL_SYSTEM_ADDRESS")


def core_only(code: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if k not in UNSET and not k.startswith("GOPHERMART_")
    }
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRAS + code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
        env=env,
    )


def printed(code: str) -> str:
    """What ``code`` prints on the core alone (it must not fail)."""
    result = core_only(code)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_import_gophermart_imports_no_extra() -> None:
    count = printed(
        "import gophermart, gophermart.testing\n"
        f"loaded = sorted(n for n in {sorted(MODULES['server'])!r} if sys.modules.get(n))\n"
        "assert not loaded, loaded\n"
        "print(len(gophermart.__all__))\n"
    )
    assert int(count) == len(gophermart.__all__)


@pytest.mark.parametrize("example", ["quickstart.py", "blocking_shop.py"])
def test_the_examples_that_need_no_extra_run_on_the_core(example: str, tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'shop.db'}"
    script = EXAMPLES / example
    result = core_only(
        f"sys.argv = [{str(script)!r}, {database!r}]\n"
        f"import runpy\nrunpy.run_path({str(script)!r}, run_name='__main__')\n",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip(), "the example printed nothing"


def test_the_http_names_say_which_extra_they_need() -> None:
    assert printed(
        "try:\n    from gophermart import http_router\n"
        "except ModuleNotFoundError as exc:\n    print(exc.name, '|', exc)\n"
    ) == ("litestar | gophermart.http_router needs the http extra: pip install 'gophermart[http]'")


def test_postgresql_without_asyncpg_is_a_config_error_naming_the_extra() -> None:
    assert printed(
        "import asyncio\nfrom gophermart import ConfigError, Gophermart\n"
        "async def main():\n"
        "    async with Gophermart.open('postgresql://postgres@127.0.0.1:1/none'):\n"
        "        pass\n"
        "try:\n    asyncio.run(main())\n"
        "except ConfigError as exc:\n    print(exc)\n"
    ) == ("DATABASE_URI: PostgreSQL needs the postgres extra: pip install 'gophermart[postgres]'")


def cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return core_only(
        f"from gophermart.entrypoints.cli import main\nsys.exit(main({list(argv)!r}))\n", cwd
    )


SERVER_EXTRA = "needs the server extra: pip install 'gophermart[server]'"


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        ([], f"gophermart: the HTTP server {SERVER_EXTRA}"),
        (["-a", "127.0.0.1:1"], f"gophermart: the HTTP server {SERVER_EXTRA}"),
        (["worker", "-r", "http://127.0.0.1:1"], f"gophermart: the accrual worker {SERVER_EXTRA}"),
        (["accrual-sim"], f"gophermart: the accrual simulator {SERVER_EXTRA}"),
        (
            ["migrate", "-d", "postgresql://postgres@127.0.0.1:1/none"],
            "gophermart: DATABASE_URI: PostgreSQL needs the postgres extra: "
            "pip install 'gophermart[postgres]'",
        ),
        (
            ["reconcile", "--log-format", "json"],
            f"gophermart: GOPHERMART_LOG_FORMAT: 'json' {SERVER_EXTRA}",
        ),
    ],
)
def test_the_command_names_the_missing_extra_in_one_line(
    argv: list[str], line: str, tmp_path: Path
) -> None:
    result = cli(*argv, cwd=tmp_path)
    assert (result.returncode, result.stderr) == (2, line + "\n"), result.stderr


def test_migrate_and_reconcile_work_on_the_core(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'shop.db'}"
    migrated = cli("migrate", "-d", database, cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    assert "this release's" in migrated.stdout
    reconciled = cli("reconcile", "-d", database, cwd=tmp_path)
    assert reconciled.returncode == 0, reconciled.stderr
    assert "all balances match the ledger" in reconciled.stdout


def test_operator_add_works_on_the_core(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'shop.db'}"
    assert cli("migrate", "-d", database, cwd=tmp_path).returncode == 0
    added = cli("operator", "add", "ops", "-d", database, cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    assert added.stdout.splitlines()[-1].startswith("gmo_")


def test_version_is_the_package_s(tmp_path: Path) -> None:
    result = cli("--version", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, f"gophermart {gophermart.__version__}\n")
