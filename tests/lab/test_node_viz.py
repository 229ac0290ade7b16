"""Seeing TCP on a lab: `tcplab trace NODE --format ladder|svg` and `tcplab plot NODE` draw a
real exchange between two stack nodes, with both ends' timelines taken from their own traces."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lab.cli import app
from lab.lab import Lab
from lab.node.control import ControlClient

pytestmark = pytest.mark.root
LAB = "nodeviz"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    running = Lab.up("topologies/two-node.yaml", LAB)
    try:
        ControlClient(running.run_dir / "client.sock").call(
            "run_app", {"name": "http-client", "options": {"host": "server", "path": "/bytes/3000"}}
        )
        deadline = time.monotonic() + 10
        trace = running.run_dir / "client.trace.jsonl"
        while '"new":"CLOSED"' not in trace.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)  # TIME_WAIT is 1 s in this topology: wait (bounded) for CLOSED
        yield running
    finally:
        Lab.down(LAB)


def test_trace_ladder_shows_both_ends_whole_lives(lab: Lab) -> None:
    result = CliRunner().invoke(app, ["trace", "client", "--lab", LAB, "--format", "ladder"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "both ends traced" in out
    for state in ("SYN_SENT", "SYN_RECEIVED", "FIN_WAIT_2", "TIME_WAIT", "LAST_ACK", "CLOSED"):
        assert state in out
    assert "SYN seq=0" in out and "SYN,ACK seq=0 ack=1" in out


def test_trace_svg_is_well_formed(lab: Lab) -> None:
    result = CliRunner().invoke(app, ["trace", "server", "--lab", LAB, "--format", "svg"])
    assert result.exit_code == 0, result.output
    root = ET.fromstring(result.stdout)
    assert root.tag.endswith("svg")


def test_plot_of_a_node_writes_a_png(lab: Lab, tmp_path: Path) -> None:
    out = tmp_path / "client.png"
    result = CliRunner().invoke(app, ["plot", "client", "--lab", LAB, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
