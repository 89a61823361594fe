"""The cold paths' engine lets go of a frozen server at once when it closes a connection.

asyncpg's polite close sends its goodbye and then waits for the server to hang up; a
frozen server never does. SQLAlchemy closes pooled connections so when it discards them
(an overflow connection coming back, a recycle, a dispose). Before: with no bound that
wait had no end (a SIGTERM during a freeze exited after the worker's 15 s grace, about
once in eight CI runs); with the database timeout as asyncpg's command_timeout it took
that long and logged a traceback. Now the pool terminates the connection instead: the
same goodbye, and the socket dropped without waiting.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from gophermart.adapters.stores.postgres.engine import postgres_database
from tests.pg_proxy import PgProxy

pytestmark = pytest.mark.usefixtures("postgres_available")

TIMEOUT = 5.0  # the engine's database timeout: what a bounded polite close would wait


async def test_closing_pooled_connections_on_a_frozen_server_does_not_wait_for_it(
    postgres_uri: str, caplog: pytest.LogCaptureFixture
) -> None:
    with PgProxy() as proxy:
        database = postgres_database(proxy.uri_for(postgres_uri), "test", TIMEOUT)
        try:
            async with database.write.connect() as conn:
                assert (await conn.execute(select(1))).scalar_one() == 1
            proxy.freeze()
            started = time.monotonic()
            await database.dispose(close=True)  # closes the pooled connection politely
            took = time.monotonic() - started
        finally:
            proxy.resume()
    assert took < 1.0, f"the close waited {took:.1f}s for a frozen server"
    assert "Exception closing connection" not in caplog.text, caplog.text
