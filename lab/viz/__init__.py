"""Seeing TCP: ladder diagrams and congestion plots drawn from the stack's trace.

- `lab.viz.load`: read a trace (JSON lines or a MemorySink) and pick one connection, numbered
  relative to its ISNs.
- `lab.viz.ladder`: the sequence diagram's model, `build_ladder(...)`; drawn by
  `lab.viz.ladder_text.render_ladder_text(...)` and `lab.viz.ladder_svg.render_ladder_svg(...)`.
- `lab.viz.plot`: `plot_connection(...)`, cwnd / ssthresh / srtt / bytes in flight over time.
- `demo_traces()`: both ends' traces of the exchange `tcplab demo --sim` makes (no root needed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

from stack.trace import MemorySink, PacketEvent

DEMO_BODY_BYTES = 1000  # small enough for the whole exchange to fit in one picture


class DemoTraces(NamedTuple):
    client: MemorySink
    server: MemorySink


def demo_traces(
    seed: int = 1, delay: float = 0.005, body_bytes: int = DEMO_BODY_BYTES, loss: float = 0.0
) -> DemoTraces:
    """Run the sim demo's exchange (HTTP GET of `body_bytes`, client closes first, TIME_WAIT waited
    out on the virtual clock) and return both hosts' traces. `loss` applies to both directions."""
    import asyncio

    from lab.node.apps.http_client import HttpClient
    from lab.node.apps.http_server import HttpServer, HttpServerOptions
    from lab.scenarios.demo_sim import CLIENT_ADDR, HTTP_PORT, SERVER_ADDR
    from stack.config import TcpConfig
    from stack.sim.link import LinkProfile
    from stack.sim.network import Network
    from stack.socket import Stack
    from stack.trace import Trace

    client_sink, server_sink = MemorySink(), MemorySink()
    with Network(seed) as net:
        client = net.add_host("client", CLIENT_ADDR, config=TcpConfig(), trace=Trace([client_sink]))
        server = net.add_host("server", SERVER_ADDR, config=TcpConfig(), trace=Trace([server_sink]))
        net.connect("client", "server", LinkProfile(delay=delay, loss=loss))
        client_stack = Stack(client.runtime, names={"server": SERVER_ADDR})
        server_stack = Stack(server.runtime)

        async def scenario() -> None:
            http = await HttpServer(HttpServerOptions(port=HTTP_PORT)).start(server_stack)
            http_client = HttpClient(client_stack, "server", HTTP_PORT)
            await http_client.request("GET", f"/bytes/{body_bytes}")
            await http_client.close()
            while any(h.connections for h in (client.host, server.host)):
                await asyncio.sleep(1.0)
            http.close()
            await http.wait_closed()

        net.run(scenario(), timeout=600)
    return DemoTraces(client_sink, server_sink)


def write_trace(sink: MemorySink, path: Path) -> None:
    """A sink's events as JSON lines, as a lab node writes them (packets left out)."""
    with open(path, "w", encoding="utf-8") as f:
        for event in sink.events:
            if not isinstance(event, PacketEvent):
                d: dict[str, Any] = event.to_dict()
                f.write(json.dumps(d, separators=(",", ":")) + "\n")


def write_demo_traces(directory: str | Path, **options: Any) -> tuple[Path, Path]:
    """`demo_traces(**options)` written to DIRECTORY/client.trace.jsonl and server.trace.jsonl."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    traces = demo_traces(**options)
    paths = (out / "client.trace.jsonl", out / "server.trace.jsonl")
    write_trace(traces.client, paths[0])
    write_trace(traces.server, paths[1])
    return paths
