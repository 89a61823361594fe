"""The read side on PostgreSQL, straight through asyncpg: the hot path of the API.

Balance and listings are single-statement reads, so they need no transaction: each
is one round trip on a pooled connection, with the statement prepared once per
connection (asyncpg's statement cache). Going through SQLAlchemy here cost a BEGIN and
a ROLLBACK round trip per request plus the Core execution machinery, about 40 % of a
request's time in profiles (docs/performance.md). The statements and the mapping of
their rows are :class:`~gophermart.adapters.sql.read_model.Reads`', shared with SQLite.
"""

from __future__ import annotations

from collections.abc import Sequence

from gophermart.adapters.sql import statements as st
from gophermart.adapters.sql.pg_pool import PgPool
from gophermart.adapters.sql.read_model import Reads
from gophermart.adapters.sql.runners import PgRunner, Row


class PgReadModel(Reads):
    def __init__(self, pool: PgPool) -> None:
        self._pool = pool

    # On a connection of our own rather than pool.fetch(): a read cut short by its
    # deadline must close its connection, not hand it back (pg_pool.must_abandon).

    async def _fetch(self, statement: st.Statement, params: st.Params) -> Sequence[Row]:
        async with self._pool.connection() as conn:
            return await PgRunner(conn).fetch(statement, params)

    async def _fetchrow(self, statement: st.Statement, params: st.Params) -> Row | None:
        async with self._pool.connection() as conn:
            return await PgRunner(conn).fetchrow(statement, params)
