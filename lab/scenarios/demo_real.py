"""`tcplab demo` on real namespaces: up the default topology, one HTTP request across the stack,
the state transitions of both ends from the nodes' traces, down (always, Ctrl-C included).

The document it returns has the same shape as `tcplab demo --sim` (lab.scenarios.demo_sim). The default
topology sets TIME_WAIT to 1 s, so the demo waits (bounded) until both ends are CLOSED.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from lab.lab import Lab
from lab.node.apps.payload import sha256 as payload_sha256
from lab.node.control import ControlClient
from lab.scenarios.demo_sim import BODY_BYTES, EXPECTED_CLIENT, EXPECTED_SERVER, state_names

HTTP_PORT = 80
SETTLE_TIMEOUT = 15.0  # seconds to wait for both ends to reach CLOSED (TIME_WAIT is 1 s)


def _steps(run_dir: Path, node: str, port: int, server: bool) -> tuple[str, list[dict[str, Any]]]:
    """The transitions of the node's connection to or from `port`, from its JSON-lines trace."""
    path = run_dir / f"{node}.trace.jsonl"
    if not path.exists():
        return "", []
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    changes = [e for e in events if e.get("kind") == "StateChange"]

    def port_of(conn: str) -> int:
        local, remote = conn.split(">")
        return int((local if server else remote).rsplit(":", 1)[1])

    conns = [c for c in dict.fromkeys(e["conn"] for e in changes) if port_of(c) == port]
    if not conns:
        return "", []
    conn = conns[0]
    return conn, [
        {"time": round(e["time"], 6), "old": e["old"], "new": e["new"], "cause": e["cause"]}
        for e in changes
        if e["conn"] == conn
    ]


def run_real_demo(topology: str, name: str | None = None) -> dict[str, Any]:
    lab_name = name or f"demo{os.getpid() % 100000}"
    lab = Lab.up(topology, lab_name)
    try:
        run_dir = lab.run_dir
        client = ControlClient(run_dir / "client.sock", timeout=60.0)
        server_addr = lab.address_of("server")
        response = client.call(
            "run_app",
            {"name": "http-client",
             # Keep-alive: the client closes after the response, so it makes the active close.
             "options": {"host": "server", "port": HTTP_PORT, "path": f"/bytes/{BODY_BYTES}"},
             "timeout": 30.0},
        )
        has_list = isinstance(response, dict) and response.get("responses")
        first = response["responses"][0] if has_list else response
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while True:
            client_conn, client_steps = _steps(run_dir, "client", HTTP_PORT, server=False)
            server_conn, server_steps = _steps(run_dir, "server", HTTP_PORT, server=True)
            done = (client_steps and client_steps[-1]["new"] == "CLOSED"
                    and server_steps and server_steps[-1]["new"] == "CLOSED")
            if done or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        # Both daemons' clocks are CLOCK_MONOTONIC: show times from the client's connect.
        origin = client_steps[0]["time"] if client_steps else 0.0
        for step in (*client_steps, *server_steps):
            step["time"] = round(step["time"] - origin, 6)
        outcome = dict(first)
        outcome["digest_ok"] = outcome.get("sha256") == payload_sha256(BODY_BYTES)
        client_names, server_names = state_names(client_steps), state_names(server_steps)
        return {
            "mode": "lab",
            "lab": lab.name,
            "request": {"method": "GET", "url": f"http://server/bytes/{BODY_BYTES}", **outcome},
            "client": {"address": lab.address_of("client"), "connection": client_conn,
                       "transitions": client_names, "steps": client_steps},
            "server": {"address": server_addr, "connection": server_conn,
                       "transitions": server_names, "steps": server_steps},
            "ok": client_names == EXPECTED_CLIENT and server_names == EXPECTED_SERVER
            and outcome.get("status") == 200 and bool(outcome["digest_ok"]),
        }
    finally:
        Lab.down(lab.name)
