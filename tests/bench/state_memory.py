"""Memory a host holds per connection, by state, measured with tracemalloc (no root, no network).

One Host gets `n` connections from distinct peer ports, driven by hand-made segments into one
state: half-open (SYN_RECEIVED, cookies off), established and idle (accepted by the application),
TIME_WAIT (the host closed first and the application let go), and a SYN answered with a cookie
(nothing should stay). The figure is the growth of traced memory divided by `n`: the host's
tables, the connection objects and everything they own; no trace sink is attached.

    python -m tests.bench.state_memory [--n 2000]
"""

from __future__ import annotations

import argparse
import json
import random
import tracemalloc
from collections.abc import Callable
from typing import Any

from stack.config import TcpConfig
from stack.host import Host
from stack.tcp.listener import Listener
from stack.wire.ipv4 import PROTO_TCP, IPv4Packet, build_ipv4, pack_addr, parse_ipv4
from stack.wire.tcp import ACK, FIN, SYN, Mss, TcpSegment, build_tcp, parse_tcp

HOST, PEER = "10.0.0.2", "10.0.0.1"
PORT = 80
STATES = ("half_open", "established_idle", "time_wait", "syn_cookie")


def _packet(seg: TcpSegment) -> bytes:
    tcp = build_tcp(seg, pack_addr(PEER), pack_addr(HOST))
    return build_ipv4(IPv4Packet(PEER, HOST, PROTO_TCP, tcp))


def _replies(host: Host) -> dict[int, TcpSegment]:
    """The host's last segment to each peer port."""
    out = {}
    for raw in host.take_packets():
        ip = parse_ipv4(raw)
        seg = parse_tcp(ip.payload, pack_addr(ip.src), pack_addr(ip.dst))
        out[seg.dst_port] = seg
    return out


def _drive(state: str, host: Host, listener: Listener, n: int) -> None:
    ports = range(10_000, 10_000 + n)
    try:
        _handshakes(state, host, listener, ports)
    finally:
        host.take_app_events()  # what a driver's pump does after every input: take the
        host.deadline()  # events, re-arm the timer (which drops timer entries gone stale)


def _handshakes(state: str, host: Host, listener: Listener, ports: range) -> None:
    for p in ports:
        host.receive(_packet(TcpSegment(p, PORT, 1000, 0, SYN, 65535, options=(Mss(1460),))), 0.0)
    if state in ("half_open", "syn_cookie"):
        host.take_packets()
        return
    synacks = _replies(host)
    for p in ports:
        host.receive(_packet(TcpSegment(p, PORT, 1001, synacks[p].seq + 1, ACK, 65535)), 0.0)
    conns = [listener.accept() for _ in ports]
    if state == "established_idle":
        _KEEP.extend(conns)  # the application holds its sockets
        return
    for conn in conns:
        assert conn is not None
        conn.close(0.1)
        host.app_call(conn)
    fins = _replies(host)
    for p in ports:
        fin_ack = fins[p].seq + 1
        host.receive(_packet(TcpSegment(p, PORT, 1001, fin_ack, FIN | ACK, 65535)), 0.2)
    host.take_packets()


_KEEP: list[Any] = []


def _host(state: str, n: int) -> tuple[Host, Listener]:
    config = TcpConfig(syncookies=2 if state == "syn_cookie" else 0, syn_backlog=n + 1)
    host = Host(HOST, config=config, rng=random.Random(1), isn_key=b"bench")
    return host, host.listen(PORT, backlog=n + 1)


def per_connection(state: str, n: int) -> dict[str, Any]:
    _drive(state, *_host(state, 50), 50)  # warm the caches (addresses, hash keys) first
    _KEEP.clear()
    host, listener = _host(state, n)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        _drive(state, host, listener, n)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    held = len(host.connections)
    _KEEP.clear()
    return {"n": n, "bytes_per_connection": grown / n, "connections_held": held}


def measure(n: int = 2000) -> dict[str, Any]:
    return {state: per_connection(state, n) for state in STATES}


def rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    labels: dict[str, str] = {
        "half_open": "half-open (SYN_RECEIVED)",
        "established_idle": "established, idle",
        "time_wait": "TIME_WAIT (orphaned)",
        "syn_cookie": "SYN answered with a cookie",
    }
    fmt: Callable[[dict[str, Any]], str] = lambda r: f"{r['bytes_per_connection']:,.0f} B"  # noqa: E731
    return [(labels[s], fmt(result[s])) for s in STATES if s in result]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    result = measure(args.n)
    for label, value in rows(result):
        print(f"{label:32} {value:>10} per connection")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
