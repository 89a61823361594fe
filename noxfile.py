"""Developer sessions: `nox` runs lint, types and tests (what CI runs).

nox -s serve      run the service on ./gophermart.db (localhost:8080)
nox -s lint       ruff (lint + format check) and the import-layer contracts
nox -s types      mypy (strict on domain and application)
nox -s tests      the whole test suite: unit, SQLite, PostgreSQL, end to end
nox -s examples   examples/ against the installed wheel (not the source tree), mypy --strict
nox -s bare       the wheel installed with no extras: no server stack, and the examples run
nox -s bench      the benchmark suite against PostgreSQL (not part of `nox`)
nox -s pairs -- --baseline REF   back-to-back pairs: REF's tree vs the working tree
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import sys
import tomllib

import nox

nox.options.sessions = ["lint", "types", "examples", "bare", "tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True
# lint, types and examples run side by side (each in its own virtualenv, output printed as
# each ends); the tests run alone after them, so no timing test shares the cores with a
# pip install or mypy. `nox -j 1` runs everything one after another.
nox.options.parallel = 3

DEV = ".[dev]"
HERE = os.path.dirname(os.path.abspath(__file__))
#: What `pip install gophermart` must not bring: the HTTP server's stack and the
#: PostgreSQL driver are extras (pyproject.toml; README, "Installing").
EXTRAS_ONLY = (
    "litestar",
    "uvicorn",
    "uvloop",
    "httptools",
    "swagger-ui-py",
    "prometheus-client",
    "structlog",
    "asyncpg",
)

#: Run by the bare venv's Python: fails naming whichever of its arguments is installed.
ABSENT = """
import sys
from importlib import metadata

present = []
for name in sys.argv[1:]:
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        continue
    present.append(name)
sys.exit(f"pip install gophermart (no extras) pulled {present}" if present else 0)
"""


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
    # Every extra: mypy reads the server's and PostgreSQL's modules too.
    session.install("-e", ".[server]", *dev_requirements("mypy"))
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


#: Run by the examples venv's Python: creates (``create NAME``) or drops (``drop NAME``)
#: a throwaway PostgreSQL database through the admin DSN; fails loudly if unreachable.
THROWAWAY = """
import asyncio, os, sys
import asyncpg

async def main(verb, name):
    dsn = os.environ.get("GOPHERMART_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        if verb == "create":
            await conn.execute(f'CREATE DATABASE "{name}"')
        else:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()

asyncio.run(main(*sys.argv[1:]))
"""
#: The examples run on PostgreSQL as well as SQLite (they take the URL).
ON_POSTGRES = ("shop_checkout.py",)


@nox.session(allow_parallel=True)
def examples(session: nox.Session) -> None:
    """What a host gets from `pip install gophermart[http,postgres]`: each example runs
    against the installed package, from a scratch directory (on SQLite; ON_POSTGRES on
    a throwaway PostgreSQL database too), and type-checks under mypy --strict."""
    session.install(".[http,postgres]", "starlette", "pytest>=8", "mypy==2.4.1")
    scratch = os.path.abspath(session.create_tmp())
    examples_dir = os.path.abspath("examples")
    session.chdir(scratch)
    where = session.run(
        "python", "-c", "import gophermart; print(gophermart.__file__)", silent=True
    )
    if where is None or "site-packages" not in str(where):
        session.error(f"gophermart is not the installed package here: {where}")
    _run_examples(
        session,
        "python",
        scratch,
        "quickstart.py",
        "blocking_shop.py",
        "mounted_api.py",
        "shop_checkout.py",
        "starlette_mount.py",
    )
    for script in ON_POSTGRES:
        name = f"gm_example_{os.getpid()}"
        session.run("python", "-c", THROWAWAY, "create", name)
        try:
            url = os.environ.get("GOPHERMART_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/x")
            session.run(
                "python", os.path.join(examples_dir, script), url.rsplit("/", 1)[0] + "/" + name
            )
        finally:
            session.run("python", "-c", THROWAWAY, "drop", name)
    ini = os.path.join(scratch, "pytest.ini")  # not the project's: no source-tree settings
    with open(ini, "w") as f:
        f.write("[pytest]\n")
    session.run("pytest", "-q", "-p", "no:cacheprovider", "-c", ini, examples_dir)
    session.run("mypy", "--strict", "--no-incremental", examples_dir)


@nox.session(allow_parallel=True)
def bare(session: nox.Session) -> None:
    """`pip install gophermart` with no extras, from the built wheel, in a fresh venv:
    none of EXTRAS_ONLY is installed, and the examples that need no extra run."""
    scratch = os.path.abspath(session.create_tmp())
    wheels, venv = os.path.join(scratch, "wheel"), os.path.join(scratch, "bare")
    shutil.rmtree(wheels, ignore_errors=True)
    session.run("python", "-m", "pip", "wheel", "-q", "--no-deps", "-w", wheels, ".")
    (wheel,) = glob.glob(os.path.join(wheels, "gophermart-*.whl"))
    session.run("python", "-m", "venv", "--clear", venv)
    python = os.path.join(venv, "Scripts" if sys.platform == "win32" else "bin", "python")
    session.run(python, "-m", "pip", "install", "-q", wheel, external=True)
    session.run(python, "-c", ABSENT, *EXTRAS_ONLY, external=True)
    session.log(f"pip install gophermart (no extras) pulled none of: {', '.join(EXTRAS_ONLY)}")
    session.chdir(scratch)
    session.run(python, "-m", "gophermart", "--version", external=True)
    _run_examples(session, python, scratch, "quickstart.py", "blocking_shop.py")


def _run_examples(session: nox.Session, python: str, scratch: str, *scripts: str) -> None:
    """Each of examples/``scripts`` on a fresh SQLite file of its own in ``scratch``."""
    for script in scripts:
        db = os.path.join(scratch, script.replace(".py", ".db"))
        for leftover in (db, db + "-wal", db + "-shm"):
            if os.path.exists(leftover):
                os.remove(leftover)
        example = os.path.join(HERE, "examples", script)
        session.run(python, example, f"sqlite:///{db}", external=True)


@nox.session
def serve(session: nox.Session) -> None:
    session.install("-e", ".[server]")
    session.run("gophermart", *session.posargs, env={"PYTHONUNBUFFERED": "1"})


@nox.session
def bench(session: nox.Session) -> None:
    session.install("-e", DEV)
    session.run("python", "benchmarks/run.py", *session.posargs, env=dict(os.environ))


@nox.session
def pairs(session: nox.Session) -> None:
    session.install("-e", DEV)
    session.run("python", "benchmarks/pairs.py", *session.posargs, env=dict(os.environ))
