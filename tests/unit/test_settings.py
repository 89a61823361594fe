"""Every setting declared once (settings.py): the CLI, the environment, --help and the
README's table come from the declarations."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from gophermart import GophermartError
from gophermart.entrypoints.cli import build_parser, resolve_settings
from gophermart.settings import (
    ConfigError,
    DatabaseTarget,
    Settings,
    default_text,
    options,
    resolve,
)

README = Path(__file__).resolve().parents[2] / "README.md"


def test_flags_win_over_the_environment_which_wins_over_defaults() -> None:
    env = {"RUN_ADDRESS": "0.0.0.0:9000", "GOPHERMART_TOKEN_TTL": "120"}
    args = build_parser().parse_args(["-a", "127.0.0.1:8001", "-w", "3"])
    settings = resolve_settings(args, env)
    assert settings.run_address == "127.0.0.1:8001"  # flag over env
    assert settings.token_ttl == timedelta(seconds=120)  # env over default
    assert settings.workers == 3
    assert settings.db_timeout == Settings().db_timeout  # default


def test_the_database_uri_is_parsed_once_into_a_target() -> None:
    settings = resolve({}, {"DATABASE_URI": "postgres://u:p@db:5433/shop?sslmode=disable"})
    assert settings.database == DatabaseTarget(
        "postgresql", "postgres://u:p@db:5433/shop?sslmode=disable"
    )
    assert settings.database.display == "postgresql://db:5433/shop"  # no credentials
    assert Settings.for_database("memory://").backend == "memory"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"DATABASE_URI": "mysql://x"}, "DATABASE_URI"),
        ({"GOPHERMART_WORKERS": "0"}, "GOPHERMART_WORKERS"),
        ({"GOPHERMART_SECRET": "short"}, "GOPHERMART_SECRET"),
        ({"GOPHERMART_TRUSTED_PROXIES": "not-an-ip"}, "GOPHERMART_TRUSTED_PROXIES"),
        ({"GOPHERMART_DB_TIMEOUT": "nan"}, "GOPHERMART_DB_TIMEOUT"),
        ({"GOPHERMART_DB_SCHEMA": "Loyalty"}, "GOPHERMART_DB_SCHEMA"),
        ({"GOPHERMART_DB_SCHEMA": "pg_temp"}, "GOPHERMART_DB_SCHEMA"),
        ({"GOPHERMART_DB_SCHEMA": 'a"; DROP'}, "GOPHERMART_DB_SCHEMA"),
        ({"GOPHERMART_DB_SCHEMA": "loyalty"}, "GOPHERMART_DB_SCHEMA"),  # on SQLite
    ],
)
def test_a_bad_value_is_a_config_error_naming_its_setting(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as refused:
        resolve({}, env)
    assert refused.value.setting == named
    assert str(refused.value).startswith(f"{named}: ")
    assert isinstance(refused.value, GophermartError)


def test_every_setting_has_one_environment_variable_and_a_row_in_the_readme() -> None:
    declared = options()
    names = [option.env for _, option, _ in declared]
    assert len(names) == len(set(names))
    readme = README.read_text(encoding="utf-8")
    rows = [line for line in readme.splitlines() if line.startswith("| ")]
    for _, option, default in declared:
        row = next((r for r in rows if f"`{option.env}`" in r), None)
        assert row is not None, f"{option.env} has no row in the README's table"
        assert default_text(option, default).split(":")[0] in row, (option.env, row)
