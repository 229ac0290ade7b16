"""Benchmarks: figures and ratios measured in one run (`python -m tests.bench.run`).

Speed is measured here, never asserted in tests: absolute figures drift from run to run on shared
machines, so every figure that matters is printed beside a reference measured in the same run
(the raw TUN ceiling, the Linux kernel's TCP on the same veth).

Modules: `tun_ceiling` (raw TUN path, no stack), `stack_goodput` (the stack over TUN, node daemons
with trace files off and on, optional cProfile), `kernel_tcp` (iperf3 or Python sockets on the
veth), `sim_goodput` (the stack on the simulated network: CPU cost alone), `run` (all of them, the
table, the JSON). Every measurement stops by itself and every lab is torn down.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a helper process: the repository importable from anywhere."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    if extra:
        env.update(extra)
    return env



def role_argv(module: str, *args: str) -> list[str]:
    """argv running `python -m tests.bench.<module> <args>` with this interpreter."""
    return [sys.executable, "-m", f"tests.bench.{module}", *args]


def last_json_line(text: str) -> dict[str, Any]:
    """The last line of a helper's stdout that is a JSON object (helpers print their result last)."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            value = json.loads(line)
            if isinstance(value, dict):
                return value
    raise ValueError(f"no JSON result in helper output: {text[-500:]!r}")


def finish(proc: subprocess.Popen[bytes], timeout: float) -> tuple[str, str]:
    """Wait for a helper (killing it if it overstays `timeout`); its stdout and stderr as text."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=5)
    return out.decode(errors="replace"), err.decode(errors="replace")
