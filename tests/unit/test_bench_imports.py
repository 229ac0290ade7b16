"""The benchmarks import most of the project inside their functions (so `make bench --sim-only` runs
without root); a module that moved must not break them unseen: every import in tests/bench resolves."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _imports() -> list[tuple[str, str, str | None]]:
    found = []
    for path in sorted(BENCH.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found += [(path.name, node.module, alias.name) for alias in node.names]
            elif isinstance(node, ast.Import):
                found += [(path.name, alias.name, None) for alias in node.names]
    return [i for i in found if i[1].partition(".")[0] in ("stack", "lab", "drill", "tests")]


@pytest.mark.parametrize(("where", "module", "name"), _imports())
def test_every_benchmark_import_resolves(where: str, module: str, name: str | None) -> None:
    imported = importlib.import_module(module)
    if name is not None and not hasattr(imported, name):
        importlib.import_module(f"{module}.{name}")  # a submodule, else ImportError names it
