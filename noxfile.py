"""Developer sessions: `nox` runs lint, types and tests (what CI runs).

nox -s serve      run the service on ./gophermart.db (localhost:8080)
nox -s lint       ruff (lint + format check) and the import-layer contracts
nox -s types      mypy (strict on domain and application)
nox -s tests      the whole test suite: unit, SQLite, PostgreSQL, end to end
nox -s examples   examples/ against the installed wheel (not the source tree), mypy --strict
nox -s bench      the benchmark suite against PostgreSQL (not part of `nox`)
nox -s pairs -- --baseline REF   back-to-back pairs: REF's tree vs the working tree
"""

from __future__ import annotations

import os
import re
import tomllib

import nox

nox.options.sessions = ["lint", "types", "tests", "examples"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True
# lint, types and examples run side by side (each in its own virtualenv, output printed as
# each ends); the tests run alone after them, so no timing test shares the cores with a
# pip install or mypy. `nox -j 1` runs everything one after another.
nox.options.parallel = 3

DEV = ".[dev]"


def dev_requirements(*names: str) -> list[str]:
    """The dev extra's pinned requirement of each of ``names``: pyproject.toml stays the
    one place the pins live, and a session installs only the tools it runs."""
    with open("pyproject.toml", "rb") as f:
        dev = tomllib.load(f)["project"]["optional-dependencies"]["dev"]
    picked = [req for req in dev if re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0] in names]
    if len(picked) != len(names):
        raise ValueError(f"not all of {names} are in the dev extra: {picked}")
    return picked


@nox.session(allow_parallel=True)
def lint(session: nox.Session) -> None:
    session.install("-e", ".", *dev_requirements("ruff", "import-linter"))
    session.run("ruff", "check", "src", "tests", "benchmarks", "examples", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "benchmarks", "examples", "noxfile.py")
    session.run("lint-imports")


@nox.session(allow_parallel=True)
def types(session: nox.Session) -> None:
    session.install("-e", ".", *dev_requirements("mypy"))
    session.run("mypy")


@nox.session
def tests(session: nox.Session) -> None:
    session.install("-e", DEV)
    # Two xdist workers: the end-to-end tests mostly wait (servers starting, workers
    # polling, timeouts running out), and some hold the service to timings (outages,
    # leases, pacing), which a third worker's load on two shared cores broke in runs on
    # a busy machine. `-- -n 0` for one process. The slowest 25 are listed at the end.
    args = session.posargs or ["-q", "--durations=25"]
    session.run("pytest", "-n", "2", *args, env={"PYTHONUTF8": "1"})


@nox.session(allow_parallel=True)
def examples(session: nox.Session) -> None:
    """What a host gets from `pip install gophermart`: each example runs against the
    installed package, from a scratch directory, and type-checks under mypy --strict."""
    session.install(".", "pytest>=8", "mypy==2.4.1")
    scratch = os.path.abspath(session.create_tmp())
    examples_dir = os.path.abspath("examples")
    session.chdir(scratch)
    where = session.run(
        "python", "-c", "import gophermart; print(gophermart.__file__)", silent=True
    )
    if where is None or "site-packages" not in str(where):
        session.error(f"gophermart is not the installed package here: {where}")
    for script in ("quickstart.py", "blocking_shop.py", "mounted_api.py"):
        db = os.path.join(scratch, script.replace(".py", ".db"))
        for leftover in (db, db + "-wal", db + "-shm"):
            if os.path.exists(leftover):
                os.remove(leftover)
        session.run("python", os.path.join(examples_dir, script), f"sqlite:///{db}")
    ini = os.path.join(scratch, "pytest.ini")  # not the project's: no source-tree settings
    with open(ini, "w") as f:
        f.write("[pytest]\n")
    session.run("pytest", "-q", "-p", "no:cacheprovider", "-c", ini, examples_dir)
    session.run("mypy", "--strict", "--no-incremental", examples_dir)


@nox.session
def serve(session: nox.Session) -> None:
    session.install("-e", ".")
    session.run("gophermart", *session.posargs, env={"PYTHONUNBUFFERED": "1"})


@nox.session
def bench(session: nox.Session) -> None:
    session.install("-e", DEV)
    session.run("python", "benchmarks/run.py", *session.posargs, env=dict(os.environ))


@nox.session
def pairs(session: nox.Session) -> None:
    session.install("-e", DEV)
    session.run("python", "benchmarks/pairs.py", *session.posargs, env=dict(os.environ))
