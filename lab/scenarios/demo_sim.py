"""`tcplab demo --sim`: one HTTP request and response across the stack on the simulated network.

Two stack hosts joined by one simulated link; the HTTP client on `client` fetches a small
deterministic body from the HTTP server on `server`, closes first, and the demo waits out
TIME_WAIT (instant on the virtual clock). The result is the same document the real-namespace demo
produces: the request's outcome and each end's state transitions, read from the stack's trace.
"""

from __future__ import annotations

import asyncio
from typing import Any

from lab.node.apps.http_client import HttpClient
from lab.node.apps.http_server import HttpServer, HttpServerOptions
from lab.node.apps.payload import sha256 as payload_sha256
from stack.config import TcpConfig
from stack.sim.link import LinkProfile
from stack.sim.network import Network
from stack.socket import Stack
from stack.trace import MemorySink, StateChange, Trace

CLIENT_ADDR = "10.0.0.1"
SERVER_ADDR = "10.0.0.2"
HTTP_PORT = 80
BODY_BYTES = 100_000

EXPECTED_CLIENT = ["CLOSED", "SYN_SENT", "ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2", "TIME_WAIT", "CLOSED"]
EXPECTED_SERVER = ["LISTEN", "SYN_RECEIVED", "ESTABLISHED", "CLOSE_WAIT", "LAST_ACK", "CLOSED"]


def transitions_of(sink: MemorySink) -> tuple[str, list[dict[str, Any]]]:
    """The one connection in a host's trace, and its transitions with times and causes."""
    changes: list[StateChange] = sink.of(StateChange)
    if not changes:
        return "", []
    conn = changes[0].conn
    return conn, [
        {"time": round(c.time, 6), "old": c.old, "new": c.new, "cause": c.cause}
        for c in changes
        if c.conn == conn
    ]


def state_names(steps: list[dict[str, Any]]) -> list[str]:
    return ([steps[0]["old"]] if steps else []) + [s["new"] for s in steps]


def run_sim_demo(seed: int = 1, delay: float = 0.005, body_bytes: int = BODY_BYTES) -> dict[str, Any]:
    config = TcpConfig()  # TIME_WAIT of 60 s: waited out on the virtual clock
    client_sink, server_sink = MemorySink(), MemorySink()
    with Network(seed) as net:
        client = net.add_host("client", CLIENT_ADDR, config=config, trace=Trace([client_sink]))
        server = net.add_host("server", SERVER_ADDR, config=config, trace=Trace([server_sink]))
        net.connect("client", "server", LinkProfile(delay=delay))
        client_stack = Stack(client.runtime, names={"server": SERVER_ADDR})
        server_stack = Stack(server.runtime)

        async def scenario() -> dict[str, Any]:
            http = await HttpServer(HttpServerOptions(port=HTTP_PORT)).start(server_stack)
            http_client = HttpClient(client_stack, "server", HTTP_PORT)
            response = await http_client.request("GET", f"/bytes/{body_bytes}")
            await http_client.close()  # the client closes first: the active close
            # Wait until both ends have finished (CLOSED), TIME_WAIT included.
            while any(h.connections for h in (client.host, server.host)):
                await asyncio.sleep(1.0)
            http.close()
            await http.wait_closed()
            outcome = response.to_dict()
            outcome["digest_ok"] = response.sha256 == payload_sha256(body_bytes)
            return outcome

        outcome = net.run(scenario(), timeout=600)
        finished_at = net.now
    client_conn, client_steps = transitions_of(client_sink)
    server_conn, server_steps = transitions_of(server_sink)
    return {
        "mode": "sim",
        "seed": seed,
        "request": {"method": "GET", "url": f"http://server/bytes/{body_bytes}", **outcome},
        "client": {"address": CLIENT_ADDR, "connection": client_conn,
                   "transitions": state_names(client_steps), "steps": client_steps},
        "server": {"address": SERVER_ADDR, "connection": server_conn,
                   "transitions": state_names(server_steps), "steps": server_steps},
        "virtual_seconds": round(finished_at, 6),
        "ok": state_names(client_steps) == EXPECTED_CLIENT and state_names(server_steps) == EXPECTED_SERVER
        and outcome["status"] == 200 and bool(outcome["digest_ok"]),
    }
