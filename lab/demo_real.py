"""`tcplab demo` on real namespaces: up the default topology, one HTTP request across the stack,
the state transitions of both ends from the nodes' traces, down."""

from __future__ import annotations

from typing import Any


def run_real_demo(topology: str) -> dict[str, Any]:
    raise RuntimeError("the real-namespace demo needs the node daemon, which is not built yet")
