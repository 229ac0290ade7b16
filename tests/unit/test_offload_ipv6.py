"""IPv6 on a host in offload mode: TSO6 is not enabled (stack.tundev), so IPv6 connections run
segment by segment behind plain virtio-net headers while IPv4 ones on the same host still send
super-segments; a partial checksum the kernel hands us is trusted for IPv6 too, and the pcap
completes it; the per-batch receive path takes IPv6 packets as well."""

from __future__ import annotations

import io
import random
import struct

from stack.checksum import internet_checksum, pseudo_header_sum
from stack.host import Host
from stack.inet import pack
from stack.sim.link import LinkProfile
from stack.sim.network import Network
from stack.socket import Stack
from stack.trace import LINKTYPE_RAW, MemorySink, PcapSink, Trace
from stack.wire import vnet
from stack.wire.ipv6 import NH_TCP, IPv6Packet, build_ipv6, parse_ipv6
from stack.wire.tcp import ACK, SYN, TcpSegment, build_tcp_header_partial, parse_tcp
from tests.two_hosts import one_way_transfer

A, B = "10.0.0.1", "10.0.0.2"
A6, B6 = "fd00::1", "fd00::2"
PORT = 9

def test_ipv6_on_an_offload_host_goes_segment_by_segment_and_ipv4_still_in_super_segments() -> None:
    sink_a, sink_b = MemorySink(), MemorySink()
    payload = random.Random(3).randbytes(300_000)
    with Network(7) as net:
        a = net.add_host("a", A, address6=A6, trace=Trace([sink_a]), offload=True)
        b = net.add_host("b", B, address6=B6, trace=Trace([sink_b]))
        net.connect("a", "b", LinkProfile(delay=0.001))
        wire: list[bytes] = []
        net.taps.append(lambda _t, src, _dst, packet: wire.append(packet) if src == "a" else None)
        assert one_way_transfer(net, Stack(a.runtime), Stack(b.runtime), B6, payload) == payload
        assert one_way_transfer(net, Stack(a.runtime), Stack(b.runtime), B, payload) == payload
    out6 = [e for e in sink_a.segments("out") if e.conn.startswith("[")]
    out4 = [e for e in sink_a.segments("out") if not e.conn.startswith("[")]
    assert out6 and not any(e.gso for e in out6), "an IPv6 super-segment was sent (TSO6 is off)"
    assert max(e.len for e in out6) <= 1500 - 40 - 20
    assert any(e.gso for e in out4), "IPv4 on the same host sent no super-segment"
    # Every IPv6 packet a sent reached the link whole, its checksum complete (B verified them all).
    v6 = [p for p in wire if p[0] >> 4 == 6]
    assert v6 and max(len(p) for p in v6) <= 1500
    assert not sink_b.drops("tcp_checksum") and not sink_a.drops()


def _ipv6_syn_frame(flags: int) -> bytes:
    """A SYN from B6 to A6 with a partial checksum (only the pseudo-header sum), as a local
    sender's packet comes out of a TUN with TUN_F_CSUM."""
    seg = TcpSegment(4000, 80, 1, 0, SYN, 1000)
    tcp = build_tcp_header_partial(seg, pack(B6), pack(A6))
    packet = build_ipv6(IPv6Packet(B6, A6, NH_TCP, tcp))
    return vnet.HEADER.pack(flags, vnet.GSO_NONE, 0, 0, 40, 16) + packet


def test_ipv6_partial_checksum_is_trusted_and_the_answer_is_a_plain_complete_packet() -> None:
    out = io.BytesIO()
    host = Host(A, address6=A6, offload=True, trace=Trace([PcapSink(out)]))
    host.listen(80)
    host.receive(_ipv6_syn_frame(vnet.F_NEEDS_CSUM), 0.0)
    assert not host.counters["tcp_checksum"]
    (frame,) = host.take_packets()
    assert frame[: vnet.HEADER_LEN] == vnet.PLAIN  # no TSO6, no checksum offload for IPv6
    ip = parse_ipv6(frame[vnet.HEADER_LEN :])
    synack = parse_tcp(ip.payload, pack(A6), pack(B6))  # verifies the checksum
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
