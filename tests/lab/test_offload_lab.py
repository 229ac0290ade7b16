"""TUN offloads on the real kernel: two stack nodes with `stack: {offload: true}` move an HTTP body
as TSO super-segments the kernel forwards whole; both ends trace them as such, the ladder draws
them, the body arrives intact and tshark finds every packet of both pcaps well formed with good
checksums (each super-segment's checksum completed by the pcap sink)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lab.cli import app
from lab.lab import Lab
from lab.node.apps import payload
from lab.node.control import ControlClient
from lab.scenarios.pytest_plugin import node_trace

from .support import clean_sink_report, two_node_fetch

pytestmark = pytest.mark.root
BODY = 3_000_000


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, dict[str, object]]]:
    """The lab, after the client fetched a BODY-octet body from the server: (lab, response)."""
    with two_node_fetch(tmp_path_factory.mktemp("off"), "off", "offload: true", BODY) as fetched:
        yield fetched


def test_body_moves_as_super_segments_and_arrives_intact(lab: tuple[Lab, dict[str, object]]) -> None:
    running, response = lab
    assert ControlClient(running.run_dir / "client.sock").call("status")["offload"] is True
    assert response["status"] == 200 and response["body_length"] == BODY
    assert response["sha256"] == payload.sha256(BODY)
    sent = [e for e in node_trace(running, "server")
            if e["kind"] == "SegmentEvent" and e["direction"] == "out"]
    got = [e for e in node_trace(running, "client") if e["kind"] == "SegmentEvent" and e["direction"] == "in"]
    supers = [e for e in sent if e.get("gso")]
    assert supers, "the server sent no super-segment"
    assert all(int(e["len"]) > int(e["gso"]) for e in supers)
    # The kernel forwarded them whole (both TUNs take TSO4): the client read super-segments too.
    assert any(e.get("gso") for e in got)
    assert len(got) < BODY // 1448 // 4


def test_ladder_draws_a_super_segment_as_one_arrow(lab: tuple[Lab, dict[str, object]]) -> None:
    result = CliRunner().invoke(app, ["trace", "client", "--lab", lab[0].name, "--format", "ladder"])
    assert result.exit_code == 0, result.output
    assert "gso=" in result.stdout and "x1448" in result.stdout


def test_the_receive_window_grows_past_the_initial_buffer(lab: tuple[Lab, dict[str, object]]) -> None:
    """An offload node autotunes its buffers (stack.tcp.autotune): the client, reading the body as
    fast as it comes, offers more than its initial 256 KB, with the window scale for 6 MB."""
    out = [e for e in node_trace(lab[0], "client") if e["kind"] == "SegmentEvent" and e["direction"] == "out"]
    (syn,) = [e for e in out if e["flags"] == "S"]
    assert "wscale 7" in syn["options"]
    assert max(int(e["win"]) << 7 for e in out if "S" not in e["flags"]) > 256 * 1024


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
@pytest.mark.parametrize("node", ["client", "server"])
def test_pcaps_hold_well_formed_packets_with_good_checksums(
    lab: tuple[Lab, dict[str, object]], node: str, tmp_path: Path
) -> None:
    clean_sink_report(lab[0].run_dir, node, tmp_path)
