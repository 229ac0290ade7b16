"""Two stack hosts on the simulated network: the one set-up for tests that run the whole stack on
both ends (tests/tcp scenarios, tests/reliability transfers, tests/apps_sim).

`a` (10.0.0.1, fd00::1) and `b` (10.0.0.2, fd00::2) share one duplex link; each host has its own
trace sink and a `Stack` (the socket API) over it. `a` is the side that connects: its Stack knows
`b`'s node name, so an app can connect to "server" when b is named so. Everything runs in virtual
time on `stack.sim.Network`; the seed and the node names fix every packet's fate, so a failing
case replays exactly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from stack.config import TcpConfig
from stack.sim import LinkProfile, Network, SimNode
from stack.socket import Stack
from stack.trace import Event, MemorySink, StateChange, Trace

_T = TypeVar("_T")

A_ADDR = "10.0.0.1"
B_ADDR = "10.0.0.2"
A_ADDR6 = "fd00::1"
B_ADDR6 = "fd00::2"
DEFAULT_LINK = LinkProfile(delay=0.01)


@dataclass
class TwoHosts:
    """Hosts a and b joined by one duplex link, with their trace sinks and socket APIs."""

    net: Network
    a: SimNode
    b: SimNode
    sink_a: MemorySink
    sink_b: MemorySink
    stack_a: Stack
    stack_b: Stack
    profile: LinkProfile

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float = 600.0) -> _T:
        """Run coro on the network's loop; timeout in virtual seconds."""
        return self.net.run(coro, timeout=timeout)

    async def settle(self, limit: float = 300.0) -> None:
        """Wait (virtual time) until neither host has a connection left, TIME_WAIT included."""
        loop = asyncio.get_running_loop()
        end = loop.time() + limit
        while self.a.host.connections or self.b.host.connections:
            if loop.time() > end:
                raise AssertionError(f"connections left: {self.open_connections()}")
            await asyncio.sleep(1.0)

    def open_connections(self) -> dict[str, list[str]]:
        return {
            node.name: [str(c.state.name) for c in node.host.connections.values()]
            for node in (self.a, self.b)
        }

    def impairments(self) -> dict[str, int]:
        """What the link did to the packets, both directions together (lost, reordered, ...)."""
        duplex = self.net.duplex(self.a.name, self.b.name)
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


class StateSink(MemorySink):
    """A MemorySink that keeps only StateChange events (cheap enough for long sweeps)."""

    def write(self, event: Event) -> None:
        if isinstance(event, StateChange):
            self.events.append(event)


def two_hosts(
    seed: int,
    profile: LinkProfile | None = None,
    *,
    config: TcpConfig | None = None,
    config_b: TcpConfig | None = None,
    reverse: LinkProfile | None = None,
    names: tuple[str, str] = ("a", "b"),
    ipv6: bool = True,
    trace: bool = True,
    states_only: bool = False,
) -> TwoHosts:
    """a and b on a link of `profile` (b to a: `reverse`, else the same); config_b defaults to
    config. ipv6=False leaves the hosts IPv4-only; trace=False records nothing, states_only
    only the state changes."""
    net = Network(seed)
    sink_a, sink_b = (StateSink(), StateSink()) if states_only else (MemorySink(), MemorySink())
    cfg_a = config or TcpConfig()
    cfg_b = config_b or cfg_a
    name_a, name_b = names
    a = net.add_host(name_a, A_ADDR, config=cfg_a, trace=Trace([sink_a]) if trace else Trace(),
                     address6=A_ADDR6 if ipv6 else None)
    b = net.add_host(name_b, B_ADDR, config=cfg_b, trace=Trace([sink_b]) if trace else Trace(),
                     address6=B_ADDR6 if ipv6 else None)
    link = profile or DEFAULT_LINK
    net.connect(name_a, name_b, link, reverse)
    return TwoHosts(net, a, b, sink_a, sink_b, Stack(a.runtime, names={name_b: B_ADDR}),
                    Stack(b.runtime), link)


def routed_two_hosts(seed: int, mtu: int, *, config: TcpConfig | None = None,
                     ipv6: bool = True) -> TwoHosts:
    """a - r - b through a router, the r-b link carrying at most `mtu` octets (5 ms each way on
    both links): for Path MTU discovery. `profile` is the r-b link's."""
    net = Network(seed)
    sink_a, sink_b = MemorySink(), MemorySink()
    cfg = config or TcpConfig()
    a = net.add_host("a", A_ADDR, address6=A_ADDR6 if ipv6 else None, config=cfg, trace=Trace([sink_a]))
    b = net.add_host("b", B_ADDR, address6=B_ADDR6 if ipv6 else None, config=cfg, trace=Trace([sink_b]))
    net.add_router("r", "10.0.1.254", *(("fd00:1::fe",) if ipv6 else ()))
    far = LinkProfile(delay=0.005, mtu=mtu)
    net.connect("a", "r", LinkProfile(delay=0.005))
    net.connect("r", "b", far)
    net.route("a", via="r")
    net.route("b", via="r")
    return TwoHosts(net, a, b, sink_a, sink_b, Stack(a.runtime, names={"b": B_ADDR}), Stack(b.runtime), far)


def one_way_transfer(net: Network, sender: Stack, receiver: Stack, dst: str, payload: bytes,
                     port: int = 9) -> bytes:
    """sender sends payload to receiver's server at dst:port and closes; what the server read."""

    async def main() -> bytes:
        got: list[bytes] = []
        done = asyncio.Event()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            got.append(await reader.read())
            writer.close()
            done.set()

        server = await receiver.start_server(serve, port=port)
        _reader, writer = await sender.open_connection(dst, port)
        writer.write(payload)
        writer.write_eof()
        await writer.drain()
        await done.wait()
        writer.close()
        server.close()
        return got[0]

    return net.run(main(), timeout=600)
