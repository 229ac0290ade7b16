"""Blind in-window attacks (RFC 5961 sections 3-5) on the simulated network, with far-future
timestamps: the attacker knows the 4-tuple and guesses sequence numbers inside the window, and
gains nothing but challenge ACKs. TS.Recent is never moved by such a segment (RFC 7323 4.3), so
PAWS never turns on the genuine traffic, and neither end is made to ACK the other forever."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from stack import seq
from stack.config import TcpConfig
from stack.sim import LinkProfile, Network
from stack.socket import Stack
from stack.trace import Event, MemorySink, SegmentEvent, StateChange, TimerEvent, Trace
from stack.wire.ipv4 import PROTO_TCP, IPv4Packet, build_ipv4, pack_addr, parse_ipv4
from stack.wire.tcp import (
    ACK,
    PSH,
    RST,
    SYN,
    TcpOption,
    TcpSegment,
    Timestamps,
    build_tcp,
    flags_str,
    parse_tcp,
)

from .helpers import A_ADDR, B_ADDR, PORT, payload

FUTURE = 1 << 30  # added to the genuine TSval: far in the future, yet "newer" modulo 2**32
KINDS = ("rst", "rst_data", "syn", "data_old_ack", "data_unsent_ack")


@dataclass
class Seen:
    """The last segment a tap saw from one end: what a lucky blind attacker would guess."""

    seq: int = 0
    ack: int = 0
    tsval: int | None = None
    src_port: int = 0
    dst_port: int = 0


class KeepSink(MemorySink):
    """Keeps what the assertions read: state changes, drops, challenge ACKs, segments out."""

    def write(self, event: Event) -> None:
        if isinstance(event, StateChange | TimerEvent) or (
            isinstance(event, SegmentEvent) and event.direction == "out"
        ) or type(event).__name__ == "Drop":
            self.events.append(event)


def forged(kind: str, src: str, dst: str, seen: Seen) -> bytes:
    """A segment from src to dst that dst finds acceptable (seen: src's last segment, so seen.seq
    is dst's RCV.NXT as a lucky guess has it). All but "rst" also cover Last.ACK.sent, the
    condition under which an accepted segment would set TS.Recent (RFC 7323 4.3)."""
    opts: tuple[TcpOption, ...] = ()
    if seen.tsval is not None:
        opts = (Timestamps(seq.add(seen.tsval, FUTURE), 0),)
    ports = (seen.src_port, seen.dst_port)
    evil = b"EVIL" * 25
    if kind == "rst":  # in the window, not at RCV.NXT: RFC 5961 3.2 challenge
        seg = TcpSegment(*ports, seq.add(seen.seq, 700), 0, RST, 0, b"", opts)
    elif kind == "rst_data":  # a RST whose text overlaps RCV.NXT: acceptable, inexact
        seg = TcpSegment(*ports, seq.add(seen.seq, -50), 0, RST, 0, evil, opts)
    elif kind == "syn":  # RFC 5961 4.2: a SYN at RCV.NXT
        seg = TcpSegment(*ports, seen.seq, 0, SYN, 1000, b"", opts)
    else:  # RFC 5961 5.2: text overlapping RCV.NXT whose ACK is too old or acknowledges unsent data
        ack = seq.add(seen.ack, -(1 << 30) if kind == "data_old_ack" else 1 << 20)
        seg = TcpSegment(*ports, seq.add(seen.seq, -50), ack, ACK | PSH, 1000, evil, opts)
    return build_ipv4(IPv4Packet(src, dst, PROTO_TCP, build_tcp(seg, pack_addr(src), pack_addr(dst))))


@dataclass
class Run:
    got: bytes
    done: float
    sink_a: KeepSink
    sink_b: KeepSink
    forged: int


def transfer(seed: int, config: TcpConfig, attack: bool, size: int = 1_500_000) -> Run:
    """a sends `size` octets to b and b answers 100,000, both over 10 ms each way; with
    `attack`, every 2 ms one forged segment of each kind goes to each end."""
    net = Network(seed)
    sink_a, sink_b = KeepSink(), KeepSink()
    a = net.add_host("a", A_ADDR, config=config, trace=Trace([sink_a]))
    b = net.add_host("b", B_ADDR, config=config, trace=Trace([sink_b]))
    net.add_router("x")
    net.connect("a", "b", LinkProfile(delay=0.01))
    net.connect("x", "a", LinkProfile(delay=0.001))
    net.connect("x", "b", LinkProfile(delay=0.001))
    seen = {"a": Seen(), "b": Seen()}

    def tap(_t: float, src: str, dst: str, packet: bytes) -> None:
        if src == "x":
            return
        ip = parse_ipv4(packet)
        tcp = parse_tcp(ip.payload, pack_addr(ip.src), pack_addr(ip.dst))
        ts = tcp.timestamps
        seen[src] = Seen(seq.add(tcp.seq, tcp.seg_len), tcp.ack, ts.tsval if ts else None,
                         tcp.src_port, tcp.dst_port)

    net.taps.append(tap)
    data_ab, data_ba = payload(seed, size), payload(seed + 1, 100_000)
    got = bytearray()
    count = 0
    finished = False

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(data_ba)
        while chunk := await reader.read(1 << 16):
            got.extend(chunk)
        writer.close()

    async def attacker() -> None:
        nonlocal count
        await asyncio.sleep(0.1)
        while not finished:
            for kind in KINDS:
                if seen["a"].src_port:
                    net.inject("x", forged(kind, A_ADDR, B_ADDR, seen["a"]))  # "from a" to b
                    net.inject("x", forged(kind, B_ADDR, A_ADDR, seen["b"]))  # "from b" to a
                    count += 2
            await asyncio.sleep(0.002)

    async def client() -> float:
        nonlocal finished
        reader, writer = await Stack(a.runtime).open_connection(B_ADDR, PORT)
        writer.write(data_ab)
        writer.write_eof()
        back = await reader.read()
        assert back == data_ba
        writer.close()
        finished = True
        return net.now

    async def main() -> float:
        await Stack(b.runtime).start_server(serve, port=PORT)
        tasks = [client()] + ([attacker()] if attack else [])
        return (await asyncio.gather(*tasks))[0]

    done = net.run(main(), timeout=120)
    net.run_for(5)  # let both ends finish closing (TIME_WAIT is 2 MSL: not waited for)
    return Run(bytes(got), done, sink_a, sink_b, count)


def describe(packet: bytes) -> str:
    ip = parse_ipv4(packet)
    tcp = parse_tcp(ip.payload, pack_addr(ip.src), pack_addr(ip.dst))
    return f"{flags_str(tcp.flags)} seq={tcp.seq} ack={tcp.ack} len={len(tcp.payload)}"


def challenge_acks(sink: MemorySink) -> int:
    return len([e for e in sink.of(TimerEvent) if e.timer == "challenge_ack"])


@pytest.mark.parametrize("timestamps", [True, False], ids=["ts", "no-ts"])
def test_blind_injection_on_a_busy_connection_changes_nothing(timestamps: bool) -> None:
    config = TcpConfig(timestamps=timestamps, msl=0.5)
    base = transfer(31, config, attack=False)
    hit = transfer(31, config, attack=True)
    assert hit.forged > 200
    assert hit.got == base.got and len(hit.got) == 1_500_000  # no "EVIL" octet got in
    for sink in (hit.sink_a, hit.sink_b):
        # Neither end was reset, neither stalled behind a far-future TS.Recent.
        assert [e.new for e in sink.of(StateChange)] == [e.new for e in (base.sink_a if sink is hit.sink_a
                                                                         else base.sink_b).of(StateChange)]
        assert sink.drops("paws") == []
        # Challenge ACKs: at most one per 500 ms per connection, whatever was injected.
        n = challenge_acks(sink)
        assert 1 <= n <= 2 * hit.done + 2
    # No stall: the transfer takes as long as without the attacker (a few RTTs of slack for
    # what challenge ACKs may do to the sender's duplicate-ACK count).
    assert hit.done <= base.done + 0.1, (hit.done, base.done)
    # No ACK storm, no amplification: each end sent at most one segment more than in the
    # baseline for each forged one it got (challenge ACKs, and the duplicate ACK RFC 9293 asks
    # for out-of-window data, which Linux does not rate limit either).
    for sink, bsink in ((hit.sink_a, base.sink_a), (hit.sink_b, base.sink_b)):
        extra = len(sink.segments("out")) - len(bsink.segments("out"))
        assert extra <= hit.forged // 2, extra


def test_after_injection_an_idle_connection_stays_quiet() -> None:
    """The stall and ACK storm of the old TS.Recent rule: after forged in-window segments with
    far-future TSvals, each end found the other's ACKs unacceptable (PAWS) and answered them."""
    net = Network(41)
    sinks = {"a": KeepSink(), "b": KeepSink()}
    a = net.add_host("a", A_ADDR, trace=Trace([sinks["a"]]))
    b = net.add_host("b", B_ADDR, trace=Trace([sinks["b"]]))
    net.add_router("x")
    net.connect("a", "b", LinkProfile(delay=0.01))
    net.connect("x", "b", LinkProfile(delay=0.001))
    seen = Seen()

    def tap(_t: float, src: str, dst: str, packet: bytes) -> None:
        nonlocal seen
        if src == "a":
            ip = parse_ipv4(packet)
            tcp = parse_tcp(ip.payload, pack_addr(ip.src), pack_addr(ip.dst))
            ts = tcp.timestamps
            seen = Seen(seq.add(tcp.seq, tcp.seg_len), tcp.ack, ts.tsval if ts else None,
                        tcp.src_port, tcp.dst_port)

    net.taps.append(tap)
    wire: list[tuple[float, str, str, str]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(1000):
            writer.write(chunk)

    async def main() -> bytes:
        await Stack(b.runtime).start_server(serve, port=PORT)
        reader, writer = await Stack(a.runtime).open_connection(B_ADDR, PORT)
        writer.write(b"before")
        assert await reader.readexactly(6) == b"before"
        await asyncio.sleep(1.0)  # every ACK and timer of "before" is done with
        tap_on = len(net.taps)
        net.taps.append(lambda t, s, d, p: wire.append((t, s, d, describe(p))))
        for kind in KINDS:
            net.inject("x", forged(kind, A_ADDR, B_ADDR, seen))
        await asyncio.sleep(10.0)
        del net.taps[tap_on]
        writer.write(b"after")
        return await reader.readexactly(5)

    assert net.run(main(), timeout=60) == b"after"  # the connection still works both ways
    # Ten idle seconds: the four forged segments and one challenge ACK (the per-connection
    # limit held back the other three); before the fix, an ACK storm between a and b.
    assert [w[1:3] for w in wire] == [("x", "b")] * len(KINDS) + [("b", "a")], wire
    assert sinks["b"].drops("paws") == [] and sinks["a"].drops("paws") == []
    assert challenge_acks(sinks["b"]) == 1
