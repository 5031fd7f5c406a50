"""pyproject.toml declares what the code imports: every third-party module that ibnn/ and
analysis/ import (at the top or inside a function) comes from a runtime dependency, and the
test-only references (torchattacks, with its old pinned requests) stay in the dev extra."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement string (``ray[tune]>=2`` -> ``ray``)."""
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def imported_modules(*packages: str) -> dict[str, set[str]]:
    """Top-level module -> the files of ``packages`` that import it."""
    found: dict[str, set[str]] = {}
    for package in packages:
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(REPO)))
    return found


def test_every_third_party_import_is_a_runtime_dependency():
    runtime = {_name(r) for r in PROJECT["dependencies"]}
    providers = importlib.metadata.packages_distributions()
    missing = {}
    for module, files in imported_modules("ibnn", "analysis").items():
        if module in sys.stdlib_module_names or module in ("ibnn", "analysis"):
            continue
        dists = {_name(d) for d in providers.get(module, [module])}
        if not dists & runtime:
            missing[module] = sorted(files)
    assert not missing, f"imported but not a runtime dependency: {missing}"


def test_torchattacks_is_a_test_reference_only():
    runtime = {_name(r) for r in PROJECT["dependencies"]}
    dev = {_name(r) for r in PROJECT["optional-dependencies"]["dev"]}
    assert "torchattacks" not in runtime and "torchattacks" in dev
    assert "torchattacks" not in imported_modules("ibnn", "analysis")
    assert "torchattacks" in imported_modules("tests")  # the cross-check tests use it
    assert {"pyyaml", "sqlalchemy"} <= runtime  # placement.py's YAML; postgresql:// -> psycopg 3
    floor = next(r for r in PROJECT["dependencies"] if _name(r) == "sqlalchemy")
    assert re.search(r">=\s*2\.([1-9]|\d\d)", floor), floor
