"""Ctrl-C (SIGINT) during `tcplab check` tears the lab down and exits 130: once while the lab is
coming up, once in the middle of the scenarios (the live impairment's emulator running). The CLI
runs in a subprocess, as a user runs it; afterwards nothing of the lab is left: namespaces,
processes, marked links, run directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lab.inventory import leftovers
from lab.kernel import ownership
from lab.lab import REPO_ROOT, Lab

pytestmark = [pytest.mark.root, pytest.mark.timeout(60)]

POLL = 0.01
NUL = bytes(1)
StartCheck = Callable[[str], "subprocess.Popen[bytes]"]





def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout:g}s")
        time.sleep(POLL)


@pytest.fixture
def check_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StartCheck]:
    """Starts `python -m lab.cli check --name NAME` with its own run directory; afterwards kills
    what is still running and downs the lab, so a failing test leaks nothing either."""
    runs = tmp_path / "run"
    monkeypatch.setenv("TCPLAB_RUN_DIR", str(runs))
    started: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(name: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "TCPLAB_RUN_DIR": str(runs), "PYTHONPATH": str(REPO_ROOT)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "lab.cli", "check", "--name", name],
            cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        started.append((name, proc))
        return proc

    yield start
    for name, proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
        Lab.down(name)


def interrupt(proc: subprocess.Popen[bytes]) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=40)
    return proc.returncode, err.decode(errors="replace")


def test_ctrl_c_while_the_lab_comes_up(
    check_cli: StartCheck, tmp_path: Path
) -> None:
    name = f"int{os.getpid() % 10000}u"
    proc = check_cli(name)
    # The first namespace exists long before the daemons answer: `up` is under way.
    wait_for(lambda: bool(ownership.lab_namespaces(name)) or proc.poll() is not None, 30, "namespace")
    assert proc.poll() is None, proc.communicate()
    daemons_up = (tmp_path / "run" / name / "server.sock").exists()
    code, err = interrupt(proc)
    assert code == 130, err
    assert "interrupted" in err
    assert not daemons_up, "meant to interrupt `up` itself: the lab was already fully up"
    assert leftovers(name, tmp_path / "run") == {}


def test_ctrl_c_in_the_middle_of_the_scenarios(
    check_cli: StartCheck, tmp_path: Path
) -> None:
    name = f"int{os.getpid() % 10000}c"
    proc = check_cli(name)
    impair_dir = tmp_path / "run" / name / "impair"
    # The bulk scenario impairs the link live: its emulator's control directory appears.
    wait_for(lambda: impair_dir.exists() or proc.poll() is not None, 40, "live impairment")
    assert proc.poll() is None, proc.communicate()
    assert ownership.lab_namespaces(name).get(name)
    code, err = interrupt(proc)
    assert code == 130, err
    assert "interrupted" in err
    assert leftovers(name, tmp_path / "run") == {}
