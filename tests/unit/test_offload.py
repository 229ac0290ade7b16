"""Offload mode (virtio-net headers, TSO super-segments, checksums left to the device), without
root: on the simulated network, which cuts super-segments as the kernel would (stack.sim.network),
and with frames handed from one offload host to another unchanged, as a GRO-capable TUN would."""

from __future__ import annotations

import io
import itertools
import random
import struct

import pytest

from stack.checksum import internet_checksum
from stack.config import TcpConfig
from stack.host import Host
from stack.sim.link import LinkProfile
from stack.sim.network import Network
from stack.socket import Stack
from stack.trace import CongestionEvent, MemorySink, PacketEvent, PcapSink, SegmentEvent, Trace
from stack.wire import vnet
from stack.wire.ipv4 import PROTO_TCP, IPv4Packet, build_ipv4, pack_addr, parse_ipv4
from stack.wire.tcp import ACK, PSH, TcpSegment, build_tcp, parse_tcp
from tests.two_hosts import one_way_transfer

A, B = "10.0.0.1", "10.0.0.2"
PORT = 9

LOSSY = LinkProfile(delay=0.002, loss=0.02, reorder=0.02)


@pytest.mark.parametrize("profile", [LinkProfile(delay=0.001), LOSSY])
def test_sim_cuts_super_segments_and_data_arrives_intact(profile: LinkProfile) -> None:
    sink_a, sink_b = MemorySink(), MemorySink()
    payload = random.Random(1).randbytes(600_000)
    with Network(5) as net:
        a = net.add_host("a", A, trace=Trace([sink_a]), offload=True)
        b = net.add_host("b", B, trace=Trace([sink_b]))
        net.connect("a", "b", profile)
        wire: list[bytes] = []
        net.taps.append(lambda _t, src, _dst, packet: wire.append(packet) if src == "a" else None)
        got = one_way_transfer(net, Stack(a.runtime), Stack(b.runtime), B, payload)
    assert got == payload
    supers = [e for e in sink_a.segments("out") if e.gso]
    assert supers, "no super-segment was sent"
    assert all(e.len > e.gso and e.gso == 1448 for e in supers)
    # What the device put on the link: every packet within the MTU with correct checksums, which
    # the per-segment receiver verified (it dropped nothing as a bad checksum).
    assert max(len(p) for p in wire) <= 1500
    assert not sink_b.drops("tcp_checksum")
    # B saw each super-segment as the train of segments it stands for.
    assert max(e.len for e in sink_b.segments("in")) == 1448


def test_super_segment_cut_like_the_kernel() -> None:
    """One super-segment: the reference cut gives valid segments, PSH on the last only."""
    host = Host(A, offload=True)
    seg = TcpSegment(1000, 80, 5000, 7, ACK | PSH, 512, bytes(range(256)) * 20)
    host._transmit_segment(B, seg, "x", 0.0, gso=1000)
    (frame,) = host.take_packets()
    header = vnet.parse_vnet(frame)
    assert (header.flags, header.gso_type, header.gso_size) == (vnet.F_NEEDS_CSUM, vnet.GSO_TCPV4, 1000)
    assert (header.hdr_len, header.csum_start, header.csum_offset) == (40, 20, 16)
    pieces = [parse_ipv4(p) for p in vnet.segment(header, frame[vnet.HEADER_LEN :])]
    segs = [parse_tcp(p.payload, pack_addr(A), pack_addr(B)) for p in pieces]  # checksums verified
    assert [len(s.payload) for s in segs] == [1000] * 5 + [120]
    assert [s.seq for s in segs] == [5000 + 1000 * i for i in range(6)]
    assert [bool(s.flags & PSH) for s in segs] == [False] * 5 + [True]
    assert b"".join(s.payload for s in segs) == seg.payload
    assert len({p.ident for p in pieces}) == 6


def _frame(packet: bytes, flags: int = 0) -> bytes:
    return vnet.HEADER.pack(flags, vnet.GSO_NONE, 0, 0, 20 if flags else 0, 16 if flags else 0) + packet


def _syn_packet(csum: int | None = None) -> bytes:
    tcp = bytearray(build_tcp(TcpSegment(4000, 80, 1, 0, 0x02, 1000), pack_addr(B), pack_addr(A)))
    if csum is not None:
        struct.pack_into("!H", tcp, 16, csum)
    return build_ipv4(IPv4Packet(B, A, PROTO_TCP, bytes(tcp)))


@pytest.mark.parametrize("flags", [vnet.F_NEEDS_CSUM, vnet.F_DATA_VALID])
def test_checksum_the_device_vouches_for_is_not_verified(flags: int) -> None:
    host = Host(A, offload=True)
    host.listen(80)
    host.receive(_frame(_syn_packet(csum=0x1234), flags), 0.0)
    assert not host.counters["tcp_checksum"]
    assert len(host.take_packets()) == 1  # the SYN-ACK


def test_plain_frame_checksum_still_verified_and_short_frame_dropped() -> None:
    host = Host(A, offload=True)
    host.listen(80)
    host.receive(_frame(_syn_packet(csum=0x1234)), 0.0)
    host.receive(b"\x00\x01", 0.0)
    assert host.counters["tcp_checksum"] == 1 and host.counters["vnet_short"] == 1
    assert host.take_packets() == []


def _transfer(ha: Host, hb: Host, data: bytes, dst: str = B) -> tuple[bytes, list[bytes]]:
    """Send data from ha to hb's port 80 at `dst`, frames handed over unchanged (GSO in, GRO out,
    as between two TUN devices with the same offloads); the bytes hb received and ha's frames."""
    hb.listen(80)
    now = 0.0
    conn = ha.connect(dst, 80, now)
    sent_frames: list[bytes] = []

    def shuttle() -> int:
        moved = 0
        for src, dst in ((ha, hb), (hb, ha)):
            for frame in src.take_packets():
                if src is ha:
                    sent_frames.append(frame)
                dst.receive(frame, now)
                moved += 1
        return moved

    while shuttle():
        pass
    sent = 0
    listener = hb.listeners[80]
    for _ in range(2000):  # 2 s of a 1 ms clock, far more than needed
        if sent == len(data) and not conn.flight_size:
            break
        if sent < len(data):
            sent += conn.send(data[sent:], now)
        now += 0.001
        ha.on_timer(now)
        hb.on_timer(now)
        while shuttle():
            pass
    (server,) = listener.accept_queue
    return bytes(server.rcvq), sent_frames


def test_two_offload_hosts_pass_super_segments_whole() -> None:
    """The receiver takes a super-segment as one segment, its ACKs count the segments it stands
    for, and the bytes arrive in order."""
    sink_a, sink_b = MemorySink(), MemorySink()
    ha, hb = Host(A, offload=True, trace=Trace([sink_a])), Host(B, offload=True, trace=Trace([sink_b]))
    data = random.Random(2).randbytes(200_000)  # within the receive buffer: nobody reads
    received, _ = _transfer(ha, hb, data)
    assert received == data
    supers = [e for e in sink_b.segments("in") if e.gso]
    assert supers and max(e.len for e in supers) > 20 * 1448
    # Far fewer packets than segments: the point of offloads.
    assert len(sink_b.segments("in")) < len(data) // 1448 // 4
    # Slow start counts every segment an ACK of a super-segment covers (RFC 3465's L = 2 would
    # allow two): some ACK grew cwnd by more than two segments at once.
    cwnds = [e.cwnd for e in sink_a.of(CongestionEvent)]
    grown = [b - a for a, b in itertools.pairwise(cwnds)]
    assert max(grown) > 2 * 1448


@pytest.mark.parametrize("family", [4, 6])
def test_checksum_offload_alone_keeps_every_segment_wire_sized(family: int) -> None:
    """tso=False: segment by segment, each leaving with a partial checksum for the kernel to
    complete, and taken in with the checksum unverified when the header says NEEDS_CSUM."""
    sink_b = MemorySink()
    ha = Host(A, address6="fd00::1", offload=True, tso=False)
    hb = Host(B, address6="fd00::2", offload=True, tso=False, trace=Trace([sink_b]))
    data = random.Random(3).randbytes(200_000)
    received, frames = _transfer(ha, hb, data, B if family == 4 else "fd00::2")
    assert received == data
    headers = [vnet.parse_vnet(frame) for frame in frames]
    assert {h.gso_type for h in headers} == {vnet.GSO_NONE}
    assert all(h.flags & vnet.F_NEEDS_CSUM for h in headers)  # every TCP segment, SYN included
    lengths = [e.len for e in sink_b.segments("in")]
    assert max(lengths) == (1448 if family == 4 else 1428) and sum(lengths) >= len(data)
    assert not any(e.gso for e in sink_b.segments("in"))


def test_pcap_shows_super_segment_with_complete_checksum() -> None:
    out = io.BytesIO()
    sink = MemorySink()
    host = Host(A, offload=True, trace=Trace([sink, PcapSink(out)]))
    host._transmit_segment(B, TcpSegment(1000, 80, 1, 1, ACK, 512, bytes(5000)), "x", 0.0, gso=1000)
    (event,) = sink.of(PacketEvent)
    assert event.gso == 1000 and event.csum_partial and event.to_dict()["gso"] == 1000
    (seg_event,) = sink.of(SegmentEvent)
    assert seg_event.to_dict()["gso"] == 1000
    data = out.getvalue()[24 + 16 :]
    ip = parse_ipv4(data)
    assert len(ip.payload) == 5020
    assert internet_checksum(ip.payload, _pseudo(ip.payload)) == 0


def _pseudo(tcp: bytes) -> int:
    from stack.checksum import pseudo_header_sum

    return pseudo_header_sum(pack_addr(A), pack_addr(B), PROTO_TCP, len(tcp))


def test_per_segment_trace_lines_carry_no_gso_field() -> None:
    event = SegmentEvent(0.0, "out", "c", ".", 1, 1, 10, 0, "")
    assert "gso" not in event.to_dict()
    assert "gso" not in PacketEvent(0.0, "out", b"x").to_dict()


def test_offload_hosts_in_the_sim_are_explicit() -> None:
    """A host that does not ask for offloads gets plain IPv4 packets (the default)."""
    with Network(1) as net:
        node = net.add_host("a", A, config=TcpConfig())
        assert node.offload is False and node.host.offload is False


def test_partial_checksum_of_another_protocol_is_not_rewritten_in_the_pcap() -> None:
    """Only TCP's checksum field is known to the pcap sink: a UDP packet read with NEEDS_CSUM
    is recorded exactly as it came (and dropped by the host, which speaks no UDP)."""
    out = io.BytesIO()
    host = Host(A, offload=True, trace=Trace([PcapSink(out)]))
    udp = build_ipv4(IPv4Packet(B, A, 17, bytes(range(40))))
    host.receive(_frame(udp, vnet.F_NEEDS_CSUM), 0.0)
    assert out.getvalue()[24 + 16 :] == udp
    assert host.counters["ip_protocol"] == 1


def test_super_segments_carry_the_connections_ttl_and_tos() -> None:
    """IP_TTL and IP_TOS reach every segment the device cuts from a super-segment."""
    host = Host(A, offload=True)
    seg = TcpSegment(1000, 80, 5000, 7, ACK, 512, bytes(2500))
    host._transmit_segment(B, seg, "x", 0.0, gso=1000, config=TcpConfig(ip_ttl=4, ip_tos=0x20))
    (frame,) = host.take_packets()
    pieces = [parse_ipv4(p) for p in vnet.segment(vnet.parse_vnet(frame), frame[vnet.HEADER_LEN :])]
    assert [(p.ttl, p.tos) for p in pieces] == [(4, 0x20)] * 3
