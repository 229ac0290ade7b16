"""The optional compiled build of the stack's hot modules (mypyc): an accelerator, never the reference.

`python -m tests.bench.accel [OUT]` (or `make accel`) copies `stack/` to OUT (default
build/accel) and compiles the modules of MODULES there with mypyc, which reads the code's strict
type hints; the repository's own tree is not touched, so `make test`, the demo and the lab keep
running the pure-Python stack (the lab starts its node daemons with the repository first on their
path). A process with OUT first on sys.path runs the compiled one: `make bench BENCH_ARGS=--accel`
starts its daemons so for two extra rows, and tests/unit/test_accel.py runs the TCP suite so.

What stays interpreted, and why:
- stack.tcp.connection: a TIME_WAIT record holds a weak reference to its connection, and mypyc's
  native classes take none; the role classes below it allow an interpreted subclass
  (stack.compiled).
- stack.trace and stack.tcp.time_wait: not on the per-segment path with no trace sink, and tests
  subclass the sinks.
- the host and the drivers (multiple inheritance; asyncio), the simulator, stack.compiled itself.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.bench import REPO_ROOT

DEFAULT_OUT = REPO_ROOT / "build" / "accel"
INTERPRETED_TCP = {"connection.py", "time_wait.py"}
TOP_LEVEL = ("seq", "checksum", "inet", "config", "timer_heap", "errors", "guard", "martian", "cookie_open",
             "sockopts")


def modules(root: Path) -> list[str]:
    """The compiled modules, as paths relative to root (a copy of the repository's layout)."""
    tcp = sorted(p for p in (root / "stack" / "tcp").glob("*.py") if p.name not in INTERPRETED_TCP)
    wire = sorted((root / "stack" / "wire").glob("*.py"))
    top = [root / "stack" / f"{name}.py" for name in TOP_LEVEL]
    return [str(p.relative_to(root)) for p in (*tcp, *wire, *top)]


def build(out: Path = DEFAULT_OUT) -> Path:
    """Compile into out (replacing what was there) and return it, the directory to put on
    PYTHONPATH. Raises RuntimeError with mypyc's output when the build fails."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copytree(REPO_ROOT / "stack", out / "stack", ignore=shutil.ignore_patterns("__pycache__"))
    # In out there is no pyproject.toml: mypyc runs setuptools in its working directory.
    cmd = [sys.executable, "-m", "mypyc", *modules(out)]
    proc = subprocess.run(cmd, cwd=out, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"mypyc failed ({proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    shutil.rmtree(out / "build", ignore_errors=True)  # mypyc's C sources and objects
    return out


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    built = build(out)
    count = len(list(built.glob("stack/**/*.so")))
    print(f"compiled {len(modules(built))} modules ({count} extension files) into {built}")
    print(f"run the compiled stack with PYTHONPATH={built}")


if __name__ == "__main__":
    main()
