"""The stack on the simulated network (`stack.sim`), no TUN and no kernel: the pure CPU cost of
our TCP per byte. Both hosts and both bulk apps (the same `lab.node.apps.bulk` as over TUN, payload
verified at the receiver) run in this one process on a virtual clock; the link is clean (0.5 ms
one way, infinitely fast), so the wall-clock rate is bounded by Python alone. No trace sink is
attached (the trace is disabled, as it is nowhere else cheaper). Needs no root.

    python -m tests.bench.sim_goodput [--bytes 10000000] [--family ipv4|ipv6|both]

With `--family both` it runs IPv4 then IPv6 in the same process and prints the ratio of their
wall-clock rates (IPv6 / IPv4): what the longer header and the IPv6 layer cost per byte.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from lab.node.apps import bulk
from stack.config import TcpConfig
from stack.inet import tcp_overhead
from stack.sim.link import LinkProfile
from stack.sim.network import Network
from stack.socket import Stack

CLIENT, SERVER = "10.0.0.1", "10.0.0.2"
CLIENT6, SERVER6 = "fd00::1", "fd00::2"
PORT = 5201
LINK = LinkProfile(delay=0.0005)


def _stats(writer: asyncio.StreamWriter) -> dict[str, object] | None:
    info = getattr(writer.get_extra_info("tcp_connection"), "info", None)
    return dict(info()) if callable(info) else None


def measure(nbytes: int = 10_000_000, seed: int = 0, family: str = "ipv4") -> dict[str, Any]:
    """Send `nbytes` client → server over `family`; wall-clock and virtual-time figures."""
    target = SERVER6 if family == "ipv6" else SERVER
    with Network(seed) as net:
        config = TcpConfig()
        client = net.add_host("client", CLIENT, config=config, address6=CLIENT6)
        server = net.add_host("server", SERVER, config=config, address6=SERVER6)
        net.connect("client", "server", LINK)
        client_net, server_net = Stack(client.runtime), Stack(server.runtime)

        async def transfer() -> bulk.BulkResult:
            srv = await bulk.BulkServer(bulk.BulkServerOptions(port=PORT)).start(server_net)
            try:
                options = bulk.BulkClientOptions(host=target, port=PORT, bytes=nbytes)
                return await bulk.run_client(client_net, options, conn_stats=_stats)
            finally:
                srv.close()

        v0, t0 = net.now, time.perf_counter()
        result = net.run(transfer(), timeout=3600.0)
        wall, virtual = time.perf_counter() - t0, net.now - v0
    stats = [s.stats or {} for s in result.streams]
    segments = -(-result.bytes // (config.mtu - tcp_overhead(target)))  # full-sized; ACKs not counted
    return {
        "family": family,
        "bytes": result.bytes,
        "wall_seconds": wall,
        "bytes_per_s": result.bytes / (wall or 1e-9),
        "virtual_seconds": virtual,
        "virtual_bytes_per_s": result.bytes / (virtual or 1e-9),
        "us_per_segment": wall / max(1, segments) * 1e6,
        "verified": result.verified,
        "retransmits": sum(int(str(s.get("retransmits", 0))) for s in stats),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.sim_goodput", description=__doc__)
    parser.add_argument("--bytes", type=int, default=10_000_000)
    parser.add_argument("--family", choices=("ipv4", "ipv6", "both"), default="ipv4")
    args = parser.parse_args(argv)
    if args.family != "both":
        print(json.dumps(measure(args.bytes, family=args.family), indent=2))
        return 0
    v4, v6 = measure(args.bytes, family="ipv4"), measure(args.bytes, family="ipv6")
    ratio = v6["bytes_per_s"] / v4["bytes_per_s"]
    print(json.dumps({"ipv4": v4, "ipv6": v6, "ipv6_over_ipv4": ratio}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
