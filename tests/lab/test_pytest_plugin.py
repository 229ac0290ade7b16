"""The pytest plugin a user's own lab tests use: the `tcplab_lab` fixture and trace assertions."""

from __future__ import annotations

import time
from typing import Any

import pytest

from lab.kernel import ownership
from lab.node.control import ControlClient
from lab.scenarios.pytest_plugin import assert_transitions, node_trace, tcplab_lab, transitions

__all__ = ["tcplab_lab"]  # the fixture, as the installed plugin provides it

pytestmark = pytest.mark.root


def _wait_closed(lab: Any, node: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        trace = node_trace(lab, node)
        if trace and transitions(trace)[-1] == "CLOSED":
            return
        time.sleep(0.05)


def test_user_lab_test_with_the_fixture_and_helpers(tcplab_lab: Any) -> None:
    lab = tcplab_lab("topologies/two-node.yaml", "plugin")
    ControlClient(lab.run_dir / "client.sock").call(
        "run_app", {"name": "http-client", "options": {"host": "server", "path": "/bytes/1000"}}
    )
    _wait_closed(lab, "client")
    _wait_closed(lab, "server")
    assert_transitions(node_trace(lab, "server"),
                       ["LISTEN", "SYN_RECEIVED", "ESTABLISHED", "CLOSE_WAIT", "LAST_ACK", "CLOSED"])
    assert_transitions(node_trace(lab, "client"), [
        "CLOSED", "SYN_SENT", "ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2", "TIME_WAIT", "CLOSED"])
    with pytest.raises(AssertionError, match="state transitions differ"):
        assert_transitions(node_trace(lab, "server"), ["LISTEN", "CLOSED"])


def test_the_fixture_took_its_lab_down() -> None:
    assert "plugin" not in ownership.lab_namespaces()
