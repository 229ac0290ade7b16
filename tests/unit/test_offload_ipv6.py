"""IPv6 on a host in offload mode (TSO6, stack.tundev): TCP leaves as frames with a partial
checksum over RFC 8200 8.1's pseudo-header, trains of full segments as one GSO_TCPV6
super-segment; the simulated device cuts them into wire segments with complete checksums, the
pcap completes them; a partial checksum the kernel hands us is trusted for IPv6 too; the
per-batch receive path takes IPv6 packets as well."""

from __future__ import annotations

import io
import random
import struct

import pytest

from stack.checksum import internet_checksum, pseudo_header_sum
from stack.config import TcpConfig
from stack.host import GSO_MAX_PAYLOAD6, Host
from stack.inet import pack
from stack.sim.link import LinkProfile
from stack.sim.network import Network
from stack.socket import Stack
from stack.trace import LINKTYPE_RAW, MemorySink, PacketEvent, PcapSink, SegmentEvent, Trace
from stack.wire import vnet
from stack.wire.ipv6 import NH_TCP, IPv6Packet, build_ipv6, parse_ipv6
from stack.wire.tcp import ACK, FIN, PSH, SYN, TcpSegment, build_tcp_header_partial, parse_tcp
from tests.two_hosts import one_way_transfer

A, B = "10.0.0.1", "10.0.0.2"
A6, B6 = "fd00::1", "fd00::2"
PORT = 9
MSS6 = 1500 - 40 - 20 - 12  # the segment size of an IPv6 connection with timestamps at MTU 1500


def _sent_frame(seg: TcpSegment, gso: int) -> tuple[vnet.VnetHeader, bytes]:
    host = Host(A, address6=A6, offload=True)
    host._transmit_segment(B6, seg, "x", 0.0, gso=gso)
    (frame,) = host.take_packets()
    return vnet.parse_vnet(frame), frame[vnet.HEADER_LEN :]


def test_ipv6_super_segment_frame_header_fields() -> None:
    seg = TcpSegment(1000, 80, 5000, 7, ACK | PSH, 512, bytes(range(256)) * 20)
    header, packet = _sent_frame(seg, gso=1000)
    assert (header.flags, header.gso_type, header.gso_size) == (vnet.F_NEEDS_CSUM, vnet.GSO_TCPV6, 1000)
    # hdr_len: IPv6 fixed header and TCP header; the checksum field is 16 octets into TCP at 40.
    assert (header.hdr_len, header.csum_start, header.csum_offset) == (60, 40, 16)
    ip = parse_ipv6(packet)
    assert (ip.src, ip.dst, ip.next_header, ip.hop_limit) == (A6, B6, NH_TCP, 64)
    assert ip.flow_label != 0 and len(ip.payload) == 20 + 5120


def test_ipv6_single_segment_frame_has_a_partial_checksum_and_no_gso() -> None:
    header, _ = _sent_frame(TcpSegment(1000, 80, 1, 1, ACK, 512, b"abc"), gso=0)
    assert (header.flags, header.gso_type, header.gso_size) == (vnet.F_NEEDS_CSUM, vnet.GSO_NONE, 0)
    assert header.hdr_len == 0
    assert (header.csum_start, header.csum_offset) == (40, 16)


@pytest.mark.parametrize("payload_len", [0, 1, 5120, 5121])  # odd lengths pad the sum (RFC 1071)
def test_ipv6_partial_checksum_is_the_pseudo_header_sum_and_completes_to_a_valid_sum(
        payload_len: int) -> None:
    payload = random.Random(payload_len).randbytes(payload_len)
    gso = 1000 if payload_len > 1000 else 0
    _, packet = _sent_frame(TcpSegment(1000, 80, 9, 1, ACK, 512, payload), gso=gso)
    tcp = packet[40:]
    # The field holds the folded pseudo-header sum (RFC 8200 8.1: addresses, the 32-bit
    # upper-layer length, next header), not its complement: the device adds the rest.
    s = pseudo_header_sum(pack(A6), pack(B6), NH_TCP, len(tcp))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    assert struct.unpack_from("!H", tcp, 16)[0] == s
    whole = parse_ipv6(vnet.complete_checksum(packet))
    parse_tcp(whole.payload, pack(A6), pack(B6))  # verifies the checksum
    assert internet_checksum(whole.payload, pseudo_header_sum(pack(A6), pack(B6), NH_TCP, len(tcp))) == 0


def test_ipv6_super_segment_cut_like_the_kernel() -> None:
    """The reference cut of a GSO_TCPV6 super-segment: valid segments with complete checksums,
    payload lengths per piece, the header otherwise copied, PSH and FIN on the last only."""
    seg = TcpSegment(1000, 80, 0xFFFFF000, 7, ACK | PSH | FIN, 512, random.Random(4).randbytes(5120))
    header, packet = _sent_frame(seg, gso=1000)
    pieces = [parse_ipv6(p) for p in vnet.segment(header, packet)]
    segs = [parse_tcp(p.payload, pack(A6), pack(B6)) for p in pieces]  # checksums verified
    assert [len(s.payload) for s in segs] == [1000] * 5 + [120]
    assert [s.seq for s in segs] == [(0xFFFFF000 + 1000 * i) & 0xFFFFFFFF for i in range(6)]  # wraps
    assert [bool(s.flags & PSH) for s in segs] == [False] * 5 + [True]
    assert [bool(s.flags & FIN) for s in segs] == [False] * 5 + [True]
    assert b"".join(s.payload for s in segs) == seg.payload
    first = parse_ipv6(packet)
    assert {(p.flow_label, p.hop_limit, p.src, p.dst) for p in pieces} == {
        (first.flow_label, first.hop_limit, A6, B6)}


def test_pcap_shows_an_ipv6_super_segment_with_complete_checksum() -> None:
    out = io.BytesIO()
    sink = MemorySink()
    host = Host(A, address6=A6, offload=True, trace=Trace([sink, PcapSink(out)]))
    host._transmit_segment(B6, TcpSegment(1000, 80, 1, 1, ACK, 512, bytes(5000)), "x", 0.0, gso=1000)
    (event,) = sink.of(PacketEvent)
    assert event.gso == 1000 and event.csum_partial and event.to_dict()["gso"] == 1000
    (seg_event,) = sink.of(SegmentEvent)
    assert seg_event.to_dict()["gso"] == 1000
    ip = parse_ipv6(out.getvalue()[24 + 16 :])
    assert len(ip.payload) == 5020
    assert internet_checksum(ip.payload, pseudo_header_sum(pack(A6), pack(B6), NH_TCP, 5020)) == 0


LOSSY = LinkProfile(delay=0.002, loss=0.02, reorder=0.02)


@pytest.mark.parametrize("profile", [LinkProfile(delay=0.001), LOSSY])
def test_ipv6_bulk_transfer_from_an_offload_host_sends_super_segments_and_arrives_intact(
        profile: LinkProfile) -> None:
    sink_a, sink_b = MemorySink(), MemorySink()
    payload = random.Random(3).randbytes(600_000)
    with Network(7) as net:
        a = net.add_host("a", A, address6=A6, trace=Trace([sink_a]), offload=True)
        b = net.add_host("b", B, address6=B6, trace=Trace([sink_b]))
        net.connect("a", "b", profile)
        wire: list[bytes] = []
        net.taps.append(lambda _t, src, _dst, packet: wire.append(packet) if src == "a" else None)
        assert one_way_transfer(net, Stack(a.runtime), Stack(b.runtime), B6, payload) == payload
    out6 = sink_a.segments("out")
    assert out6 and all(e.conn.startswith("[") for e in out6)
    supers = [e for e in out6 if e.gso]
    assert supers, "no IPv6 super-segment was sent"
    # MSS accounting as for IPv4: each super-segment is a whole number of full IPv6 segments.
    assert all(e.gso == MSS6 and e.len > e.gso and e.len % e.gso == 0 for e in supers)
    assert max(e.len for e in supers) <= GSO_MAX_PAYLOAD6
    # The device cut them: on the link every IPv6 packet fits the MTU with a complete checksum,
    # which the per-segment receiver verified (no checksum drop), and b saw plain segments.
    assert wire and all(p[0] >> 4 == 6 for p in wire) and max(len(p) for p in wire) <= 1500
    assert not sink_b.drops("tcp_checksum") and not sink_a.drops()
    assert max(e.len for e in sink_b.segments("in")) == MSS6 and not any(e.gso for e in sink_b.segments("in"))


def test_ipv4_and_ipv6_on_one_offload_host_both_send_super_segments() -> None:
    sink_a = MemorySink()
    payload = random.Random(5).randbytes(300_000)
    with Network(7) as net:
        a = net.add_host("a", A, address6=A6, trace=Trace([sink_a]), offload=True)
        b = net.add_host("b", B, address6=B6)
        net.connect("a", "b", LinkProfile(delay=0.001))
        assert one_way_transfer(net, Stack(a.runtime), Stack(b.runtime), B6, payload) == payload
        assert one_way_transfer(net, Stack(a.runtime), Stack(b.runtime), B, payload) == payload
    out6 = [e for e in sink_a.segments("out") if e.conn.startswith("[")]
    out4 = [e for e in sink_a.segments("out") if not e.conn.startswith("[")]
    assert {e.gso for e in out6 if e.gso} == {MSS6} and {e.gso for e in out4 if e.gso} == {1448}


def test_ipv6_super_segments_shrink_to_the_path_mtu_a_router_reports() -> None:
    """a (offload) - r - b with a 1400-octet r-b link: the router's Packet Too Big quotes a wire
    segment the device cut from a super-segment; the connection lowers its MSS (RFC 8201) and
    its later super-segments are cut at the new segment size, every byte delivered."""
    sink_a = MemorySink()
    payload = random.Random(8).randbytes(400_000)
    with Network(9) as net:
        a = net.add_host("a", "10.0.1.1", address6="fd00:1::1", trace=Trace([sink_a]), offload=True)
        net.add_router("r")
        b = net.add_host("b", "10.0.2.1", address6="fd00:2::1")
        net.connect("a", "r", LinkProfile(delay=0.001))
        net.connect("r", "b", LinkProfile(delay=0.001, mtu=1400))
        net.route("a", via="r")
        net.route("b", via="r")
        got = one_way_transfer(net, Stack(a.runtime), Stack(b.runtime), "fd00:2::1", payload)
        assert got == payload and net.stats["packet_too_big"] >= 1
    assert a.host.counters["icmp6_packet_too_big"] >= 1
    sizes = [e.gso for e in sink_a.segments("out") if e.gso]
    assert sizes[0] == MSS6 and sizes[-1] == 1400 - 40 - 20 - 12


def test_ipv6_without_offloads_sends_plain_complete_segments() -> None:
    sink_a = MemorySink()
    payload = random.Random(6).randbytes(200_000)
    with Network(7) as net:
        a = net.add_host("a", A, address6=A6, trace=Trace([sink_a]))
        b = net.add_host("b", B, address6=B6)
        net.connect("a", "b", LinkProfile(delay=0.001))
        assert one_way_transfer(net, Stack(a.runtime), Stack(b.runtime), B6, payload) == payload
    assert not any(e.gso for e in sink_a.segments("out"))
    assert not any(e.csum_partial for e in sink_a.of(PacketEvent))


def _ipv6_syn_frame(flags: int) -> bytes:
    """A SYN from B6 to A6 with a partial checksum (only the pseudo-header sum), as a local
    sender's packet comes out of a TUN with TUN_F_CSUM."""
    seg = TcpSegment(4000, 80, 1, 0, SYN, 1000)
    tcp = build_tcp_header_partial(seg, pack(B6), pack(A6))
    packet = build_ipv6(IPv6Packet(B6, A6, NH_TCP, tcp))
    return vnet.HEADER.pack(flags, vnet.GSO_NONE, 0, 0, 40, 16) + packet


def test_ipv6_partial_checksum_is_trusted_and_the_answer_leaves_with_one() -> None:
    out = io.BytesIO()
    host = Host(A, address6=A6, offload=True, trace=Trace([PcapSink(out)]))
    host.listen(80)
    host.receive(_ipv6_syn_frame(vnet.F_NEEDS_CSUM), 0.0)
    assert not host.counters["tcp_checksum"]
    (frame,) = host.take_packets()
    header = vnet.parse_vnet(frame)
    assert (header.flags, header.gso_type, header.csum_start) == (vnet.F_NEEDS_CSUM, vnet.GSO_NONE, 40)
    ip = parse_ipv6(vnet.complete_checksum(frame[vnet.HEADER_LEN :]))
    synack = parse_tcp(ip.payload, pack(A6), pack(B6))  # verifies the completed checksum
    assert synack.flags == SYN | ACK
    # The pcap (raw IP of both families) shows the received SYN with its checksum completed.
    data = out.getvalue()
    assert struct.unpack_from("<I", data, 20)[0] == LINKTYPE_RAW
    (caplen,) = struct.unpack_from("<I", data, 24 + 8)
    syn = parse_ipv6(data[24 + 16 : 24 + 16 + caplen])
    pseudo = pseudo_header_sum(pack(B6), pack(A6), NH_TCP, len(syn.payload))
    assert internet_checksum(syn.payload, pseudo) == 0


def test_ipv6_partial_checksum_without_the_devices_word_is_verified_and_dropped() -> None:
    host = Host(A, address6=A6, offload=True)
    host.listen(80)
    host.receive(_ipv6_syn_frame(0), 0.0)
    assert host.counters["tcp_checksum"] == 1 and host.take_packets() == []


def test_a_batch_of_ipv6_segments_is_acknowledged_once() -> None:
    sink = MemorySink()
    a, b = Host(A, address6=A6), Host(B, address6=B6, trace=Trace([sink]))
    b.listen(80)
    conn = a.connect(B6, 80, 0.0)
    for _ in range(3):
        for packet in a.take_packets():
            b.receive(packet, 0.0)
        for packet in b.take_packets():
            a.receive(packet, 0.0)
    sink.clear()
    conn.nodelay = True
    conn.send(bytes(1428 * 6), 0.0)
    packets = a.take_packets()
    assert len(packets) == 6 and all(p[0] >> 4 == 6 for p in packets)
    b.receive_batch(packets, 0.001)
    acks = [e for e in sink.segments("out") if e.flags == "." and e.len == 0]
    assert len(acks) == 1
    (server,) = b.listeners[80].accept_queue
    assert acks[0].ack == server.rcv_nxt and len(server.rcvq) == 1428 * 6


def test_ipv6_frames_carry_the_connections_hop_limit_and_traffic_class() -> None:
    """IPV6_UNICAST_HOPS and IPV6_TCLASS, with offloads on."""
    host = Host(A, address6=A6, offload=True)
    seg = TcpSegment(1000, 80, 5000, 7, ACK, 512, bytes(100))
    host._transmit_segment(B6, seg, "x", 0.0, config=TcpConfig(ipv6_hops=5, ipv6_tclass=0xE0))
    (frame,) = host.take_packets()
    ip = parse_ipv6(frame[vnet.HEADER_LEN :])
    assert (ip.hop_limit, ip.traffic_class, ip.flow_label != 0) == (5, 0xE0, True)
