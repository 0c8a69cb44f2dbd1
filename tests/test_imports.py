"""The package's import graph: no circle, hidden inside a function or not, and every module imports alone.

The reader stands apart: it imports nothing of the package, so that an inference image can carry it alone.
"""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "modal_jobs"
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__"))


def imports_of(module: str) -> set[str]:
    """Every module of the package that `module` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse((PACKAGE / f"{module}.py").read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "modal_jobs":
            found |= {alias.name for alias in node.names if alias.name in MODULES}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("modal_jobs."):
            found.add((node.module or "").split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("modal_jobs.")}
    return found - {module}


def test_no_module_imports_itself_back_through_another():
    graph = {module: imports_of(module) for module in MODULES}
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> None:
        if module in visiting:
            circle = [*visiting[visiting.index(module) :], module]
            raise AssertionError(f"import circle: {' → '.join(circle)}")
        if module in done:
            return
        visiting.append(module)
        for imported in sorted(graph[module]):
            visit(imported)
        visiting.pop()
        done.add(module)

    for module in MODULES:
        visit(module)


def test_the_reader_imports_nothing_of_the_package():
    assert imports_of("reader") == set()


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_alone(module: str):
    result = subprocess.run(
        [sys.executable, "-c", f"import modal_jobs.{module}"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
