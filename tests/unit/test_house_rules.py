"""The house's size rules, held on every run: no class in src/ over 200 lines, no
function over 60 (docs/adding-a-feature.md says why, and where to split)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "gophermart"
MAX_CLASS, MAX_FUNCTION = 200, 60


def _definitions() -> list[tuple[str, str, int]]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                where = f"{path.relative_to(SRC)}:{node.lineno} {node.name}"
                kind = "class" if isinstance(node, ast.ClassDef) else "function"
                found.append((kind, where, node.end_lineno - node.lineno + 1))
    return found


DEFINITIONS = _definitions()


def test_the_source_tree_is_read() -> None:
    assert len(DEFINITIONS) > 300


@pytest.mark.parametrize(("kind", "limit"), [("class", MAX_CLASS), ("function", MAX_FUNCTION)])
def test_no_definition_is_too_long(kind: str, limit: int) -> None:
    too_long = [f"{where} ({n} lines)" for k, where, n in DEFINITIONS if k == kind and n > limit]
    assert not too_long, too_long
