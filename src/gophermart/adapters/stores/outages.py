"""Telling a database outage from a slow statement, and both from a bug.

SPEC.md, "Failure behaviour": an outage is the database being down, not one statement
being slow. Whatever the drivers raise (asyncpg, SQLAlchemy, sqlite3, sockets,
timeouts) is sorted into one of three kinds, or none:

* :attr:`Outage.DOWN` — the connection itself failed: refused, reset, closed under us,
  the server shutting down or starting up, a SQLite file that cannot be opened. The
  database cannot serve anyone: the guard answers every request at once until it is
  back (guard.py).
* :attr:`Outage.SLOW` — an operation ran out of time: our deadline, the server's
  ``statement_timeout``, a lock held by someone else, a pool with no free connection,
  SQLite's busy timeout. Only that operation failed; whether the database is down is
  for a probe to say (a fresh connection and ``SELECT 1``), not this failure.
* :attr:`Outage.FAILED` — the database refused the operation for want of a resource:
  disk full, out of memory, an I/O error. That request fails (503); the others, reads
  above all, go on.

Anything else is the request's own error (a constraint, a bug) and passes through.
"""

from __future__ import annotations

import enum
import sqlite3
import sys

import sqlalchemy.exc

from gophermart.application.errors import StoreUnavailable


class Outage(enum.Enum):
    DOWN = "down"
    SLOW = "slow"
    FAILED = "failed"


#: SQLSTATEs by kind (https://www.postgresql.org/docs/current/errcodes-appendix.html):
#: class 08 connection exception; 57P01-57P03 shutting down, crashed, starting up.
_DOWN_SQLSTATES = ("08", "57P01", "57P02", "57P03")
#: 57014 statement cancelled (statement_timeout), 55P03 lock not available, 53300 too
#: many connections (a fresh connection cannot be had: the probe tells the rest).
_SLOW_SQLSTATES = ("57014", "55P03", "53300")
#: class 53 insufficient resources (disk full, out of memory), class 58 system error.
_FAILED_SQLSTATES = ("53", "58")

#: sqlite3 primary result codes: CANTOPEN; BUSY and LOCKED (another writer held the
#: lock past the busy timeout); IOERR and FULL.
_SQLITE = {14: Outage.DOWN, 5: Outage.SLOW, 6: Outage.SLOW, 10: Outage.FAILED, 13: Outage.FAILED}


def outage_of(exc: BaseException) -> Outage | None:
    """What kind of outage ``exc`` (or what caused it) is, if any.

    Follows ``__cause__`` and SQLAlchemy's ``orig``, since each layer wraps the one below,
    and ``__context__``: an error raised while cleaning up after an outage is part of it.
    A cancellation from outside is not an outage; a timeout is.
    """
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        kind = _kind(e)
        if kind is not None:
            return kind
        todo.append(e.__cause__)
        todo.append(getattr(e, "orig", None))
        if not e.__suppress_context__:
            todo.append(e.__context__)  # raised while cleaning up after an outage
    return None


def _kind(e: BaseException) -> Outage | None:
    if isinstance(e, StoreUnavailable):
        return Outage.SLOW  # already answered; a new probe decides, not this
    if isinstance(e, TimeoutError | sqlalchemy.exc.TimeoutError):
        return Outage.SLOW  # our deadline, or no pooled connection in time
    if isinstance(e, OSError):
        return Outage.DOWN  # refused, reset, unreachable, name not resolved
    if isinstance(e, sqlalchemy.exc.DBAPIError) and e.connection_invalidated:
        return Outage.DOWN
    # Not imported here: asyncpg comes with the postgres extra, and until the PostgreSQL
    # store has imported it nothing can raise one of its errors.
    asyncpg = sys.modules.get("asyncpg")
    if asyncpg is not None and isinstance(e, asyncpg.PostgresError):
        return _by_sqlstate(str(getattr(e, "sqlstate", "") or ""))
    if asyncpg is not None and isinstance(e, asyncpg.InterfaceError) and "closed" in str(e):
        return Outage.DOWN  # "connection is closed": lost under our feet
    if isinstance(e, sqlite3.OperationalError):
        code = getattr(e, "sqlite_errorcode", None)
        return _SQLITE.get(code & 0xFF) if code is not None else None
    return None


def _by_sqlstate(sqlstate: str) -> Outage | None:
    for prefixes, kind in (
        (_DOWN_SQLSTATES, Outage.DOWN),
        (_SLOW_SQLSTATES, Outage.SLOW),
        (_FAILED_SQLSTATES, Outage.FAILED),
    ):
        if sqlstate.startswith(prefixes):
            return kind
    return None


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` is an outage of any kind (the request gets a 503, not a 500)."""
    return outage_of(exc) is not None


def describe(exc: BaseException) -> str:
    """One line naming the root cause, for the log: ``ConnectionRefusedError: ...``."""
    root = exc
    while True:
        below = root.__cause__ or getattr(root, "orig", None)
        if not isinstance(below, BaseException) or below is root:
            break
        root = below
    text = str(root).strip().splitlines()[0] if str(root).strip() else ""
    return f"{type(root).__name__}: {text}" if text else type(root).__name__
