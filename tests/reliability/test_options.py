"""Timestamps (RTT samples, PAWS), urgent data, Path MTU discovery, and the socket-level errors
and options of the timers (TimeoutError from SYN, data and keepalive limits; TCP_NODELAY)."""

from __future__ import annotations

import asyncio
import statistics

from stack.config import TcpConfig
from stack.sim import LinkProfile
from stack.socket import (
    IPPROTO_TCP,
    MSG_OOB,
    MSG_PEEK,
    SO_KEEPALIVE,
    SOL_SOCKET,
    TCP_KEEPCNT,
    TCP_KEEPIDLE,
    TCP_KEEPINTVL,
    TCP_NODELAY,
    Socket,
)
from stack.tcp.state import State
from stack.trace import RttEvent, StateChange, TimerEvent
from stack.wire.ipv4 import PROTO_TCP, pack_addr, parse_ipv4
from stack.wire.tcp import Flags, Timestamps, parse_tcp
from tests.two_hosts import B_ADDR, TwoHosts, routed_two_hosts, two_hosts

from .helpers import PORT, Rig, digest, payload, run_transfer

# ---------------------------------------------------------------- timestamps


def test_timestamp_rtt_samples_match_the_link_rtt() -> None:
    pair = two_hosts(21, LinkProfile(delay=0.03, rate=1e9), config=TcpConfig(msl=0.5))
    run_transfer(pair, 600_000, 0, seed=21)
    samples = [e.sample for e in pair.sink_a.of(RttEvent)]
    med = statistics.median(samples)
    print(f"\nRTT samples: {len(samples)}, median {med * 1000:.1f} ms, min {min(samples) * 1000:.1f} ms "
          f"(link RTT 60 ms)")
    # 1 ms timestamp clock; serialisation at 1 Gbit/s adds 12 us per segment.
    assert len(samples) > 100
    assert min(samples) >= 0.059 and 0.059 <= med <= 0.062


def test_paws_drops_a_segment_with_an_old_timestamp() -> None:
    rig = Rig(TcpConfig(sack=False))
    conn = rig.open(mss=1000, ts=True)
    assert conn.ts_ok

    def ts(val: int) -> tuple[Timestamps]:
        return (Timestamps(val, 0),)

    rig.inject(rig.seg(conn, payload=b"new", options=ts(100)), at=1.0)
    nxt = conn.rcv_nxt
    out = rig.inject(rig.seg(conn, payload=b"old", options=ts(50)), at=1.1)  # in window, older TSval
    assert [d.reason for d in rig.sink.drops("paws")] == ["paws"]
    assert conn.rcv_nxt == nxt and conn.recv(100, rig.now) == b"new"
    assert [o.seg.ack for o in out] == [nxt]  # answered with an ACK (RFC 7323 5.3)
    rig.inject(rig.seg(conn, payload=b"next", options=ts(101)), at=1.2)
    assert conn.recv(100, rig.now) == b"next"


# ---------------------------------------------------------------- urgent data


def test_msg_oob_sets_urg_and_the_pointer_after_the_urgent_data_delivered_inline() -> None:
    pair = two_hosts(22, LinkProfile(delay=0.01), config=TcpConfig(msl=0.5))
    seen: list[tuple[int, int, int]] = []  # (flags, urgent pointer, payload length) a -> b

    def tap(_t: float, src: str, _dst: str, packet: bytes) -> None:
        ip = parse_ipv4(packet)
        if src == "a" and ip.protocol == PROTO_TCP:
            seg = parse_tcp(ip.payload, pack_addr(ip.src), pack_addr(ip.dst))
            if seg.payload:
                seen.append((seg.flags, seg.urgent, len(seg.payload)))

    pair.net.taps.append(tap)

    async def main() -> tuple[bytes, int | None]:
        listener = pair.stack_b.socket()
        listener.bind(("", PORT))
        listener.listen()
        client = pair.stack_a.socket()
        client.setsockopt(IPPROTO_TCP, TCP_NODELAY, 1)
        await client.aconnect((B_ADDR, PORT))
        server, _ = await listener.aaccept()
        await client.asend(b"normal,")
        await client.asend(b"URGENT", MSG_OOB)
        await asyncio.sleep(0.1)
        assert server.conn is not None
        mark = server.conn.urgent_mark
        got = b""
        while len(got) < 13:
            got += await server.arecv(100)
        return got, mark

    got, mark = pair.net.run(main(), timeout=10)
    assert got == b"normal,URGENT"  # inline, in order
    assert mark == 12  # octets to read before the last urgent one
    assert seen == [(Flags.ACK | Flags.PSH, 0, 7), (Flags.ACK | Flags.PSH | Flags.URG, 6, 6)]
    # RFC 6093: SEG.SEQ + urgent pointer = the octet after the urgent data (here the end of it).


# ---------------------------------------------------------------- Path MTU


def test_pmtu_frag_needed_lowers_the_mss_and_the_data_arrives() -> None:
    pair = routed_two_hosts(23, mtu=1280, config=TcpConfig(msl=0.5), ipv6=False)
    net, sink_a = pair.net, pair.sink_a
    res = run_transfer(pair, 300_000, 200_000, seed=23)
    assert res.got_ab == res.sent_ab and res.got_ba == res.sent_ba
    pmtu = [e for e in sink_a.of(TimerEvent) if e.timer == "pmtu"]
    assert [e.action for e in pmtu] == ["mtu 1280 mss 1228"]  # 1280 - 40 - 12 (timestamps)
    assert net.stats["frag_needed"] >= 1
    big = [s for s in sink_a.segments("out") if s.time > pmtu[0].time and s.len > 1228]
    assert big == []


# ---------------------------------------------------------------- errors and options via sockets


def _dead_after_connect(pair: TwoHosts) -> None:
    pair.net.duplex("a", "b").set_profile(LinkProfile(delay=0.01, loss=1.0))


def test_connect_to_a_black_hole_raises_timeout_error_after_syn_retries() -> None:
    pair = two_hosts(24, LinkProfile(delay=0.01, loss=1.0), config=TcpConfig(syn_retries=6))

    async def main() -> float:
        s = pair.stack_a.socket()
        try:
            await s.aconnect((B_ADDR, PORT))
        except TimeoutError:
            return pair.net.now
        raise AssertionError("connected through a black hole")

    assert pair.net.run(main(), timeout=1000) == 127.0  # 1+2+4+8+16+32+64


def _connected(pair: TwoHosts, sock_setup: list[tuple[int, int, int]] | None = None
               ) -> tuple[Socket, Socket]:
    async def main() -> tuple[Socket, Socket]:
        listener = pair.stack_b.socket()
        listener.bind(("", PORT))
        listener.listen()
        client = pair.stack_a.socket()
        for level, opt, val in sock_setup or []:
            client.setsockopt(level, opt, val)
        await client.aconnect((B_ADDR, PORT))
        server, _ = await listener.aaccept()
        return client, server

    return pair.net.run(main(), timeout=10)


def test_data_retries_exhausted_raise_timeout_error_for_the_app() -> None:
    pair = two_hosts(25, LinkProfile(delay=0.01), config=TcpConfig(data_retries=4, timestamps=False))
    client, _server = _connected(pair)
    _dead_after_connect(pair)

    async def main() -> float:
        await client.asend(b"into the void")
        start = pair.net.now
        try:
            await client.arecv(100)
        except TimeoutError:
            return pair.net.now - start
        raise AssertionError("no error")

    elapsed = pair.net.run(main(), timeout=1000)
    assert client.conn is not None
    rto = 1.0  # the handshake's 20 ms RTT gives an RTO at the 1 s minimum (RFC 6298 2.4)
    assert abs(elapsed - rto * (1 + 2 + 4 + 8 + 16)) < 1e-6


def test_keepalive_socket_options_dead_peer_timeout_error() -> None:
    pair = two_hosts(26, LinkProfile(delay=0.01))
    opts = [(SOL_SOCKET, SO_KEEPALIVE, 1), (IPPROTO_TCP, TCP_KEEPIDLE, 10),
            (IPPROTO_TCP, TCP_KEEPINTVL, 2), (IPPROTO_TCP, TCP_KEEPCNT, 3)]
    client, _server = _connected(pair, opts)
    assert client.conn is not None
    last = client.conn.last_recv_time
    _dead_after_connect(pair)

    async def main() -> float:
        try:
            await client.arecv(100)
        except TimeoutError:
            return pair.net.now
        raise AssertionError("no error")

    assert abs(pair.net.run(main(), timeout=1000) - (last + 10 + 3 * 2)) < 1e-6
    assert client.conn.stats.keepalive_probes == 3


def test_keepalive_live_peer_connection_stays() -> None:
    pair = two_hosts(27, LinkProfile(delay=0.01))
    opts = [(SOL_SOCKET, SO_KEEPALIVE, 1), (IPPROTO_TCP, TCP_KEEPIDLE, 10),
            (IPPROTO_TCP, TCP_KEEPINTVL, 2), (IPPROTO_TCP, TCP_KEEPCNT, 3)]
    client, _server = _connected(pair, opts)
    pair.net.run_for(100.0)
    assert client.conn is not None and client.conn.state is State.ESTABLISHED
    assert client.conn.stats.keepalive_probes == 9  # one per idle period, each answered


def test_keepalive_options_read_back_with_getsockopt() -> None:
    pair = two_hosts(29, LinkProfile(delay=0.01))
    opts = [(IPPROTO_TCP, TCP_KEEPIDLE, 10), (IPPROTO_TCP, TCP_KEEPINTVL, 2), (IPPROTO_TCP, TCP_KEEPCNT, 3)]
    client, server = _connected(pair, opts)
    assert [client.getsockopt(level, opt) for level, opt, _ in opts] == [10, 2, 3]
    defaults = TcpConfig()  # the accepted socket keeps the stack's settings
    assert [server.getsockopt(level, opt) for level, opt, _ in opts] == [
        defaults.keepalive_idle, defaults.keepalive_interval, defaults.keepalive_count,
    ]  # fmt: skip


def test_recv_msg_peek_returns_the_data_and_leaves_it_queued() -> None:
    pair = two_hosts(30, LinkProfile(delay=0.01))
    client, server = _connected(pair)

    async def main() -> list[bytes]:
        await client.asend(b"peek at me")
        first = await server.arecv(4, MSG_PEEK)
        return [first, await server.arecv(100, MSG_PEEK), await server.arecv(100)]

    assert pair.net.run(main(), timeout=10) == [b"peek", b"peek at me", b"peek at me"]


def _small_writes(nodelay: bool) -> list[int]:
    pair = two_hosts(28, LinkProfile(delay=0.05))
    client, _ = _connected(pair, [(IPPROTO_TCP, TCP_NODELAY, 1)] if nodelay else [])
    conn = client.conn
    assert conn is not None
    pair.sink_a.clear()

    async def main() -> None:
        for _ in range(3):
            await client.asend(b"w" * 10)
        await asyncio.sleep(0.5)

    pair.net.run(main(), timeout=10)
    return [s.len for s in pair.sink_a.segments("out", conn.id) if s.len]


def test_nagle_by_default_and_tcp_nodelay_via_setsockopt() -> None:
    assert _small_writes(nodelay=False) == [10, 20]  # the last two wait one RTT for the ACK
    assert _small_writes(nodelay=True) == [10, 10, 10]


def test_closed_states_in_trace_after_transfer_with_small_msl() -> None:
    pair = two_hosts(29, LinkProfile(delay=0.01), config=TcpConfig(msl=0.25))
    res = run_transfer(pair, 10_000, 10_000, seed=29)
    assert digest(res.got_ab) == digest(payload(29 * 2 + 1, 10_000))
    pair.net.run_for(1.0)
    for sink in (pair.sink_a, pair.sink_b):
        last = [e for e in sink.of(StateChange)][-1]
        assert last.new == "CLOSED"
    tw = [e for e in pair.sink_a.of(StateChange) + pair.sink_b.of(StateChange) if e.old == "TIME_WAIT"]
    assert tw and all(e.cause == "timer:time_wait" for e in tw)
