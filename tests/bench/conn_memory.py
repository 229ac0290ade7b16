"""Memory per idle established connection: `n` connections between two stack hosts on the
simulated network, all ESTABLISHED and idle, measured with tracemalloc (what Python allocated for
them after a full collection, both ends together, divided by 2n). It counts the stack's state of
a connection (TcpConnection, its buffers, timers, the host's tables), not application objects.
Needs no root.

    python -m tests.bench.conn_memory [--connections 10000]
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import tracemalloc
from typing import Any

from stack.config import TcpConfig
from stack.sim.link import LinkProfile
from stack.sim.network import Network
from stack.tcp.state import State

CLIENT, SERVER = "10.0.0.1", "10.0.0.2"
PORT = 80
BATCH = 100  # connections opened per round: within the listener's SYN backlog


def measure(connections: int = 10_000, seed: int = 0) -> dict[str, Any]:
    config = TcpConfig(syn_backlog=connections, default_backlog=connections)
    t0 = time.perf_counter()
    with Network(seed) as net:
        client = net.add_host("client", CLIENT, config=config)
        server = net.add_host("server", SERVER, config=config)
        net.connect("client", "server", LinkProfile(delay=0.0005))
        listener = server.host.listen(PORT)
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        conns = []
        for start in range(0, connections, BATCH):
            for _ in range(min(BATCH, connections - start)):
                conns.append(client.host.connect(SERVER, PORT, net.now))
            client.runtime.pump()
            net.run_for(0.01)
        net.run_for(1.0)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        established = sum(c.state is State.ESTABLISHED for c in conns)
        accepted = len(listener.accept_queue)
    total = after - before
    return {
        "connections": connections,
        "established": established,
        "server_side": accepted,
        "bytes_total": total,
        "bytes_per_connection": total / max(1, established + accepted),
        "wall_seconds": time.perf_counter() - t0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.conn_memory", description=__doc__)
    parser.add_argument("--connections", type=int, default=10_000)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.connections), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
