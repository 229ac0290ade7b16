"""Segment injection: one real Host, fed segments directly by the test that plays its peers, on a
clock the test moves; what the host sends is parsed back. No network, no event loop: a test sees
exactly the segments one input caused.

tests/tcp/harness.py (`Peer`, one segment per step, the state builders; several peers may share
a host) and tests/reliability/helpers.py (`Rig`, timed sequences) are built on these functions;
the caller keeps the clock. The drill
runner feeds its Host through a runtime on a virtual-time loop instead, and shares the packet
codec (stack.wire.segment) with this module.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from stack.config import TcpConfig
from stack.host import Host
from stack.inet import pack
from stack.trace import MemorySink, Trace
from stack.wire.ipv4 import PROTO_TCP
from stack.wire.segment import ip_fields, tcp_packet
from stack.wire.tcp import TcpSegment, parse_tcp


def new_host(address: str, config: TcpConfig, *, isn_key: bytes,
             address6: str | None = None) -> tuple[Host, MemorySink]:
    """A Host under test (seeded: the same run every time) and the sink of its trace."""
    sink = MemorySink()
    host = Host(address, config=config, trace=Trace([sink]), rng=random.Random(7), isn_key=isn_key,
                address6=address6)
    return host, sink


def deliver(host: Host, src: str, seg: TcpSegment, now: float) -> None:
    """seg arrives from src, to the host's address of src's family, at `now`."""
    host.receive(tcp_packet(src, host.local_address(src), seg), now)


def take_segments(host: Host) -> list[tuple[str, TcpSegment]]:
    """(destination, segment) for everything the host sent since the last look; all of it must
    be TCP from the host's own address."""
    out = []
    for raw in host.take_packets():
        src, dst, protocol, data = ip_fields(raw)
        assert protocol == PROTO_TCP and src == host.local_address(dst)
        out.append((dst, parse_tcp(data, pack(src), pack(dst))))
    return out


def run_timers(host: Host, now: float, until: float, *, slack: float = 0.0,
               fired: Callable[[float], None] | None = None) -> float:
    """Fire, in order, every timer of the host due by `until` (+ slack, for times summed in
    floats), each at its deadline (at `now` if that is already past), calling fired(time) after
    each; return the new clock: `until`, or the last firing if that is later."""
    while True:
        d = host.deadline()
        if d is None or d > until + slack:
            break
        now = max(now, d)
        host.on_timer(now)
        if fired is not None:
            fired(now)
    return max(now, until)


def fire_next(host: Host) -> float:
    """Jump to the host's next deadline and fire it; return that time."""
    d = host.deadline()
    assert d is not None, "the host has no timer running"
    host.on_timer(d)
    return d
