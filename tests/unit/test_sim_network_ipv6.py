"""Network with IPv6: routing by IPv6 destination, the hop limit, Packet Too Big from routers
(never fragmentation), malformed packets, and the addresses a host or router may take."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stack.inet import pack
from stack.sim.link import LinkProfile
from stack.sim.network import Network
from stack.wire import icmpv6
from stack.wire.ipv6 import NH_ICMPV6, IPv6Packet, build_ipv6, decrement_hop_limit, parse_ipv6

PROTO_TEST = 253


@pytest.fixture
def net() -> Iterator[Network]:
    with Network(seed=3) as n:
        yield n


def chain(net: Network, *router_addresses: str, mtu: int | None = None) -> list[tuple[str, str, bytes]]:
    """a - r - b with IPv6 on both hosts; returns the list the tap fills with (from, to, packet)."""
    net.add_host("a", "10.0.1.1", address6="fd00:1::1")
    net.add_router("r", *router_addresses)
    net.add_host("b", "10.0.2.1", address6="fd00:2::1")
    net.connect("a", "r")
    net.connect("r", "b", LinkProfile(mtu=mtu))
    net.route("a", via="r")
    net.route("b", via="r")
    seen: list[tuple[str, str, bytes]] = []
    net.taps.append(lambda t, src, dst, p: seen.append((src, dst, p)))
    return seen


def packet(size: int = 100, hops: int = 64, nh: int = PROTO_TEST) -> bytes:
    return build_ipv6(IPv6Packet("fd00:1::1", "fd00:2::1", nh, bytes(size - 40), hops))


def test_router_forwards_by_ipv6_destination_one_hop_lower(net: Network) -> None:
    seen = chain(net)
    net.inject("a", packet(hops=9))
    net.run_for(1.0)
    ours = [(src, dst, parse_ipv6(p)) for src, dst, p in seen]
    hops = [(src, dst, ip.hop_limit) for src, dst, ip in ours if ip.next_header == PROTO_TEST]
    assert hops == [("a", "r", 9), ("r", "b", 8)]
    # b's stack knows no protocol 253: its Parameter Problem comes back the same way.
    assert [(s, d) for s, d, ip in ours if ip.next_header == NH_ICMPV6] == [("b", "r"), ("r", "a")]
    assert net.stats["forwarded"] == 2  # the packet and the Parameter Problem


def test_hop_limit_one_dies_at_the_router(net: Network) -> None:
    seen = chain(net)
    net.inject("a", packet(hops=1))
    net.run_for(1.0)
    assert [(s, d) for s, d, _ in seen] == [("a", "r")]
    assert net.stats["ttl_expired"] == 1


def test_specific_ipv6_route_wins_over_the_default(net: Network) -> None:
    net.add_host("a", "10.0.0.1", address6="fd00::1")
    for r in ("r1", "r2"):
        net.add_router(r)
    net.add_host("b", "10.0.0.2", address6="fd00::2")
    for r in ("r1", "r2"):
        net.connect("a", r)
        net.connect(r, "b")
    net.route("a", via="r1")
    net.route("a", via="r2", to="FD00::0002")  # any spelling of the address
    net.inject("a", build_ipv6(IPv6Packet("fd00::1", "fd00::2", PROTO_TEST, b"x")))
    net.run_for(1.0)
    assert net.duplex("a", "r2").forward.stats.delivered == 1
    assert net.duplex("a", "r1").forward.stats.sent == 0


ROUTER_SOURCES = [(("10.0.9.1", "fd00:9::1"), "fd00:9::1"), ((), "2001:db8::1")]


@pytest.mark.parametrize(("addresses", "source"), ROUTER_SOURCES)
def test_too_big_gets_packet_too_big_from_the_router(
    net: Network, addresses: tuple[str, ...], source: str
) -> None:
    seen = chain(net, *addresses, mtu=1280)
    big = packet(1500)
    net.inject("a", big)
    net.run_for(1.0)
    back = [parse_ipv6(p) for s, d, p in seen if (s, d) == ("r", "a")]
    assert [(ip.src, ip.dst, ip.next_header) for ip in back] == [(source, "fd00:1::1", NH_ICMPV6)]
    msg = icmpv6.parse_icmpv6(back[0].payload, pack(source), pack("fd00:1::1"))
    assert (msg.type, msg.rest) == (icmpv6.PACKET_TOO_BIG, 1280)
    assert msg.payload == decrement_hop_limit(big)[: icmpv6.MAX_QUOTE]  # the copy it could not send
    assert net.stats["packet_too_big"] == 1 and net.stats["frag_needed"] == 0


def test_no_packet_too_big_about_an_icmpv6_error(net: Network) -> None:
    seen = chain(net, mtu=1280)
    oversized = icmpv6.Icmpv6Message(icmpv6.DEST_UNREACH, 0, 0, bytes(1400))
    error = icmpv6.build_icmpv6(oversized, pack("fd00:1::1"), pack("fd00:2::1"))
    net.inject("a", build_ipv6(IPv6Packet("fd00:1::1", "fd00:2::1", NH_ICMPV6, error)))
    net.run_for(1.0)
    assert [(s, d) for s, d, _ in seen] == [("a", "r")]
    assert net.stats["too_big_dropped"] == 1


def test_short_ipv6_packet_is_malformed(net: Network) -> None:
    chain(net)
    net.inject("a", packet()[:39])
    net.inject("a", b"\x00" * 60)  # version 0: neither family
    assert net.stats["malformed"] == 2


def test_host_addresses(net: Network) -> None:
    node = net.add_host("a", "10.0.0.1", address6="FD00::0001")
    assert node.address6 == "fd00::1" and node.host.address6 == "fd00::1"
    with pytest.raises(ValueError, match="already belongs to 'a'"):
        net.add_host("b", "10.0.0.2", address6="fd00::1")
    with pytest.raises(ValueError, match="must be an IPv6 address"):
        net.add_host("c", "10.0.0.3", address6="10.0.0.4")
    with pytest.raises(ValueError, match="not an IPv4 or IPv6 address"):
        net.add_router("r", "fd00::zz")
