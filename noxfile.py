"""Developer sessions: `nox` runs lint, types and tests (what CI runs).

nox -s serve      run the service on ./gophermart.db (localhost:8080)
nox -s lint       ruff (lint + format check) and the import-layer contracts
nox -s types      mypy (strict on domain and application)
nox -s tests      the whole test suite: unit, SQLite, PostgreSQL, end to end
nox -s bench      the benchmark suite against PostgreSQL (not part of `nox`)
"""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["lint", "types", "tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

DEV = ".[dev]"


@nox.session
def lint(session: nox.Session) -> None:
    session.install("-e", DEV)
    session.run("ruff", "check", "src", "tests", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "benchmarks", "noxfile.py")
    session.run("lint-imports")


@nox.session
def types(session: nox.Session) -> None:
    session.install("-e", DEV)
    session.run("mypy")


@nox.session
def tests(session: nox.Session) -> None:
    session.install("-e", DEV)
    session.run("pytest", *(session.posargs or ["-q"]), env={"PYTHONUTF8": "1"})


@nox.session
def serve(session: nox.Session) -> None:
    session.install("-e", ".")
    session.run("gophermart", *session.posargs, env={"PYTHONUNBUFFERED": "1"})


@nox.session
def bench(session: nox.Session) -> None:
    session.install("-e", DEV)
    session.run("python", "benchmarks/run.py", *session.posargs, env=dict(os.environ))
