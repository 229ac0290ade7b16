"""The optional compiled build (tests.bench.accel) compiles, loads, and passes the TCP suite.

The pure-Python stack is the reference and what every other test runs; this test keeps the
accelerator from rotting: a change mypyc cannot compile, or one whose compiled form behaves
differently (mypyc checks declared types at run time), fails here.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.bench import REPO_ROOT, accel

# tracemalloc does not see the memory of compiled objects the way it sees Python's: the bound it
# asserts is the interpreted stack's.
NOT_FOR_COMPILED = "not test_endless_one_octet_segments_with_holes_stay_within_the_receive_buffer"


def _build_problem() -> str | None:
    if importlib.util.find_spec("mypyc") is None:
        return "mypyc is not installed (it comes with mypy, a test dependency)"
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        return "no C compiler"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        return "no Python.h (the Python development headers)"
    return None


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    problem = _build_problem()
    if problem:
        pytest.skip(f"cannot build the compiled stack: {problem}")
    return accel.build(tmp_path_factory.mktemp("accel"))


def _run(built: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    # cwd and PYTHONPATH: the compiled `stack` first, the repository (tests, lab) after it.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(built), str(REPO_ROOT)]))
    return subprocess.run([sys.executable, *argv], cwd=built, env=env, capture_output=True, text=True,
                          timeout=600, check=False)


def test_the_hot_modules_load_compiled(built: Path) -> None:
    probe = ("import stack.tcp.connection, stack.host; from stack.compiled import compiled_modules; "
             "print(' '.join(compiled_modules()))")
    proc = _run(built, "-c", probe)
    assert proc.returncode == 0, proc.stderr
    loaded = set(proc.stdout.split())
    hot = {"stack.tcp.sender", "stack.tcp.receiver", "stack.tcp.tcb", "stack.wire.tcp", "stack.seq"}
    assert hot <= loaded
    assert "stack.tcp.connection" not in loaded  # stays interpreted (TIME_WAIT's weak reference)
    names = {m.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for m in accel.modules(built)}
    assert loaded <= names  # nothing else is compiled


def test_the_compiled_stack_passes_the_tcp_suite(built: Path) -> None:
    proc = _run(built, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(REPO_ROOT),
                "-c", str(REPO_ROOT / "pyproject.toml"), str(REPO_ROOT / "tests" / "tcp"),
                "-k", NOT_FOR_COMPILED)
    tail = proc.stdout[-3000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, tail
    assert " passed" in proc.stdout and " failed" not in proc.stdout, tail
