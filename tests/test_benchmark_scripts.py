"""The benchmark scripts are not run by the tests (they take minutes to hours), but each must at
least import what exists: a module renamed in the package or in ``benchmarks/`` must not leave a
script that fails on its first line."""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(BENCHMARKS.glob("*.py"))


def _imports(tree: ast.Module):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, [alias.name for alias in node.names]


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_benchmark_imports_resolve(script: Path) -> None:
    for module, names in _imports(ast.parse(script.read_text(), filename=str(script))):
        top = module.split(".")[0]
        local = BENCHMARKS / f"{top}.py"
        if local.exists():  # a sibling helper (benchmarks/_harness.py): the names must be defined there
            defined = {n.id for n in ast.walk(ast.parse(local.read_text())) if isinstance(n, ast.Name)} | {
                n.name for n in ast.walk(ast.parse(local.read_text()))
                if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
            missing = [n for n in names or [] if n not in defined]
            assert not missing, f"{script.name}: {module} has no {missing}"
            continue
        if top == "ser":  # the package: the module and the imported names must exist
            assert importlib.util.find_spec(module) is not None, f"{script.name}: no module {module}"
            continue
        # Third-party: present in the dev install, or the script's extra must say so (checked by import).
        assert importlib.util.find_spec(top) is not None, f"{script.name}: cannot import {top}"
