"""The package's layout: four parts, a public API that keeps working, no import cycles."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import ibnn

ROOT = Path(ibnn.__file__).resolve().parent


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def module_imports(path: Path, modules: set[str]) -> set[str]:
    """ibnn modules imported at module level (function-level imports are deferred on purpose)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        found |= {n for n in names if n in modules}
    return found


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in ROOT.rglob("*.py")}
    return {name: module_imports(path, set(files)) - {name} for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the directed graph as a list of nodes, or None (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_cycle_finder_catches_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles_between_modules():
    graph = import_graph()
    assert {"ibnn.nn.layers", "ibnn.trial.core", "ibnn.sweep.runner", "ibnn.results.schema"} <= set(
        graph
    )
    # A package's __init__ re-exports its modules; those modules must not need their package's
    # __init__ (they import siblings by full module path), so drop package -> child edges.
    pruned = {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in graph.items()}
    assert find_cycle(pruned) is None


def test_the_parts_depend_downwards_only():
    """nn needs nothing else of ibnn; trial may use nn; results and vocab use neither."""
    graph = import_graph()
    allowed = {
        "ibnn.vocab": set(),
        "ibnn.results": {"ibnn.results", "ibnn.vocab"},
        "ibnn.nn": {"ibnn.nn", "ibnn.vocab"},
        "ibnn.trial": {"ibnn.trial", "ibnn.nn", "ibnn.vocab", "ibnn.results"},
    }
    for module, deps in graph.items():
        part = next((p for p in allowed if module == p or module.startswith(p + ".")), None)
        if part is None:
            continue
        outside = {
            d for d in deps if not any(d == a or d.startswith(a + ".") for a in allowed[part])
        }
        assert not outside, f"{module} imports {sorted(outside)}"


def test_public_imports_and_the_trial_command_keep_working():
    code = (
        "from ibnn import IBNNConv2d, IBNNLinear, ucn, to_ibnn, toy_net, FAMILIES;"
        "from ibnn.trial import Trial, TrialConfig, run_trial;"
        "import ibnn; assert set(ibnn.__all__) <= set(dir(ibnn))"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    out = subprocess.run(
        [sys.executable, "-m", "ibnn.trial", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "usage: python -m ibnn.trial" in out and "--lam" in out
