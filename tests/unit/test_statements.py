"""The statements: shared ones (stores/sql) and PostgreSQL's own (stores/postgres),
compiled once for asyncpg, parameters in order; SQLite gets exactly its parameters."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import Insert, Update, literal, select
from sqlalchemy.dialects import postgresql, sqlite

from gophermart.adapters.stores.postgres import statements as pg
from gophermart.adapters.stores.postgres.runner import compiled
from gophermart.adapters.stores.sql import movements as mv
from gophermart.adapters.stores.sql import statements as st
from gophermart.adapters.stores.sql.schema import accrual_gate
from gophermart.adapters.stores.sqlite.unit_of_work import ADD_ORDER as ADD_ORDER_SQLITE


def _statements(module: object) -> dict[str, st.Statement]:
    return {n: v for n, v in vars(module).items() if isinstance(v, st.Statement)}


SHARED = _statements(st)
PG = _statements(pg)
SQLITE_ONLY = {"RECORD_ENTRY", "DEBIT", "CREDIT"}
ON_POSTGRES = {**{n: v for n, v in SHARED.items() if n not in SQLITE_ONLY}, **PG}
ON_SQLITE = {**SHARED, "ADD_ORDER": ADD_ORDER_SQLITE}


@pytest.mark.parametrize("name", sorted(ON_POSTGRES))
def test_each_statement_compiles_once_for_asyncpg_with_numbered_parameters(name: str) -> None:
    statement = ON_POSTGRES[name]
    once = compiled(statement)
    assert compiled(statement) is once  # once
    assert ("$1" in once.sql) == bool(statement.binds)
    assert "?" not in once.sql and "%(" not in once.sql
    # Every named parameter is passed, in $n order, whatever the order of the mapping.
    params = {bind: f"<{bind}>" for bind in sorted(statement.binds, reverse=True)}
    args = list(once.args(params))
    assert {a for a in args if isinstance(a, str) and a.startswith("<")} == set(params.values())


def test_arguments_follow_the_placeholders_and_carry_the_statements_own_literals() -> None:
    at = datetime(2026, 12, 6, tzinfo=UTC)
    params = {"user_id": 7, "order_number": "79927398713", "amount": 5, "at": at, "until": at}
    args = compiled(mv.ADD_HOLD).args(params)
    assert list(args) == [7, "79927398713", 5, "open", at, at]  # 'open': the statement's own


def test_partial_indexes_predicates_are_written_into_the_sql() -> None:
    """A kind or a state compared with a bound value would not match the partial unique
    indexes (``WHERE kind = 'withdrawal'``) in a generic plan of a prepared statement."""
    sql = compiled(st.FOR_WITHDRAWAL).sql
    assert "gophermart_ledger.kind = 'withdrawal'" in sql
    assert "gophermart_holds.state = 'open'" in sql
    assert list(compiled(st.FOR_WITHDRAWAL).args({"order_number": "1", "user_id": 7})) == ["1", 7]


def test_a_one_parameter_statement_passes_one_argument() -> None:
    assert list(compiled(st.ACCOUNT).args({"user_id": 7})) == [7]


@pytest.mark.parametrize("name", sorted(ON_SQLITE))
def test_sqlite_gets_exactly_the_statements_parameters(name: str) -> None:
    """SQLAlchemy would SET any extra key naming a column of an UPDATE's table (or
    refuse a parameter named like one): neither may happen."""
    statement = ON_SQLITE[name]
    extra = {"status": "X", "user_id": 1, "number": "1", "balance": 5}
    params = statement.params(dict.fromkeys(statement.binds) | extra)
    assert params.keys() == statement.binds
    if isinstance(statement.core, Insert | Update):
        dialect = sqlite.dialect()
        plain = str(statement.core.compile(dialect=dialect))
        assert str(statement.core.compile(dialect=dialect, column_keys=list(params))) == plain


def test_postgresql_writes_an_entry_and_its_balance_change_in_one_statement() -> None:
    sql = compiled(pg.CREDIT_ENTRY).sql
    assert sql.startswith("WITH moved AS") and "UPDATE gophermart_accounts" in sql
    assert "INSERT INTO gophermart_ledger" in sql and sql.endswith("RETURNING gophermart_ledger.id")
    batch = compiled(pg.WITHDRAW_BATCH).sql
    assert "UPDATE gophermart_accounts" in batch and "INSERT INTO gophermart_ledger" in batch
    assert "pg_notify" in compiled(pg.ADD_ORDER).sql
    assert "pg_notify" not in str(ADD_ORDER_SQLITE.core.compile(dialect=sqlite.dialect()))


def test_the_debit_rule_is_stated_once_for_each_sql_store() -> None:
    """Each store enforces "a debit may not exceed the balance" in one statement:
    SQLite's conditional DEBIT, PostgreSQL's batch (the single debit is a batch of one)."""
    assert "balance >= " in str(st.DEBIT.core.compile(dialect=sqlite.dialect()))
    batch = compiled(pg.WITHDRAW_BATCH).sql
    assert "locked.balance >= ranked.amount" in batch  # an account's first debit
    assert 'walk."left" >= next.amount' in batch  # and each next one
    assert not any("DEBIT" in name for name in PG)


def test_the_batch_waits_for_locks_and_only_its_fallback_skips_them() -> None:
    """Skipping locked rows by default made two processes' batches skip each other's
    rows, each skipped debit a commit of its own (docs/performance.md)."""
    assert "SKIP LOCKED" not in compiled(pg.WITHDRAW_BATCH).sql
    assert "FOR UPDATE SKIP LOCKED" in compiled(pg.WITHDRAW_SKIPPING).sql


def test_a_type_asyncpg_would_hand_over_unprocessed_is_refused() -> None:
    with pytest.raises(TypeError, match="type processing"):
        compiled(st.Statement(select(literal(Decimal("1.5")))))


def test_insert_if_absent_speaks_each_dialect() -> None:
    for dialect in (postgresql.dialect(), sqlite.dialect()):
        sql = str(st.insert_if_absent(dialect, accrual_gate, id=1).compile(dialect=dialect))
        assert sql.endswith("ON CONFLICT DO NOTHING")
