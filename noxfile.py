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

import nox

nox.options.sessions = ["lint", "types", "tests", "examples"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

DEV = ".[dev]"


@nox.session
def lint(session: nox.Session) -> None:
    session.install("-e", DEV)
    session.run("ruff", "check", "src", "tests", "benchmarks", "examples", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "benchmarks", "examples", "noxfile.py")
    session.run("lint-imports")


@nox.session
def types(session: nox.Session) -> None:
    session.install("-e", DEV)
    session.run("mypy")


@nox.session
def tests(session: nox.Session) -> None:
    session.install("-e", DEV)
    # Three xdist workers: the end-to-end tests mostly wait (servers starting, workers
    # polling, timeouts running out), so three keep two cores busy. `-- -n 0` for one process.
    session.run("pytest", "-n", "3", *(session.posargs or ["-q"]), env={"PYTHONUTF8": "1"})


@nox.session
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
