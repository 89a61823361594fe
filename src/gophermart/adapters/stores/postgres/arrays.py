"""Rows out of parallel arrays: how a batch travels to PostgreSQL in one statement.

A batch of N rows is sent as one array per column (one parameter each, however many
rows) and read back as a derived table, ``unnest($1, $2, …) AS name(col1, col2, …)``:
the statement is compiled and prepared once, whatever the batch's size.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ARRAY, BindParameter, bindparam, column, func
from sqlalchemy.types import TypeEngine

#: One column of the derived table: the array's parameter (its name, or a parameter the
#: statement also uses elsewhere), the column's name, and the type of one element.
ArrayColumn = tuple[str | BindParameter[Any], str, TypeEngine[Any] | type[TypeEngine[Any]]]


def unnest_rows(name: str, *columns: ArrayColumn, ordinality: str | None = None) -> Any:
    """The derived table ``name`` of ``columns``' arrays, row by row; with
    ``ordinality``, one more column of that name numbering the rows from 1 (the order
    in which the batch was sent)."""
    arrays = [
        param if isinstance(param, BindParameter) else bindparam(param, type_=ARRAY(type_))
        for param, _, type_ in columns
    ]
    return (
        func.unnest(*arrays)
        .table_valued(
            *(column(name_, type_) for _, name_, type_ in columns), with_ordinality=ordinality
        )
        .render_derived(name=name)
    )
