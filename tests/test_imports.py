"""The package's import graph: no circle, hidden inside a function or not, and every module imports alone.

The reader stands apart: it imports nothing of the package, so that an inference image can carry it alone.
Modules are named by their dotted path below `modal_jobs` (`decide.model_plan`), subpackages included.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "modal_jobs"


def module_name(path: Path) -> str:
    """`decide/model_plan.py` → `decide.model_plan`; a subpackage's `__init__.py` is the subpackage."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


FILES = {
    module_name(p): p
    for p in sorted(PACKAGE.rglob("*.py"))
    if p.relative_to(PACKAGE).as_posix() not in ("__init__.py", "__main__.py")
}
MODULES = sorted(FILES)

# The modules the decisions and the operations over them were split into; each stays small enough
# to read at once.
MAX_FUNCTION_LINES = 50
MAX_LINES = 320


def imports_of(module: str) -> set[str]:
    """Every module of the package that `module` imports, at the top or inside a function.

    Importing `decide.facts` runs the subpackage `decide` first: that counts as an import of it too.
    """
    found = set()
    for node in ast.walk(ast.parse(FILES[module].read_text())):
        if isinstance(node, ast.ImportFrom) and node.module is not None and _inside(node.module):
            base = node.module.removeprefix("modal_jobs").removeprefix(".")
            found |= {_known(f"{base}.{a.name}" if base else a.name) or _known(base) for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {_known(a.name.removeprefix("modal_jobs.")) for a in node.names if _inside(a.name)}
    parents = {".".join(name.split(".")[:n]) for name in found for n in range(1, name.count(".") + 1)}
    own = {".".join(module.split(".")[:n]) for n in range(1, module.count(".") + 2)}
    return (found | parents) - own - {""}


def _inside(name: str) -> bool:
    return name == "modal_jobs" or name.startswith("modal_jobs.")


def _known(name: str) -> str:
    """The module `name` is, or "" for the package itself and names that are not modules."""
    return name if name in FILES else ""


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


def test_the_graph_sees_imports_from_subpackages():
    assert {"decide.facts", "decide.model_plan"} <= imports_of("rows")
    assert "decide.facts" in imports_of("store")


def test_the_reader_imports_nothing_of_the_package():
    assert imports_of("reader") == set()


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_alone(module: str):
    result = subprocess.run(
        [sys.executable, "-c", f"import modal_jobs.{module}"], cwd=ROOT, capture_output=True, text=True, check=False
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
