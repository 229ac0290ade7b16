"""`kill -9` of the CLI during `up` and of every real node daemon (and link emulator) of an
impaired lab: `tcplab down` still leaves no namespace, interface, process or run file behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from lab.inventory import leftovers as _leftovers
from lab.kernel import ownership
from lab.lab import Lab

pytestmark = pytest.mark.root
CLI = "from lab.cli import app; app()"


def _until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()





def test_kill_9_of_every_daemon_and_emulator_then_down() -> None:
    name = "kill9"
    lab = Lab.up("topologies/lossy.yaml", name)
    try:
        pids = ownership.pids_in(ownership.lab_namespaces(name)[name])
        assert len(pids) >= 4  # two daemons, two link emulators
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        assert _until(lambda: not ownership.pids_in(ownership.lab_namespaces(name)[name]), 5.0)
    finally:
        Lab.down(lab.name)
    assert _leftovers(name) == {}


def test_kill_9_of_the_cli_during_up_then_down() -> None:
    name = "kill9cli"
    cli = subprocess.Popen(
        [sys.executable, "-c", CLI, "up", "topologies/lossy.yaml", "--name", name],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        # Kill it as soon as its first namespace exists: the middle of `up`.
        assert _until(lambda: bool(ownership.lab_namespaces(name).get(name)), 30.0)
        cli.send_signal(signal.SIGKILL)
        cli.wait(10)
        # Whatever `up` had started (daemons, emulators) may outlive it until `down`.
        down = subprocess.run(
            [sys.executable, "-c", CLI, "down", name],
            capture_output=True, text=True, timeout=60,
        )
        assert down.returncode == 0, down.stderr
    finally:
        if cli.poll() is None:
            cli.kill()
        Lab.down(name)
    assert _leftovers(name) == {}
