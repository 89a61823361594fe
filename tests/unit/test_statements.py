"""The statements of statements.py: compiled once for asyncpg, parameters in order."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import Insert, Update, literal, select
from sqlalchemy.dialects import postgresql, sqlite

from gophermart.adapters.sql import statements as st
from gophermart.adapters.sql.schema import accrual_gate

ALL = {name: value for name, value in vars(st).items() if isinstance(value, st.Statement)}
SQLITE_ONLY = {"ADD_ORDER_SQLITE", "RECORD_ENTRY", "DEBIT", "CREDIT"}
PG_ONLY = {"ADD_ORDER_PG", "DEBIT_ENTRY", "CREDIT_ENTRY", "ACCOUNTS_OF", "ORDERS_OF_USERS"}


@pytest.mark.parametrize("name", sorted(ALL.keys() - SQLITE_ONLY))
def test_each_statement_compiles_once_for_asyncpg_with_numbered_parameters(name: str) -> None:
    statement = ALL[name]
    compiled = statement.pg
    assert statement.pg is compiled  # once
    assert "$1" in compiled.sql and "?" not in compiled.sql and "%(" not in compiled.sql
    # Every named parameter is passed, in $n order, whatever the order of the mapping.
    params = {bind: f"<{bind}>" for bind in sorted(statement.binds, reverse=True)}
    args = list(compiled.args(params))
    assert {a for a in args if isinstance(a, str) and a.startswith("<")} == set(params.values())


def test_arguments_follow_the_placeholders_and_carry_the_statements_own_literals() -> None:
    args = st.FOR_WITHDRAWAL.pg.args({"order_number": "79927398713", "user_id": 7})
    assert list(args) == [7, "withdrawal", "79927398713"]
    assert "ledger.kind = $2" in st.FOR_WITHDRAWAL.pg.sql


def test_a_one_parameter_statement_passes_one_argument() -> None:
    assert list(st.ACCOUNT.pg.args({"user_id": 7})) == [7]


@pytest.mark.parametrize("name", sorted(ALL.keys() - PG_ONLY))
def test_sqlite_gets_exactly_the_statements_parameters(name: str) -> None:
    """SQLAlchemy would SET any extra key naming a column of an UPDATE's table (or
    refuse a parameter named like one): neither may happen."""
    statement = ALL[name]
    extra = {"status": "X", "user_id": 1, "number": "1", "balance": 5}
    params = statement.params(dict.fromkeys(statement.binds) | extra)
    assert params.keys() == statement.binds
    if isinstance(statement.core, Insert | Update):
        dialect = sqlite.dialect()
        plain = str(statement.core.compile(dialect=dialect))
        assert str(statement.core.compile(dialect=dialect, column_keys=list(params))) == plain


def test_the_postgresql_shapes_write_the_entry_and_the_balance_in_one_statement() -> None:
    for statement in (st.DEBIT_ENTRY, st.CREDIT_ENTRY):
        sql = statement.pg.sql
        assert sql.startswith("WITH moved AS") and "UPDATE accounts" in sql
        assert "INSERT INTO ledger" in sql and sql.endswith("RETURNING ledger.id")
    assert "pg_notify" in st.ADD_ORDER_PG.pg.sql
    assert "pg_notify" not in str(st.ADD_ORDER_SQLITE.core.compile(dialect=sqlite.dialect()))


def test_a_type_asyncpg_would_hand_over_unprocessed_is_refused() -> None:
    with pytest.raises(TypeError, match="type processing"):
        _ = st.Statement(select(literal(Decimal("1.5")))).pg


def test_insert_if_absent_speaks_each_dialect() -> None:
    for dialect in (postgresql.dialect(), sqlite.dialect()):
        sql = str(st.insert_if_absent(dialect, accrual_gate, id=1).compile(dialect=dialect))
        assert sql.endswith("ON CONFLICT DO NOTHING")
