"""The import graph of our code: no circle, hidden inside a function or not, and every module imports alone.

The graph spans the package (`modal_jobs`), the local hub (`local_hub`) and the benchmark (`bench`),
subpackages included; modules are named by their dotted path (`modal_jobs.decide.model_plan`), a
package by its `__init__.py`. The reader stands apart: it imports nothing of the package, so that an
inference image can carry it alone.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("modal_jobs", "local_hub", "bench")


def module_name(path: Path) -> str:
    """`modal_jobs/decide/model_plan.py` → `modal_jobs.decide.model_plan`; an `__init__.py` is its package."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


FILES = {
    module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py")) if p.name != "__main__.py"
}
MODULES = sorted(FILES)

# Each module stays small enough to read at once, and each function fits on a screen.
MAX_FUNCTION_LINES = 50
MAX_LINES = 320


def imports_of(module: str) -> set[str]:
    """Every module of ours that `module` imports, at the top or inside a function.

    Importing `modal_jobs.decide.facts` runs the packages `modal_jobs` and `modal_jobs.decide`
    first: those count as imports too, except the module's own packages.
    """
    found = set()
    for node in ast.walk(ast.parse(FILES[module].read_text())):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module, f"{module}: a relative import"
            names = {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            names = {alias.name for alias in node.names}
        else:
            continue
        found |= {name for name in names if name in FILES}
    parents = {".".join(name.split(".")[:n]) for name in found for n in range(1, name.count(".") + 1)}
    own = {".".join(module.split(".")[:n]) for n in range(1, module.count(".") + 2)}
    return (found | (parents & FILES.keys())) - own


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


def test_the_graph_sees_imports_from_subpackages_and_other_packages():
    assert {"modal_jobs.decide.facts", "modal_jobs.decide.model_plan", "modal_jobs.decide"} <= imports_of(
        "modal_jobs.rows"
    )
    assert "modal_jobs.decide.facts" in imports_of("modal_jobs.store")
    assert {"local_hub.state", "local_hub.bodies"} <= imports_of("local_hub.routes")
    assert "local_hub.server" in imports_of("bench.run")


def test_the_reader_imports_nothing_of_the_package():
    assert imports_of("modal_jobs.reader") == set()


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_alone(module: str):
    result = subprocess.run(
        [sys.executable, "-c", f"import {module}"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_every_module_reads_on_a_few_screens():
    long = {m: n for m in MODULES if (n := len(FILES[m].read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_every_function_fits_on_one_screen():
    long = {
        f"{module}.{node.name}": length
        for module in MODULES
        for node in ast.walk(ast.parse(FILES[module].read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and (length := (node.end_lineno or node.lineno) - node.lineno + 1) > MAX_FUNCTION_LINES
    }
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"
