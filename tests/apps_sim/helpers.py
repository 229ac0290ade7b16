"""Two stack hosts on the simulated network, for running the apps on the real stack.

`client` (10.0.0.1) and `server` (10.0.0.2) share one duplex link; each host has its own trace
sink. `lab.client_net` / `lab.server_net` are `Stack`s, i.e. the `Net` the apps are written
against, so the apps run unchanged over our TCP in virtual time. A seed fixes every packet's
fate, so a failing case replays exactly.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from stack.config import TcpConfig
from stack.sim.link import LinkProfile
from stack.sim.network import Network, SimNode
from stack.socket import Stack
from stack.trace import MemorySink, StateChange, Trace

_T = TypeVar("_T")

CLIENT_ADDR = "10.0.0.1"
SERVER_ADDR = "10.0.0.2"

# 100 Mbit/s with 5 ms one way: a 125 kB bandwidth-delay product, well inside the buffers.
CLEAN = LinkProfile(delay=0.005, rate=100e6)
# The same link losing 5% of the packets each way and letting 5% overtake those in flight.
LOSSY = LinkProfile(delay=0.005, rate=100e6, loss=0.05, reorder=0.05)
PROFILES = {"clean": CLEAN, "lossy": LOSSY}

# Finished states: an active closer ends in TIME_WAIT (then CLOSED once 2*MSL has passed).
DONE_STATES = ("CLOSED", "TIME_WAIT")


@dataclass
class SimLab:
    net: Network
    client: SimNode
    server: SimNode
    client_sink: MemorySink
    server_sink: MemorySink
    client_net: Stack
    server_net: Stack
    profile: LinkProfile

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float = 600.0) -> _T:
        """Run coro on the network's loop; timeout in virtual seconds."""
        return self.net.run(coro, timeout=timeout)

    async def settle(self, limit: float = 300.0) -> None:
        """Wait (virtual time) until neither host has a connection left, TIME_WAIT included."""
        loop = asyncio.get_running_loop()
        end = loop.time() + limit
        while self.client.host.connections or self.server.host.connections:
            if loop.time() > end:
                raise AssertionError(f"connections left: {self.open_connections()}")
            await asyncio.sleep(1.0)

    def impairments(self) -> dict[str, int]:
        """What the link did to the packets, both directions together (lost, reordered, ...)."""
        duplex = self.net.duplex("client", "server")
        total: dict[str, int] = {}
        for link in (duplex.forward, duplex.backward):
            for key, value in link.stats.as_dict().items():
                total[key] = total.get(key, 0) + value
        return total

    def assert_impaired(self) -> None:
        """On an impaired profile, the link really lost and reordered packets in this run."""
        seen = self.impairments()
        if self.profile.loss:
            assert seen["lost"] > 0, seen
        if self.profile.reorder:
            assert seen["reordered"] > 0, seen

    def open_connections(self) -> dict[str, list[str]]:
        return {
            "client": [str(c.state.name) for c in self.client.host.connections.values()],
            "server": [str(c.state.name) for c in self.server.host.connections.values()],
        }


def make_lab(seed: int, profile: LinkProfile = CLEAN, config: TcpConfig | None = None) -> SimLab:
    net = Network(seed)
    client_sink, server_sink = MemorySink(), MemorySink()
    cfg = config or TcpConfig()
    client = net.add_host("client", CLIENT_ADDR, config=cfg, trace=Trace([client_sink]))
    server = net.add_host("server", SERVER_ADDR, config=cfg, trace=Trace([server_sink]))
    net.connect("client", "server", profile)
    return SimLab(
        net,
        client,
        server,
        client_sink,
        server_sink,
        Stack(client.runtime, names={"server": SERVER_ADDR}),
        Stack(server.runtime),
        profile,
    )


def connections(sink: MemorySink) -> list[str]:
    """Connection ids in the order they first appear in a host's state changes."""
    return list(dict.fromkeys(c.conn for c in sink.of(StateChange)))


def assert_all_finished(sink: MemorySink, *, expect: int | None = None) -> list[list[str]]:
    """Every connection in a host's trace was established and ended in CLOSED or TIME_WAIT, none
    by a reset or an abort: the state paths, in order of first appearance."""
    paths = [sink.transitions(c) for c in connections(sink)]
    if expect is not None:
        assert len(paths) == expect, paths
    for path in paths:
        assert path[-1] in DONE_STATES, path
        assert "ESTABLISHED" in path, path
    # No connection was ended by a reset. (A late duplicate ACK reaching a connection that has
    # already closed is answered with RST, as RFC 9293 says; the peer in TIME_WAIT drops it.)
    normal_ends = ("TIME_WAIT", "LAST_ACK")
    aborted = [c for c in sink.of(StateChange) if c.new == "CLOSED" and c.old not in normal_ends]
    assert not aborted, aborted[:5]
    return paths


def sha256(data: bytes | bytearray) -> str:
    return hashlib.sha256(data).hexdigest()


def syns_out(sink: MemorySink) -> int:
    """Segments with SYN and without ACK that a host sent (connection attempts, retries too)."""
    return sum(1 for s in sink.segments("out") if "S" in s.flags and "." not in s.flags)
