"""A pytest plugin for people's own lab tests (registered as the `tcplab` pytest11 entry point).

    def test_my_server(tcplab_lab):
        lab = tcplab_lab("topologies/two-node.yaml")      # up now, down after the test
        ...                                               # drive the nodes
        trace = node_trace(lab, "server")
        assert_transitions(trace, ["LISTEN", "SYN_RECEIVED", "ESTABLISHED",
                                   "CLOSE_WAIT", "LAST_ACK", "CLOSED"])

Tests that use `tcplab_lab` are skipped, with the reason, where the lab cannot run (no root or
no /dev/net/tun). The helpers read the node's JSON-lines trace (DIR/NODE.trace.jsonl).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest


def node_trace(lab: Any, node: str) -> list[dict[str, Any]]:
    """Every event a stack node has traced so far, as dicts (see stack.trace)."""
    from lab.node.control import flush_traces

    flush_traces(Path(lab.run_dir))  # the daemons' buffers too: the app may have ended just now
    path = Path(lab.run_dir) / f"{node}.trace.jsonl"
    if not path.exists():
        return []
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def connections(trace: Sequence[dict[str, Any]]) -> list[str]:
    """The connection ids in a trace, in the order they first changed state."""
    return list(dict.fromkeys(e["conn"] for e in trace if e.get("kind") == "StateChange"))


def transitions(trace: Sequence[dict[str, Any]], conn: str | None = None) -> list[str]:
    """State names one connection went through, e.g. ["LISTEN", "SYN_RECEIVED", ...]."""
    conns = connections(trace)
    if conn is None:
        if len(conns) != 1:
            raise AssertionError(f"trace has {len(conns)} connections, name one of {conns}")
        conn = conns[0]
    changes = [e for e in trace if e.get("kind") == "StateChange" and e["conn"] == conn]
    return ([changes[0]["old"]] if changes else []) + [e["new"] for e in changes]


def assert_transitions(
    trace: Sequence[dict[str, Any]], expected: Sequence[str], conn: str | None = None
) -> None:
    got = transitions(trace, conn)
    assert got == list(expected), f"state transitions differ:\n  expected {list(expected)}\n  got      {got}"


@pytest.fixture
def tcplab_lab() -> Iterator[Callable[..., Any]]:
    """A factory: `tcplab_lab(topology, name=None)` brings a lab up; every lab it made is downed
    after the test, pass or fail."""
    from lab.kernel.netns import privilege_problem  # imported late: the plugin loads in every session

    problem = privilege_problem()
    if problem:
        pytest.skip(problem)
    from lab.lab import Lab

    made: list[str] = []

    def up(topology: str | Path, name: str | None = None, **kwargs: Any) -> Lab:
        lab = Lab.up(topology, name, **kwargs)
        made.append(lab.name)
        return lab

    try:
        yield up
    finally:
        for name in made:
            Lab.down(name)
