"""No function in analysis/ longer than 80 lines (issue 17): long ones are split."""

from __future__ import annotations

import ast

from analysis_synthetic import REPO

MAX_LINES = 80


def test_no_function_in_analysis_exceeds_80_lines():
    long = []
    for path in sorted((REPO / "analysis").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_LINES:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({lines})")
    assert not long, long
