"""The packages' layering, read from the source (nothing is imported): `stack` knows nothing of
`drill` or `lab`; `drill` knows nothing of `lab`; inside `lab`, the model knows nothing of the
kernel, the node, the CLI or the scenarios; the kernel and the node know nothing of the layers
above them; and no module takes part in an import cycle at import time."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("stack", "drill", "lab")


@dataclass(frozen=True)
class Import:
    target: str  # a module of this repository
    eager: bool  # runs when the importing module is imported (not inside a function)
    typing_only: bool  # under `if TYPE_CHECKING:`


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _targets(node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """The repository modules an import statement loads (a `from P import m` loads P.m)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif node.level or node.module is None:
        names = []  # relative imports: none in this repository
    else:
        subs = [f"{node.module}.{alias.name}" for alias in node.names]
        names = [s for s in subs if s in MODULES] or [node.module]
    for name in names:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name:
            yield name


def _imports(path: Path) -> list[Import]:
    out: list[Import] = []

    def visit(body: list[ast.stmt], eager: bool, typing_only: bool) -> None:
        for node in body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                out.extend(Import(t, eager, typing_only) for t in _targets(node))
                continue
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.body, eager, True)
                visit(node.orelse, eager, typing_only)
                continue
            lazy = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            for field in ("body", "orelse", "finalbody", "handlers"):
                children = getattr(node, field, None)
                if isinstance(children, list):
                    stmts = [c for c in children if isinstance(c, ast.stmt)]
                    for handler in (c for c in children if isinstance(c, ast.ExceptHandler)):
                        stmts.extend(handler.body)
                    visit(stmts, eager and not lazy, typing_only)

    visit(ast.parse(path.read_text(encoding="utf-8")).body, True, False)
    return out


IMPORTS = {module: _imports(path) for module, path in MODULES.items()}


def _under(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _violations(importers: tuple[str, ...], forbidden: tuple[str, ...], typing_too: bool) -> list[str]:
    return [
        f"{module} imports {imp.target}"
        for module, imports in IMPORTS.items()
        if _under(module, *importers)
        for imp in imports
        if _under(imp.target, *forbidden) and (typing_too or not imp.typing_only)
    ]


def test_the_walker_sees_imports_at_every_depth() -> None:
    """Guards the rules below against passing vacuously: known imports, eager, lazy and typing-only."""
    runner = {i.target: i for i in IMPORTS["drill.runner"]}
    assert runner["stack.socket"].eager and runner["drill.parser"].eager
    cli = {(i.target, i.eager) for i in IMPORTS["lab.cli.demo"]}
    assert ("lab.scenarios.demo_sim", False) in cli  # imported inside the command function
    capture = {i.target: i for i in IMPORTS["lab.kernel.capture"]}
    assert capture["lab.lab"].typing_only


LAYERS = [
    # (importers, what they must not import, type-only imports count too)
    (("stack",), ("drill", "lab"), True),
    (("drill",), ("lab",), True),
    (("lab.model",), ("lab.kernel", "lab.node", "lab.cli", "lab.scenarios", "lab.viz", "lab.lab"), True),
    (("lab.kernel",), ("lab.node", "lab.cli", "lab.scenarios", "lab.viz", "lab.lab"), False),
    (("lab.node",), ("lab.kernel", "lab.cli", "lab.scenarios", "lab.viz", "lab.lab"), False),
    (("lab",), ("lab.cli",), True),
]


@pytest.mark.parametrize(("importers", "forbidden", "typing_too"), LAYERS, ids=lambda v: str(v))
def test_layers_import_only_downwards(
    importers: tuple[str, ...], forbidden: tuple[str, ...], typing_too: bool
) -> None:
    found = [v for v in _violations(importers, forbidden, typing_too) if v not in ALLOWED]
    if importers == ("lab",):  # the CLI may import itself, and the console script imports it
        found = [v for v in found if not v.startswith(("lab.cli", "lab.main"))]
    assert found == []


# The one exception, named: a topology file's `apps` are checked when it loads, by the apps' own
# option models (pydantic schemas, no I/O), so `tcplab app start` and a topology refuse alike.
ALLOWED = {"lab.model.topology imports lab.node.apps.registry"}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_at_import_time() -> None:
    """Eager imports only: a package importing its own submodules is not a cycle (Python loads the
    package first), so edges to a module's own ancestors are left out."""
    graph = {
        module: {
            i.target
            for i in imports
            if i.eager and not i.typing_only and i.target != module and not _under(module, i.target)
        }
        for module, imports in IMPORTS.items()
    }
    assert _cycles(graph) == []


# Reaching into another object's private names: allowed only where the name is not ours to make
# public (asyncio's TimerHandle, os._exit after fork).
FOREIGN_PRIVATE = {"stack/sim/loop.py: timer._scheduled", "lab/kernel/netns.py: os._exit",
                   "lab/scenarios/interrupt.py: os._exit"}  # fmt: skip


def _private_reaches(path: Path) -> set[str]:
    """`obj._name` in path where obj is not self/cls and the module defines no `_name` itself."""
    src = path.read_text()
    tree = ast.parse(src)
    defs = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
    own = {n.name for n in ast.walk(tree) if isinstance(n, defs)}
    own |= {t.attr for n in ast.walk(tree) if isinstance(n, ast.Assign | ast.AnnAssign | ast.AugAssign)
            for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
            if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"}
    own |= {t.id for n in ast.walk(tree) if isinstance(n, ast.Assign | ast.AnnAssign)
            for t in (n.targets if isinstance(n, ast.Assign) else [n.target]) if isinstance(t, ast.Name)}
    rel = path.relative_to(REPO).as_posix()
    return {
        f"{rel}: {ast.unparse(node)}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
        and node.attr not in own
    }  # fmt: skip


def test_no_module_reaches_into_another_modules_private_names() -> None:
    found: set[str] = set()
    for package in ("stack", "drill", "lab"):
        for path in sorted((REPO / package).rglob("*.py")):
            found |= _private_reaches(path)
    assert found - FOREIGN_PRIVATE == set()
    assert found >= FOREIGN_PRIVATE, "an allowed exception is gone: remove it from FOREIGN_PRIVATE"
