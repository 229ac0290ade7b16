"""The checksum offload alone on the real kernel: two stack nodes with `stack: {offload: checksum}`
move an HTTP body segment by segment, each leaving with a partial checksum for the kernel to
complete; both traces show wire-sized segments only, the body arrives intact and tshark finds
every packet of both pcaps well formed with good checksums (completed by the pcap sink)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.lab import Lab
from lab.node.apps import payload
from lab.node.control import ControlClient
from lab.scenarios.pytest_plugin import node_trace

from .support import clean_sink_report, two_node_fetch

pytestmark = pytest.mark.root
BODY = 1_000_000


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, dict[str, object]]]:
    """The lab, after the client fetched a BODY-octet body from the server: (lab, response)."""
    with two_node_fetch(tmp_path_factory.mktemp("csum"), "csum", "offload: checksum", BODY) as fetched:
        yield fetched


def test_body_moves_segment_by_segment_and_arrives_intact(lab: tuple[Lab, dict[str, object]]) -> None:
    running, response = lab
    for node in ("client", "server"):
        status = ControlClient(running.run_dir / f"{node}.sock").call("status")
        assert status["offload"] is True and status["offload_mode"] == "checksum"
    assert response["status"] == 200 and response["body_length"] == BODY
    assert response["sha256"] == payload.sha256(BODY)
    for node, direction in (("server", "out"), ("client", "in")):
        data = [e for e in node_trace(running, node)
                if e["kind"] == "SegmentEvent" and e["direction"] == direction and int(e["len"]) > 0]
        assert not any(e.get("gso") for e in data), f"{node} traced a super-segment"
        assert max(int(e["len"]) for e in data) == 1448
        assert sum(int(e["len"]) for e in data) >= BODY


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
@pytest.mark.parametrize("node", ["client", "server"])
def test_pcaps_hold_well_formed_packets_with_good_checksums(
    lab: tuple[Lab, dict[str, object]], node: str, tmp_path: Path
) -> None:
    clean_sink_report(lab[0].run_dir, node, tmp_path)
