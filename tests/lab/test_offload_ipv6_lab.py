"""TSO6 on the real kernel: two stack nodes with `stack: {offload: true}` move a bulk transfer over
IPv6 as GSO_TCPV6 super-segments the kernel forwards whole (both TUNs take TUN_F_TSO6); both
ends trace them as such, the receiver verifies every byte, and tshark finds every packet of both
pcaps well formed with good checksums (each super-segment's checksum completed by the pcap sink
over IPv6's pseudo-header)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.lab import Lab
from lab.node.control import ControlClient, flush_traces
from lab.scenarios.pytest_plugin import node_trace

from .support import clean_sink_report

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]
BODY = 3_000_000
PORT = 5201

TOPOLOGY = f"""
name: offload6
defaults:
  stack:
    time_wait: 1s
    offload: true
nodes:
  client:
    kind: stack
  server:
    kind: stack
    apps:
      - name: bulk-server
        options: {{port: {PORT}}}
links:
  - endpoints: [client, server]
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, dict[str, Any]]]:
    """The lab, after the server sent BODY octets to the client over IPv6: (lab, bulk result)."""
    path = tmp_path_factory.mktemp("offload6") / "offload6.yaml"
    path.write_text(TOPOLOGY)
    name = f"off6{os.getpid() % 100000}"
    running = Lab.up(path, name)
    try:
        server6 = str(running.plan.address6_of("server"))
        client = ControlClient(running.run_dir / "client.sock", timeout=90)
        result = client.call("run_app", {"name": "bulk-client", "timeout": 60, "options": {
            "host": server6, "port": PORT, "direction": "recv", "bytes": BODY}})
        flush_traces(running.run_dir)
        yield running, result
    finally:
        Lab.down(name)


def _segments(lab: Lab, node: str, direction: str) -> list[dict[str, Any]]:
    return [e for e in node_trace(lab, node) if e["kind"] == "SegmentEvent" and e["direction"] == direction]


def test_ipv6_bulk_moves_as_super_segments_and_arrives_intact(lab: tuple[Lab, dict[str, Any]]) -> None:
    running, result = lab
    assert ControlClient(running.run_dir / "server.sock").call("status")["offload"] is True
    assert result["verified"] is True and result["bytes"] == BODY, result
    sent = _segments(running, "server", "out")
    got = _segments(running, "client", "in")
    assert sent and all(str(e["conn"]).startswith("[") for e in sent + got)  # IPv6 only
    supers = [e for e in sent if e.get("gso")]
    assert supers, "the server sent no IPv6 super-segment"
    # MTU 1500, IPv6 and TCP headers and timestamps: 1428 octets a segment, as without offloads.
    assert {e["gso"] for e in supers} == {1428}
    assert all(int(e["len"]) > 1428 and int(e["len"]) % 1428 == 0 for e in supers)
    # The kernel forwarded them whole (TSO6 on both TUNs): the client read super-segments too.
    assert any(e.get("gso") for e in got)
    assert len(got) < BODY // 1428 // 4


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
@pytest.mark.parametrize("node", ["client", "server"])
def test_ipv6_pcaps_hold_well_formed_packets_with_good_checksums(
    lab: tuple[Lab, dict[str, Any]], node: str, tmp_path: Path
) -> None:
    assert clean_sink_report(lab[0].run_dir, node, tmp_path).tcp_segments > 0
