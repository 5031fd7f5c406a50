"""The package's layout: its parts and the sweep's, each importing only the parts below it (the
rule of docs/sweeps.md, "Code layout"), no import cycles and no private names taken from another
module, counting imports inside functions too; a public API that keeps working."""

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


def _imports(path: Path) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement of a file, at module level or inside a function or class."""
    nodes = ast.walk(ast.parse(path.read_text()))
    return [n for n in nodes if isinstance(n, (ast.Import, ast.ImportFrom))]


def module_imports(path: Path, modules: set[str]) -> set[str]:
    """ibnn modules a file imports, wherever the import statement is (a deferred import still
    makes its module depend on the other)."""
    found = set()
    for node in _imports(path):
        assert not (isinstance(node, ast.ImportFrom) and node.level), f"{path}: relative import"
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        found |= {n for n in names if n in modules}
    return found


def private_imports(path: Path) -> list[str]:
    """``module._name`` for each private name a file takes from another ibnn module."""
    return [
        f"{node.module}.{a.name}"
        for node in _imports(path)
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "ibnn"
        for a in node.names
        if a.name.startswith("_") and not a.name.startswith("__")
    ]


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


# The parts of ibnn.sweep and which parts each may import (docs/sweeps.md, "Code layout"): a
# module imports its own part and the parts listed. "face" is the package's public face (its
# __init__, ``python -m ibnn.sweep`` and the old module paths kept for pickled Tune states); only
# it may import the runner, which composes the others.
SWEEP_PARTS: dict[str, tuple[str, ...]] = {
    "base": ("ibnn.sweep.spec", "ibnn.sweep.clock", "ibnn.sweep.protocols"),
    "cluster": ("ibnn.sweep.cluster",),
    "folder": ("ibnn.sweep.folder",),
    "trials": ("ibnn.sweep.trials",),
    "search": ("ibnn.sweep.search",),
    "command_line": ("ibnn.sweep.command_line",),
    "plan": ("ibnn.sweep.plan",),
    "runner": ("ibnn.sweep.runner",),
}
SWEEP_ALLOWED: dict[str, set[str]] = {
    "base": set(),
    "cluster": {"base"},
    "folder": {"base", "cluster"},
    "trials": {"base", "cluster"},
    "search": {"base", "cluster", "folder", "trials"},
    "command_line": {"base", "folder", "search"},
    "plan": {"base", "cluster", "folder", "trials", "search", "command_line"},
    "runner": {"base", "cluster", "folder", "trials", "search", "command_line", "plan"},
}
LEGACY = {
    "ibnn.sweep.trainable",
    "ibnn.sweep.progress",
    "ibnn.sweep.pruning",
    "ibnn.sweep.searcher",
}
FACE = {"ibnn.sweep", "ibnn.sweep.__main__", *LEGACY}


def sweep_part(module: str) -> str | None:
    """The part of ibnn.sweep a module belongs to ("face" for the public face; None outside)."""
    if module in FACE:
        return "face"
    for part, prefixes in SWEEP_PARTS.items():
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return part
    return None


def sweep_layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """``module -> imported`` for each import inside ibnn.sweep that the layering forbids."""
    bad = []
    for module, deps in graph.items():
        part = sweep_part(module)
        if part is None or part == "face":
            continue
        for dep in deps:
            other = sweep_part(dep)
            if other not in (None, part) and other not in SWEEP_ALLOWED[part]:
                bad.append(f"{module} -> {dep}")
    return sorted(bad)


def test_every_sweep_module_belongs_to_a_part_and_the_rule_catches_a_planted_breach():
    graph = import_graph()
    sweep = [m for m in graph if m == "ibnn.sweep" or m.startswith("ibnn.sweep.")]
    assert len(sweep) > 30 and all(sweep_part(m) is not None for m in sweep)
    planted = {"ibnn.sweep.trials.writer": {"ibnn.sweep.search.confirmation"}}
    assert sweep_layer_violations(planted) == [
        "ibnn.sweep.trials.writer -> ibnn.sweep.search.confirmation"
    ]
    assert sweep_layer_violations({"ibnn.sweep.plan": {"ibnn.sweep.runner.tuner"}})


def test_the_sweep_parts_import_downwards_only_and_nothing_imports_the_runner():
    assert sweep_layer_violations(import_graph()) == []


def test_no_module_takes_a_private_name_from_another():
    found = {module_name(p): private_imports(p) for p in ROOT.rglob("*.py")}
    assert {m: names for m, names in found.items() if names} == {}


def test_the_private_name_finder_catches_a_planted_import(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from ibnn.sweep.trials.writer import _number, objective\n")
    assert private_imports(path) == ["ibnn.sweep.trials.writer._number"]
    graph_path = tmp_path / "g.py"
    graph_path.write_text("def f():\n    import ibnn.sweep.plan\n")
    assert module_imports(graph_path, {"ibnn.sweep.plan"}) == {"ibnn.sweep.plan"}


def test_no_sweep_file_over_400_lines_nor_function_over_80():
    long_files, long_functions = [], []
    for path in (ROOT / "sweep").rglob("*.py"):
        text = path.read_text()
        if text.count("\n") > 400:
            long_files.append(str(path))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if node.end_lineno - node.lineno + 1 > 80:
                    long_functions.append(f"{path}:{node.name}")
    assert long_files == [] and long_functions == []


def test_the_old_module_paths_resolve_to_the_new_classes():
    """Tune states pickled before the layout by concern name these paths (see each alias's
    docstring for its removal date)."""
    import importlib

    from ibnn.sweep.search.pruning import PruneRecorder
    from ibnn.sweep.search.searcher import StudySearcher
    from ibnn.sweep.trials.identity import TrialNamer, TrialSettings
    from ibnn.sweep.trials.progress import SweepProgress

    expected = {
        "ibnn.sweep.trainable": {"TrialNamer": TrialNamer, "TrialSettings": TrialSettings},
        "ibnn.sweep.progress": {"SweepProgress": SweepProgress},
        "ibnn.sweep.pruning": {"PruneRecorder": PruneRecorder},
        "ibnn.sweep.searcher": {"StudySearcher": StudySearcher},
    }
    for module, names in expected.items():
        mod = importlib.import_module(module)
        assert "Removal:" in mod.__doc__
        assert {n: getattr(mod, n) for n in names} == names


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
