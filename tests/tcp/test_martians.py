"""Martian packets (stack.martian): dropped and counted before TCP sees them, never answered."""

from __future__ import annotations

import pytest

from stack import martian
from stack.martian import MartianFilter
from stack.wire.ipv4 import PROTO_TCP, IPv4Packet, build_ipv4, pack_addr
from stack.wire.tcp import ACK, SYN, TcpSegment, build_tcp

from .harness import LOCAL_IP, LOCAL_PORT, REMOTE_IP, established, listening


def tcp_packet(src: str, dst: str, seg: TcpSegment, ttl: int = 64) -> bytes:
    tcp = build_tcp(seg, pack_addr(src), pack_addr(dst))
    return build_ipv4(IPv4Packet(src, dst, PROTO_TCP, tcp, ttl=ttl))


def test_the_land_packet_is_dropped_and_nothing_is_sent() -> None:
    """src = dst = the host, same port, SYN to a listening port: the host used to answer itself."""
    peer = listening()
    land = TcpSegment(LOCAL_PORT, LOCAL_PORT, 12345, 0, SYN, 8192)
    peer.host.receive(tcp_packet(LOCAL_IP, LOCAL_IP, land), 0.0)
    assert peer.host.take_packets() == []
    assert peer.host.counters[martian.SOURCE_OWN] == 1
    assert not peer.host.connections and peer.host.deadline() is None
    assert [d.reason for d in peer.sink.drops()] == [martian.SOURCE_OWN]


@pytest.mark.parametrize(("src", "reason"), [
    (LOCAL_IP, martian.SOURCE_OWN),
    ("0.0.0.0", martian.SOURCE_ZERO),
    ("0.1.2.3", martian.SOURCE_ZERO),
    ("127.0.0.1", martian.SOURCE_LOOPBACK),
    ("127.255.0.9", martian.SOURCE_LOOPBACK),
    ("224.0.0.1", martian.SOURCE_MULTICAST),
    ("239.255.255.250", martian.SOURCE_MULTICAST),
    ("255.255.255.255", martian.SOURCE_BROADCAST),
])
@pytest.mark.parametrize("flags", [SYN, ACK])
def test_each_martian_source_is_dropped_with_its_counter(src: str, reason: str, flags: int) -> None:
    """A SYN would get a SYN-ACK and an ACK a RST from a genuine source; a martian gets nothing."""
    peer = established()
    peer.host.receive(tcp_packet(src, LOCAL_IP, TcpSegment(40000, LOCAL_PORT, 1, 1, flags, 100)), 0.0)
    peer.host.receive(tcp_packet(src, LOCAL_IP, TcpSegment(40000, 9, 1, 1, flags, 100)), 0.0)  # closed
    assert peer.host.take_packets() == []
    assert peer.host.counters[reason] == 2
    assert len(peer.host.connections) == 1


def test_a_destination_not_ours_is_dropped() -> None:
    peer = listening()
    peer.host.receive(tcp_packet(REMOTE_IP, "10.0.0.99", TcpSegment(40000, LOCAL_PORT, 1, 0, SYN, 100)), 0.0)
    assert peer.host.take_packets() == [] and peer.host.counters["ip_not_for_us"] == 1


def test_ttl_zero_is_no_reason_to_drop_a_packet_addressed_to_us() -> None:
    peer = listening()
    syn = TcpSegment(40000, LOCAL_PORT, 1, 0, SYN, 100)
    peer.host.receive(tcp_packet(REMOTE_IP, LOCAL_IP, syn, ttl=0), 0.0)
    assert len(peer.host.take_packets()) == 1  # the SYN-ACK


def test_a_packet_the_host_looped_back_to_itself_is_not_martian() -> None:
    peer = listening()
    own = tcp_packet(LOCAL_IP, LOCAL_IP, TcpSegment(40000, LOCAL_PORT, 1, 0, SYN, 100))
    peer.host.receive(own, 0.0, loopback=True)
    assert len(peer.host.take_packets()) == 1
    assert peer.host.counters[martian.SOURCE_OWN] == 0


@pytest.mark.parametrize("src", ["10.0.0.2", "1.2.3.4", "126.255.255.255", "128.0.0.1", "223.255.255.255",
                                 "240.0.0.1", "255.255.255.254"])
def test_ordinary_sources_pass(src: str) -> None:
    assert MartianFilter([LOCAL_IP]).check_source(pack_addr(src)) is None


def test_land_on_the_simulated_network_leaves_the_node_running() -> None:
    """Once, one LAND packet made the node answer itself without end and froze virtual time."""
    from stack.sim import LinkProfile, Network

    with Network(3) as net:
        node = net.add_host("web", LOCAL_IP)
        net.add_router("x")
        net.connect("x", "web", LinkProfile(delay=0.001))
        node.host.listen(LOCAL_PORT)
        sent: list[str] = []
        net.taps.append(lambda t, src, dst, p: sent.append(src) if src == "web" else None)
        land = TcpSegment(LOCAL_PORT, LOCAL_PORT, 12345, 0, SYN, 8192)
        net.inject("x", tcp_packet(LOCAL_IP, LOCAL_IP, land))
        net.run_for(5.0)
        assert net.now >= 5.0 and sent == []
        assert node.host.counters[martian.SOURCE_OWN] == 1 and not node.host.connections
