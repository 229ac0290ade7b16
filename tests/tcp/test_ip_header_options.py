"""IP_TTL, IP_TOS (IPv4) and IPV6_UNICAST_HOPS, IPV6_TCLASS (IPv6): the IP header fields of every
packet a socket's connection sends, set before or after it connects, inherited from a listener,
kept in TIME_WAIT, and on the RST for a port that is bound but neither listens nor connects.
Checked on the wire (the packets each host's trace records), with the default config and the
freebsd profile.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator

import pytest

from stack.config import TcpConfig, freebsd_profile
from stack.inet import AF_INET, AF_INET6
from stack.sim import LinkProfile
from stack.socket import Socket
from stack.sockopts import IP_TOS, IP_TTL, IPPROTO_IP, IPPROTO_IPV6, IPV6_TCLASS, IPV6_UNICAST_HOPS
from stack.trace import MemorySink, PacketEvent
from stack.wire.ipv4 import PROTO_TCP, parse_ipv4
from stack.wire.ipv6 import parse_ipv6
from stack.wire.segment import tcp_packet
from stack.wire.tcp import SYN, TcpSegment, parse_tcp
from tests.two_hosts import A_ADDR, A_ADDR6, B_ADDR, B_ADDR6, TwoHosts, two_hosts

PORT = 80
# family -> (socket family, server address, client address, level, hops option, class option)
FAMILIES = {
    "ipv4": (AF_INET, B_ADDR, A_ADDR, IPPROTO_IP, IP_TTL, IP_TOS),
    "ipv6": (AF_INET6, B_ADDR6, A_ADDR6, IPPROTO_IPV6, IPV6_UNICAST_HOPS, IPV6_TCLASS),
}
CONFIGS = [pytest.param(TcpConfig(), id="default"), pytest.param(freebsd_profile(), id="freebsd")]


def _fields(sink: MemorySink) -> list[tuple[str, int, int]]:
    """(flags, TTL or hop limit, TOS or traffic class) of every TCP packet the host sent."""
    out = []
    for e in sink.of(PacketEvent):
        if e.direction != "out":
            continue
        data = bytes(e.data)
        if data[0] >> 4 == 6:
            ip6 = parse_ipv6(data)
            hops, tclass, payload = ip6.hop_limit, ip6.traffic_class, ip6.payload
        else:
            ip4 = parse_ipv4(data)
            assert ip4.protocol == PROTO_TCP
            hops, tclass, payload = ip4.ttl, ip4.tos, ip4.payload
        seg = parse_tcp(payload, b"", b"", verify_checksum=False)
        out.append((_letters(seg), hops, tclass))
    return out


def _letters(seg: TcpSegment) -> str:
    return "".join(c for bit, c in ((0x02, "S"), (0x01, "F"), (0x04, "R"), (0x10, ".")) if seg.flags & bit)


def _listener(net: TwoHosts, fam: int, options: tuple[tuple[int, int, int], ...] = ()) -> Socket:
    """A listening socket on host b at PORT, with `options` (level, option, value) set before bind."""
    srv = net.stack_b.socket(fam)
    for level, option, value in options:
        srv.setsockopt(level, option, value)
    srv.bind(("", PORT))
    srv.listen(4)
    return srv


async def _connect(cli: Socket, srv: Socket, server: str) -> Socket:
    """Connect cli to the listener; the accepted socket."""
    await cli.aconnect((server, PORT))
    child, _ = await srv.aaccept()
    return child


@pytest.fixture(params=CONFIGS)
def net(request: pytest.FixtureRequest) -> Iterator[TwoHosts]:
    hosts = two_hosts(1, LinkProfile(delay=0.005), config=request.param)
    yield hosts
    hosts.net.close()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_defaults_are_ttl_64_and_class_0(net: TwoHosts, family: str) -> None:
    fam, server, _, level, hops, tclass = FAMILIES[family]

    async def main() -> None:
        srv = _listener(net, fam)
        cli = net.stack_a.socket(fam)
        assert (cli.getsockopt(level, hops), cli.getsockopt(level, tclass)) == (64, 0)
        child = await _connect(cli, srv, server)
        await cli.asendall(b"x" * 3000)
        cli.close()
        child.close()
        await net.settle()

    net.run(main())
    assert {(h, c) for _, h, c in _fields(net.sink_a) + _fields(net.sink_b)} == {(64, 0)}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_client_fields_hold_from_the_syn_and_change_with_setsockopt(net: TwoHosts, family: str) -> None:
    fam, server, _, level, hops, tclass = FAMILIES[family]

    async def main() -> None:
        srv = _listener(net, fam)
        cli = net.stack_a.socket(fam)
        cli.setsockopt(level, hops, 4)
        cli.setsockopt(level, tclass, 0x20)
        child = await _connect(cli, srv, server)
        await cli.asendall(b"x" * 100)
        assert await child.arecv(100)
        cli.setsockopt(level, hops, 6)
        cli.setsockopt(level, tclass, 0xE3)  # the ECN bits stay TCP's (RFC 3168): 0xe0
        assert (cli.getsockopt(level, hops), cli.getsockopt(level, tclass)) == (6, 0xE0)
        await cli.asendall(b"y" * 100)
        cli.close()
        child.close()
        await net.settle()

    net.run(main())
    sent = _fields(net.sink_a)
    assert sent[0] == ("S", 4, 0x20)
    changed = sent.index(next(f for f in sent if f[1] == 6))
    assert set(sent[:changed]) <= {("S", 4, 0x20), (".", 4, 0x20)}
    assert {(h, c) for _, h, c in sent[changed:]} == {(6, 0xE0)}  # data, FIN, last ACK alike
    assert {(h, c) for _, h, c in _fields(net.sink_b)} == {(64, 0)}  # the server's: default


@pytest.mark.parametrize("family", list(FAMILIES))
def test_accepted_connections_take_the_listeners_fields(net: TwoHosts, family: str) -> None:
    fam, server, _, level, hops, tclass = FAMILIES[family]

    async def main() -> None:
        srv = _listener(net, fam, ((level, hops, 9), (level, tclass, 0xB8)))
        cli = net.stack_a.socket(fam)
        child = await _connect(cli, srv, server)
        assert child.getsockopt(level, hops) == 9
        await child.asendall(b"z" * 2000)
        child.close()  # the server closes first: its TIME_WAIT answers with the same fields
        while await cli.arecv(4096):
            pass
        cli.close()
        await net.settle()

    net.run(main())
    sent = _fields(net.sink_b)
    assert sent[0][0] == "S." and {(h, c) for _, h, c in sent} == {(9, 0xB8)}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_bound_port_resets_with_its_sockets_fields_until_it_listens(net: TwoHosts, family: str) -> None:
    fam, server, client, level, hops, tclass = FAMILIES[family]
    host = net.b.host
    syn = TcpSegment(40000, PORT, 7, 0, SYN, 1000)

    def poke() -> None:
        host.receive(tcp_packet(client, server, syn), net.net.loop.time())

    sock: Socket = net.stack_b.socket(fam)
    sock.setsockopt(level, hops, 4)
    sock.setsockopt(level, tclass, 0x20)
    sock.bind(("", PORT))
    poke()
    sock.setsockopt(level, hops, 5)  # a later setsockopt holds too
    poke()
    sock.close()
    poke()
    assert _fields(net.sink_b) == [("R.", 4, 0x20), ("R.", 5, 0x20), ("R.", 64, 0)]
    assert host.counters["closed_port"] == 3


@pytest.mark.parametrize("family", list(FAMILIES))
def test_out_of_range_values_are_refused_and_minus_one_restores_defaults(net: TwoHosts, family: str) -> None:
    fam, _, _, level, hops, tclass = FAMILIES[family]
    sock = net.stack_a.socket(fam)
    zero = [(hops, 0)] if family == "ipv4" else []  # a TTL of 0; IPv6 allows a hop limit of 0
    for option, bad in ((hops, 256), (hops, -2), (tclass, 256), *zero):
        with pytest.raises(OSError) as err:
            sock.setsockopt(level, option, bad)
        assert err.value.errno == errno.EINVAL
    sock.setsockopt(level, hops, 1)
    assert sock.getsockopt(level, hops) == 1
    sock.setsockopt(level, hops, -1)
    sock.setsockopt(level, tclass, -1)
    assert (sock.getsockopt(level, hops), sock.getsockopt(level, tclass)) == (64, 0)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_setsockopt_on_a_listener_holds_for_what_it_accepts_next(net: TwoHosts, family: str) -> None:
    fam, server, _, level, hops, _ = FAMILIES[family]

    async def main() -> None:
        srv = _listener(net, fam)
        srv.setsockopt(level, hops, 7)
        child = await _connect(net.stack_a.socket(fam), srv, server)
        assert child.getsockopt(level, hops) == 7

    net.run(main())
    assert _fields(net.sink_b)[0][:2] == ("S.", 7)
