"""Finding the trace of the stack node at the other end of a connection, by either family."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.plan import build_plan
from lab.topology import load_topology
from lab.viz.nodes import peer_trace_file

TWO_NODE = Path(__file__).resolve().parents[2] / "topologies" / "two-node.yaml"


@pytest.mark.parametrize(
    "conn",
    [
        "10.2.0.1:40000>10.2.0.2:80",
        "[fd00:0:2::1]:40000>[fd00:0:2::2]:80",  # bracketed or bare: the stack's trace names either
        "fd00:0:2::1:40000>fd00:0:2::2:80",
    ],
)
def test_peer_trace_is_found_by_ipv4_or_ipv6_address(tmp_path: Path, conn: str) -> None:
    plan = build_plan(load_topology(TWO_NODE))
    for node in ("client", "server"):
        (tmp_path / f"{node}.json").write_text(json.dumps(plan.daemon_config(node, str(tmp_path))))
        (tmp_path / f"{node}.trace.jsonl").write_text("")
    client = tmp_path / "client.trace.jsonl"
    event = {"kind": "StateChange", "conn": conn, "old": "CLOSED", "new": "SYN_SENT"}
    client.write_text(json.dumps(event) + "\n")
    assert peer_trace_file(client) == tmp_path / "server.trace.jsonl"
