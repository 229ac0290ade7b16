"""The host's IPv6 layer, one packet at a time: ICMPv6 echo and errors, Parameter Problem for what
it cannot process (RFC 8200 section 4), fragments and malformed packets dropped and counted (never
raised), Packet Too Big (RFC 8201) and soft errors (RFC 1122 4.2.3.9) acting on connections
(hard errors in SYN-SENT, the same for both families: test_icmp_errors.py),
the flow label (RFC 6437) and hop limit of what it sends."""

from __future__ import annotations

import errno
import random
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stack.config import TcpConfig
from stack.host import Host
from stack.inet import pack
from stack.tcp.state import State
from stack.trace import AppEvent, TimerEvent
from stack.wire import icmpv6
from stack.wire.ipv6 import (
    NH_DEST_OPTS,
    NH_FRAGMENT,
    NH_ICMPV6,
    NH_TCP,
    IPv6Packet,
    build_ipv6,
    parse_ipv6,
)
from stack.wire.tcp import Flags, Mss, TcpSegment, build_tcp

from . import harness
from .harness import IPV6, LOCAL_PORT, PLAIN, REMOTE_PORT, Peer, established, listening, syn_sent

LOCAL, REMOTE = IPV6.local_ip, IPV6.remote_ip


@pytest.fixture(autouse=True)
def ipv6_family() -> Iterator[None]:
    saved = harness.FAMILY
    harness.FAMILY = IPV6
    try:
        yield
    finally:
        harness.FAMILY = saved


def icmp_packet(msg: icmpv6.Icmpv6Message, src: str = REMOTE, dst: str = LOCAL) -> bytes:
    return build_ipv6(IPv6Packet(src, dst, NH_ICMPV6, icmpv6.build_icmpv6(msg, pack(src), pack(dst))))


def icmp_out(peer: Peer) -> list[tuple[IPv6Packet, icmpv6.Icmpv6Message]]:
    """The ICMPv6 messages the host sent (and nothing else)."""
    out = []
    for raw in peer.host.take_packets():
        ip = parse_ipv6(raw)
        assert ip.next_header == NH_ICMPV6, ip
        out.append((ip, icmpv6.parse_icmpv6(ip.payload, pack(ip.src), pack(ip.dst))))
    return out


def tcp_packet(peer: Peer, seg: TcpSegment, **kw: object) -> bytes:
    return build_ipv6(IPv6Packet(REMOTE, LOCAL, NH_TCP, build_tcp(seg, pack(REMOTE), pack(LOCAL)),
                                 **kw))  # type: ignore[arg-type]


def syn(peer: Peer) -> TcpSegment:
    return TcpSegment(REMOTE_PORT, LOCAL_PORT, peer.seq, 0, Flags.SYN, 65535, b"", (Mss(1440),))


# ------------------------------------------------------------------------------------ echo


def test_echo_request_gets_a_reply_with_its_id_seq_and_data() -> None:
    peer = listening()
    peer.host.receive(icmp_packet(icmpv6.Icmpv6Message(icmpv6.ECHO_REQUEST, 0, 0x00070009, b"abc")), 0.0)
    [(ip, msg)] = icmp_out(peer)
    assert (ip.src, ip.dst, ip.hop_limit) == (LOCAL, REMOTE, 64)
    assert msg == icmpv6.Icmpv6Message(icmpv6.ECHO_REPLY, 0, 0x00070009, b"abc")
    assert peer.host.counters["icmp6_echo"] == 1


def test_neighbour_discovery_is_counted_and_ignored() -> None:
    peer = listening()
    peer.host.receive(icmp_packet(icmpv6.Icmpv6Message(135, 0, 0, bytes(16))), 0.0)  # NS
    assert icmp_out(peer) == []
    assert peer.host.counters["icmp6_nd_ignored"] == 1


# ------------------------------------------------------------------------------------ refusals


def test_unknown_next_header_gets_parameter_problem_pointing_at_it() -> None:
    peer = listening()
    udp = build_ipv6(IPv6Packet(REMOTE, LOCAL, 17, bytes(12)))
    peer.host.receive(udp, 0.0)
    [(ip, msg)] = icmp_out(peer)
    assert ip.dst == REMOTE
    assert (msg.type, msg.code, msg.rest) == (icmpv6.PARAM_PROBLEM, 1, 6)  # RFC 4443 3.4
    assert msg.payload == udp
    assert peer.host.counters["ip_protocol"] == 1


def test_unknown_next_header_after_an_extension_header_points_into_it() -> None:
    peer = listening()
    raw = build_ipv6(IPv6Packet(REMOTE, LOCAL, NH_DEST_OPTS, bytes((253, 0, 1, 4, 0, 0, 0, 0)) + b"x"))
    peer.host.receive(raw, 0.0)
    [(_, msg)] = icmp_out(peer)
    assert (msg.type, msg.code, msg.rest) == (icmpv6.PARAM_PROBLEM, 1, 40)


def test_unknown_option_that_asks_for_it_gets_parameter_problem() -> None:
    peer = listening()
    raw = build_ipv6(IPv6Packet(REMOTE, LOCAL, NH_DEST_OPTS, bytes((NH_TCP, 0, 0x9E, 4, 0, 0, 0, 0))))
    peer.host.receive(raw, 0.0)
    [(_, msg)] = icmp_out(peer)
    assert (msg.type, msg.code, msg.rest) == (icmpv6.PARAM_PROBLEM, 2, 42)
    assert peer.host.counters["ip6_option"] == 1


def test_no_parameter_problem_about_an_icmpv6_error_or_to_a_multicast_source() -> None:
    peer = listening()
    error_with_bad_option = build_ipv6(IPv6Packet(REMOTE, LOCAL, NH_ICMPV6, bytes((1, 0, 0, 0)) + bytes(4)))
    wrapped = bytearray(build_ipv6(IPv6Packet(REMOTE, LOCAL, 17, b"")))
    wrapped[8] = 0xFF  # a multicast source
    peer.host.receive(bytes(wrapped), 0.0)
    peer.host.receive(error_with_bad_option, 0.0)  # a bad checksum, not a refusal: dropped
    assert icmp_out(peer) == []
    assert peer.host.counters["ip6_bad_source"] == 1


def test_parameter_problems_are_rate_limited() -> None:
    peer = listening()
    udp = build_ipv6(IPv6Packet(REMOTE, LOCAL, 17, b""))
    for _ in range(150):
        peer.host.receive(udp, 0.5)
    assert len(icmp_out(peer)) == 100  # RFC 4443 2.4 (f)
    assert peer.host.counters["icmp6_error_rate_limited"] == 50
    peer.host.receive(udp, 1.6)
    assert len(icmp_out(peer)) == 1


# ------------------------------------------------------------------------------------ drops


@pytest.mark.parametrize("state", ["listen", "established"])
def test_a_fragment_is_dropped_and_counted(state: str) -> None:
    peer = listening() if state == "listen" else established()
    frag = bytes((NH_TCP, 0, 0, 1, 0, 0, 0, 1))  # offset 0, more fragments
    tcp = build_tcp(syn(peer), pack(REMOTE), pack(LOCAL))
    peer.host.receive(build_ipv6(IPv6Packet(REMOTE, LOCAL, NH_FRAGMENT, frag + tcp)), 0.0)
    peer.expect_none()
    assert peer.host.counters["ip6_fragment"] == 1
    assert peer.sink.drops("ip6_fragment")


def test_an_atomic_fragment_is_processed_whole() -> None:
    """RFC 6946: offset 0 and M 0 is no fragment at all; the SYN inside opens a connection."""
    peer = listening()
    frag = bytes((NH_TCP, 0, 0, 0, 0, 0, 0, 1))
    tcp = build_tcp(syn(peer), pack(REMOTE), pack(LOCAL))
    peer.host.receive(build_ipv6(IPv6Packet(REMOTE, LOCAL, NH_FRAGMENT, frag + tcp)), 0.0)
    peer.seq += 1
    peer.expect("S.", seq=peer.iss, options=IPV6.syn_opts)


@pytest.mark.parametrize(
    ("src", "dst", "reason"),
    [
        ("ff02::1", LOCAL, "ip6_bad_source"),
        ("::", LOCAL, "ip6_bad_source"),
        ("::ffff:10.0.0.2", LOCAL, "ip6_bad_source"),
        (REMOTE, "fd00::99", "ip_not_for_us"),
    ],
)
def test_martians_and_strangers_are_dropped(src: str, dst: str, reason: str) -> None:
    peer = listening()
    seg = syn(peer)
    raw = bytearray(build_ipv6(IPv6Packet(REMOTE, dst, NH_TCP, build_tcp(seg, pack(src), pack(dst)))))
    raw[8:24] = pack(src) if ":" in src else bytes(10) + b"\xff\xff" + bytes((10, 0, 0, 2))
    peer.host.receive(bytes(raw), 0.0)
    peer.expect_none()
    assert peer.host.counters[reason] == 1


def test_every_truncated_prefix_is_dropped_and_counted_never_raised() -> None:
    peer = established()
    seg = TcpSegment(REMOTE_PORT, LOCAL_PORT, peer.seq, peer.ack, Flags.ACK | Flags.PSH, 65535, b"x" * 30)
    raw = tcp_packet(peer, seg)
    for n in range(len(raw)):
        peer.host.receive(raw[:n], 0.0)
    peer.expect_none()
    dropped = sum(peer.host.counters.values())
    assert dropped == len(raw)  # one counted drop each (n = 0 included)
    assert peer.host.counters["ip6_length"] > 0 and peer.host.counters["ip6_short"] > 0
    assert peer.state is State.ESTABLISHED
    peer.send("P.", payload=b"ok")  # the connection still works
    peer.expect(".", win=harness.RCVBUF - 2)


def test_bad_payload_length_is_dropped() -> None:
    peer = listening()
    raw = bytearray(tcp_packet(peer, syn(peer)))
    raw[4:6] = (len(raw) - 40 + 1).to_bytes(2, "big")
    peer.host.receive(bytes(raw), 0.0)
    raw[4:6] = (len(raw) - 40 - 4).to_bytes(2, "big")  # shorter: cuts the TCP header's options
    peer.host.receive(bytes(raw), 0.0)
    peer.expect_none()
    assert peer.host.counters["ip6_length"] == 1
    assert peer.host.counters["tcp_checksum"] == 1


def test_a_host_without_an_ipv6_address_drops_ipv6_and_refuses_to_connect() -> None:
    host = Host("10.0.0.1")
    host.receive(build_ipv6(IPv6Packet(REMOTE, LOCAL, NH_TCP, bytes(20))), 0.0)
    assert host.counters["ip6_no_address"] == 1
    with pytest.raises(OSError) as info:
        host.connect(REMOTE, 80, 0.0)
    assert info.value.errno == errno.ENETUNREACH


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.binary(min_size=40, max_size=120), st.integers(0, 255), st.booleans())
def test_fuzz_never_raises(data: bytes, nh: int, ours: bool) -> None:
    """Arbitrary IPv6 packets (version, length and, if `ours`, addresses fixed so the walk and
    the upper layers are reached) are dropped, counted or answered, never raised."""
    host = Host("10.0.0.1", address6=LOCAL, rng=random.Random(1))
    host.listen(LOCAL_PORT)
    raw = bytearray(data)
    raw[0] = 0x60 | raw[0] & 0x0F
    raw[4:6] = (len(raw) - 40).to_bytes(2, "big")
    raw[6] = nh
    if ours:
        raw[8:24], raw[24:40] = pack(REMOTE), pack(LOCAL)
    host.receive(bytes(raw), 0.0)
    for out in host.take_packets():
        parse_ipv6(out)  # whatever it sends is well formed
    assert sum(host.counters.values()) >= 1 or host.connections


# ------------------------------------------------------------------------------------ errors to TCP


def quote_of(raw: bytes) -> bytes:
    return raw[: icmpv6.MAX_QUOTE]


def test_packet_too_big_lowers_the_mss_and_resends_smaller() -> None:
    peer = established()
    peer.app_send(b"d" * 3000)
    big = peer.host.take_packets()
    assert [len(p) for p in big] == [1500, 1500]  # 1440 octets each; Nagle holds the last 120
    peer.host.receive(icmp_packet(icmpv6.packet_too_big(1400, big[0]), src="fd00:1::fe"), 0.0)
    resent = peer.segments()
    i = peer.iss + 1  # everything again from SND.UNA, in 1400 - 60 = 1340-octet segments
    assert [(s.seq, len(s.payload)) for s in resent] == [(i, 1340), (i + 1340, 1340), (i + 2680, 320)]
    assert [e.action for e in peer.sink.of(TimerEvent) if e.timer == "pmtu"] == ["mtu 1400 mss 1340"]
    assert peer.c().info()["mss"] == 1340
    assert peer.host.counters["icmp6_packet_too_big"] == 1


@pytest.mark.parametrize(("mtu", "seq_delta", "reason"), [
    (1279, 0, "icmp6_ptb_below_min"),  # RFC 8201 section 4
    (1400, 100_000, "icmp6_out_of_window"),  # RFC 5927 4.1: not a segment we sent
])
def test_packet_too_big_that_cannot_be_trusted_is_dropped(mtu: int, seq_delta: int, reason: str) -> None:
    peer = established()
    peer.app_send(b"d" * 3000)
    big = bytearray(peer.host.take_packets()[0])
    big[44:48] = ((int.from_bytes(big[44:48], "big") + seq_delta) % 2**32).to_bytes(4, "big")
    peer.host.receive(icmp_packet(icmpv6.packet_too_big(mtu, bytes(big))), 0.0)
    peer.expect_none()
    assert peer.host.counters[reason] == 1
    assert peer.c().info()["mss"] == 1440


def test_error_for_no_connection_is_dropped() -> None:
    peer = listening()
    stray = tcp_packet(peer, syn(peer))  # as if we had sent it: swap the addresses
    ours = build_ipv6(IPv6Packet(LOCAL, REMOTE, NH_TCP, parse_ipv6(stray).payload))
    peer.host.receive(icmp_packet(icmpv6.destination_unreachable(4, ours)), 0.0)
    assert peer.host.counters["icmp_no_connection"] == 1


@pytest.mark.parametrize(("code", "error", "config"), [
    (icmpv6.PORT_UNREACH, ConnectionRefusedError, PLAIN.with_(icmp_hard_errors=False)),
    (icmpv6.ADDRESS_UNREACH, OSError, PLAIN),
])
def test_destination_unreachable_is_a_soft_error_reported_at_the_timeout(
        code: int, error: type, config: TcpConfig) -> None:
    """RFC 1122 4.2.3.9, RFC 5461: the connection keeps trying; when it gives up the application
    hears the ICMPv6 error (as Linux reports it) rather than a bare timeout. (Port unreachable is
    a hard error in SYN-SENT unless icmp_hard_errors is off: tests/tcp/test_icmp_errors.py.)"""
    peer = syn_sent(config=config)
    sent = build_ipv6(IPv6Packet(LOCAL, REMOTE, NH_TCP, build_tcp(
        TcpSegment(LOCAL_PORT, REMOTE_PORT, peer.iss, 0, Flags.SYN, 8192, b"", IPV6.syn_opts),
        pack(LOCAL), pack(REMOTE))))
    peer.host.receive(icmp_packet(icmpv6.destination_unreachable(code, quote_of(sent))), 0.0)
    assert peer.state is State.SYN_SENT
    assert [e.what for e in peer.sink.of(AppEvent)] == ["soft_error"]
    peer.fire()
    peer.expect("S", seq=peer.iss, options=IPV6.syn_opts)  # still retrying
    while peer.state is not State.CLOSED:
        peer.fire()
    err = peer.c().error
    assert type(err) is error
    assert isinstance(err, OSError) and err.errno == (
        errno.ECONNREFUSED if code == icmpv6.PORT_UNREACH else errno.EHOSTUNREACH)


def test_without_a_soft_error_the_timeout_is_a_timeout() -> None:
    peer = syn_sent()
    while peer.state is not State.CLOSED:
        peer.fire()
    assert isinstance(peer.c().error, TimeoutError)


# ------------------------------------------------------------------------------------ what it sends


def test_flow_label_is_one_per_connection_and_hop_limit_64() -> None:
    peer = listening()
    labels: dict[int, set[int]] = {}
    for port in (40000, 40001):
        seg = TcpSegment(port, LOCAL_PORT, 1000, 0, Flags.SYN, 65535, b"", (Mss(1440),))
        for _ in range(2):  # a retransmitted SYN: same flow, same label
            peer.host.receive(tcp_packet(peer, seg), 0.0)
        for raw in peer.host.take_packets():
            ip = parse_ipv6(raw)
            assert ip.hop_limit == 64
            labels.setdefault(port, set()).add(ip.flow_label)
    assert all(len(v) == 1 and 0 not in v for v in labels.values())
    assert labels[40000] != labels[40001]


def test_mutated_packets_never_raise_and_leave_the_connection_working() -> None:
    """Random octets of a good IPv6 segment (fixed header, an extension header, TCP) changed or
    cut: every packet is processed without raising; the connection then still works."""
    peer = established()
    rng = random.Random(6)
    seg = TcpSegment(REMOTE_PORT, LOCAL_PORT, peer.seq, peer.ack, Flags.ACK, 100, b"x" * 20)
    dest_opts = bytes((NH_TCP, 0, 1, 4, 0, 0, 0, 0))
    good = build_ipv6(IPv6Packet(REMOTE, LOCAL, NH_DEST_OPTS,
                                 dest_opts + build_tcp(seg, pack(REMOTE), pack(LOCAL))))
    for _ in range(1000):
        raw = bytearray(good)
        for _ in range(rng.randrange(1, 6)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        if rng.random() < 0.3:
            del raw[rng.randrange(len(raw)):]
        peer.host.receive(bytes(raw), peer.now)
    for raw_out in peer.host.take_packets():
        parse_ipv6(raw_out)  # whatever came out (RSTs, ACKs, Parameter Problems) is well formed
    assert sum(peer.host.counters.values()) >= 900
    assert peer.state is State.ESTABLISHED
    delivered = peer.app_recv()  # mutations that spare what the checksums cover deliver the data
    assert delivered in (b"", b"x" * 20)
    peer.seq += len(delivered)
    peer.send("P.", payload=b"ok")
    [ack] = peer.expect_many(1)
    assert (ack.flags, ack.ack) == (Flags.ACK, peer.seq)
    assert peer.app_recv() == b"ok"
