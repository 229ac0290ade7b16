"""IPv6 codec (RFC 8200): round trips, extension-header walking, every truncation, fuzz, and
byte-identical encoding against scapy for IPv6/TCP and IPv6/ICMPv6 packets."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stack.errors import ParseError
from stack.inet import pack
from stack.wire import icmpv6
from stack.wire.ipv6 import (
    ERRONEOUS_HEADER_FIELD,
    NH_DEST_OPTS,
    NH_FRAGMENT,
    NH_HOP_BY_HOP,
    NH_ICMPV6,
    NH_NONE,
    NH_ROUTING,
    NH_TCP,
    UNRECOGNIZED_NEXT_HEADER,
    UNRECOGNIZED_OPTION,
    IPv6Packet,
    ParameterProblem,
    build_ipv6,
    decrement_hop_limit,
    parse_ipv6,
    peek_dst,
)
from stack.wire.tcp import (
    Flags,
    Mss,
    Nop,
    SackPermitted,
    TcpSegment,
    Timestamps,
    WindowScale,
    build_tcp,
    parse_tcp,
)

SETTINGS = settings(max_examples=200, derandomize=True, deadline=None)
A, B = "fd00::1", "fd00::2"

addresses = st.integers(0, 2**128 - 1).map(lambda n: str(ipaddress.IPv6Address(n)))
packets = st.builds(
    IPv6Packet,
    src=addresses,
    dst=addresses,
    next_header=st.sampled_from([NH_TCP, NH_ICMPV6, 17, 253]),
    payload=st.binary(max_size=100),
    hop_limit=st.integers(0, 255),
    traffic_class=st.integers(0, 255),
    flow_label=st.integers(0, 0xFFFFF),
)


def ext(nh: int, body: bytes) -> bytes:
    """An extension header (next header, length in 8-octet units beyond the first 8, body)."""
    assert (len(body) + 2) % 8 == 0
    return bytes((nh, (len(body) + 2) // 8 - 1)) + body


def with_chain(first: int, chain: bytes, payload: bytes = b"data") -> bytes:
    base = build_ipv6(IPv6Packet(A, B, first, chain + payload))
    return base


def problem(data: bytes) -> ParameterProblem:
    with pytest.raises(ParameterProblem) as info:
        parse_ipv6(data)
    return info.value


def reason(data: bytes) -> str:
    with pytest.raises(ParseError) as info:
        parse_ipv6(data)
    return info.value.reason


@SETTINGS
@given(packets)
def test_round_trip(pkt: IPv6Packet) -> None:
    wire = build_ipv6(pkt)
    assert len(wire) == 40 + len(pkt.payload)
    assert parse_ipv6(wire) == pkt
    assert parse_ipv6(memoryview(wire)) == pkt
    assert peek_dst(wire) == pack(pkt.dst)


@SETTINGS
@given(packets)
def test_every_prefix_raises_parse_error(pkt: IPv6Packet) -> None:
    wire = build_ipv6(pkt)
    for n in range(len(wire)):
        with pytest.raises(ParseError):
            parse_ipv6(wire[:n])


def test_errors() -> None:
    good = build_ipv6(IPv6Packet(A, B, NH_TCP, b"x" * 20))
    assert reason(good[:39]) == "ip6_short"
    assert reason(b"\x45" + good[1:]) == "ip6_version"
    longer = bytearray(good)
    longer[4:6] = (21).to_bytes(2, "big")  # payload length one past the packet
    assert reason(bytes(longer)) == "ip6_length"


def test_trailing_bytes_beyond_payload_length_are_ignored() -> None:
    wire = build_ipv6(IPv6Packet(A, B, NH_TCP, b"abc"))
    assert parse_ipv6(wire + b"\x00" * 7).payload == b"abc"


def test_known_options_and_headers_are_skipped() -> None:
    """Hop-by-Hop with Pad1 and PadN, Routing with Segments Left 0, Destination Options with an
    unknown skippable option (type 0x1e: high bits 00), an atomic fragment: TCP data after them."""
    chain = (
        ext(NH_ROUTING, b"\x00" + b"\x01\x03\x00\x00\x00")  # Pad1, PadN of 3 data octets
        + ext(NH_DEST_OPTS, bytes((0, 0, 0, 0)) + b"\x00\x00")  # routing type 0, segments left 0
        + ext(NH_FRAGMENT, b"\x1e\x02\xaa\xbb\x01\x00")  # an option to skip, PadN of 0
        + bytes((NH_TCP, 0, 0, 0, 0, 0, 0, 1))  # fragment: offset 0, M 0 (atomic)
    )
    pkt = parse_ipv6(with_chain(NH_HOP_BY_HOP, chain))
    assert pkt.next_header == NH_TCP
    assert pkt.payload == b"data"
    assert pkt.extensions == (NH_HOP_BY_HOP, NH_ROUTING, NH_DEST_OPTS, NH_FRAGMENT)
    assert not pkt.is_fragment
    assert pkt.next_header_offset == 40 + 8 + 8 + 8  # the fragment header's Next Header field


def test_a_long_chain_of_destination_options_is_walked() -> None:
    chain = b"".join(ext(NH_DEST_OPTS, bytes(6)) for _ in range(99)) + ext(NH_TCP, bytes(6))
    pkt = parse_ipv6(with_chain(NH_DEST_OPTS, chain))
    assert (pkt.next_header, pkt.payload, len(pkt.extensions)) == (NH_TCP, b"data", 100)


def test_a_fragment_is_marked_not_reassembled() -> None:
    first = bytes((NH_TCP, 0, 0, 1, 0, 0, 0, 9))  # offset 0, M 1
    later = bytes((NH_TCP, 0, 0, 0x10, 0, 0, 0, 9))  # offset 2 (16 octets), M 0
    for header, offset, more in ((first, 0, True), (later, 2, False)):
        pkt = parse_ipv6(with_chain(NH_FRAGMENT, header))
        assert pkt.is_fragment and (pkt.fragment_offset, pkt.more_fragments) == (offset, more)


def test_no_next_header_has_no_data() -> None:
    pkt = parse_ipv6(with_chain(NH_NONE, b"", b"ignored"))
    assert (pkt.next_header, pkt.payload) == (NH_NONE, b"")


def test_hop_by_hop_anywhere_but_first_is_a_parameter_problem() -> None:
    e = problem(with_chain(NH_DEST_OPTS, ext(NH_HOP_BY_HOP, bytes(6)) + ext(NH_TCP, bytes(6))))
    assert (e.code, e.pointer) == (UNRECOGNIZED_NEXT_HEADER, 40)  # the field that named it


def test_routing_header_with_segments_left_is_a_parameter_problem() -> None:
    e = problem(with_chain(NH_ROUTING, ext(NH_TCP, bytes((4, 1, 0, 0, 0, 0)))))
    assert (e.code, e.pointer) == (ERRONEOUS_HEADER_FIELD, 42)  # the Routing Type (RFC 8200 4.4)


@pytest.mark.parametrize(
    ("kind", "outcome"),
    [(0x1E, "skip"), (0x5E, "discard"), (0x9E, "problem"), (0xDE, "problem")],
)
def test_unknown_option_follows_its_two_high_bits(kind: int, outcome: str) -> None:
    """RFC 8200 4.2: 00 skip, 01 discard, 10 discard and Parameter Problem, 11 the same unless the
    destination is multicast."""
    raw = with_chain(NH_DEST_OPTS, ext(NH_TCP, bytes((1, 0, kind, 2, 0, 0))))
    if outcome == "skip":
        assert parse_ipv6(raw).payload == b"data"
    elif outcome == "discard":
        assert reason(raw) == "ip6_option"
    else:
        e = problem(raw)
        assert (e.code, e.pointer) == (UNRECOGNIZED_OPTION, 44)
    multicast = bytearray(raw)
    multicast[24] = 0xFF
    if kind == 0xDE:
        assert reason(bytes(multicast)) == "ip6_option"


def test_extension_header_past_the_payload_is_dropped() -> None:
    raw = with_chain(NH_DEST_OPTS, bytes((NH_TCP, 3, 0, 0, 0, 0, 0, 0)), b"")  # claims 32 octets
    assert reason(raw) == "ip6_ext_short"
    raw = with_chain(NH_DEST_OPTS, bytes((NH_TCP, 0, 1, 9, 0, 0, 0, 0)), b"")  # PadN past the end
    assert reason(raw) == "ip6_option_length"


def test_every_prefix_of_a_chain_raises_parse_error() -> None:
    chain = ext(NH_DEST_OPTS, b"\x01\x04\x00\x00\x00\x00") + ext(NH_TCP, bytes(6))
    wire = with_chain(NH_HOP_BY_HOP, chain)
    for n in range(len(wire)):
        with pytest.raises(ParseError):
            parse_ipv6(wire[:n])


@settings(max_examples=500, derandomize=True, deadline=None)
@given(st.binary(max_size=120), st.booleans())
def test_fuzz(data: bytes, fix_header: bool) -> None:
    """Arbitrary bytes parse or raise ParseError; fixing version and payload length reaches the
    extension-header walk."""
    if fix_header and len(data) >= 40:
        data = bytes((0x60 | data[0] & 0x0F,)) + data[1:4] + (len(data) - 40).to_bytes(2, "big") + data[6:]
    try:
        pkt = parse_ipv6(data)
    except ParseError:
        pass
    else:
        assert len(pkt.payload) <= len(data) - 40


def test_decrement_hop_limit() -> None:
    wire = build_ipv6(IPv6Packet(A, B, NH_TCP, b"x", hop_limit=2))
    assert parse_ipv6(decrement_hop_limit(wire)) == dataclasses.replace(parse_ipv6(wire), hop_limit=1)


# ------------------------------------------------------------------------- scapy as the oracle

SYN_OPTS = (Mss(1440), SackPermitted(), Timestamps(100, 0), Nop(), WindowScale(7))


@SETTINGS
@given(
    st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 0xFFFFF),
    st.integers(1, 255), st.binary(max_size=64),
)
def test_tcp_same_bytes_as_scapy(seqno: int, ack: int, label: int, hops: int, data: bytes) -> None:
    """IPv6 header and TCP with the IPv6 pseudo-header checksum (RFC 8200 8.1), as scapy builds."""
    inet6 = pytest.importorskip("scapy.layers.inet6")
    inet = pytest.importorskip("scapy.layers.inet")
    theirs = bytes(
        inet6.IPv6(src=A, dst=B, fl=label, hlim=hops)
        / inet.TCP(sport=40000, dport=80, seq=seqno, ack=ack, flags="PA", window=512,
                   options=[("MSS", 1440), ("SAckOK", b""), ("Timestamp", (100, 0)), ("NOP", None),
                            ("WScale", 7)])
        / data
    )
    seg = TcpSegment(40000, 80, seqno, ack, Flags.PSH | Flags.ACK, 512, data, SYN_OPTS)
    ours = build_ipv6(IPv6Packet(A, B, NH_TCP, build_tcp(seg, pack(A), pack(B)), hops, flow_label=label))
    assert ours == theirs
    back = parse_ipv6(theirs)
    assert parse_tcp(back.payload, pack(A), pack(B)) == seg


@SETTINGS
@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=64), st.booleans())
def test_icmpv6_echo_same_bytes_as_scapy(ident: int, seqno: int, data: bytes, request: bool) -> None:
    inet6 = pytest.importorskip("scapy.layers.inet6")
    kind = icmpv6.ECHO_REQUEST if request else icmpv6.ECHO_REPLY
    layer = inet6.ICMPv6EchoRequest if request else inet6.ICMPv6EchoReply
    theirs = bytes(inet6.IPv6(src=A, dst=B) / layer(id=ident, seq=seqno, data=data))
    msg = icmpv6.Icmpv6Message(kind, 0, ident << 16 | seqno, data)
    ours = build_ipv6(IPv6Packet(A, B, NH_ICMPV6, icmpv6.build_icmpv6(msg, pack(A), pack(B))))
    assert ours == theirs
    assert icmpv6.parse_icmpv6(parse_ipv6(theirs).payload, pack(A), pack(B)) == msg


def test_icmpv6_errors_same_bytes_as_scapy() -> None:
    """Packet Too Big, Parameter Problem and Destination Unreachable quoting a packet."""
    inet6 = pytest.importorskip("scapy.layers.inet6")
    invoking = build_ipv6(IPv6Packet(B, A, NH_TCP, bytes(range(200))))
    cases = [
        (icmpv6.packet_too_big(1280, invoking), inet6.ICMPv6PacketTooBig(mtu=1280)),
        (icmpv6.parameter_problem(1, 6, invoking), inet6.ICMPv6ParamProblem(code=1, ptr=6)),
        (icmpv6.destination_unreachable(4, invoking), inet6.ICMPv6DestUnreach(code=4)),
    ]
    for msg, layer in cases:
        theirs = bytes(inet6.IPv6(src=A, dst=B) / layer / invoking)
        ours = build_ipv6(IPv6Packet(A, B, NH_ICMPV6, icmpv6.build_icmpv6(msg, pack(A), pack(B))))
        assert ours == theirs, msg.type


def test_icmpv6_quote_fits_the_minimum_mtu() -> None:
    huge = build_ipv6(IPv6Packet(B, A, NH_TCP, bytes(3000)))
    msg = icmpv6.packet_too_big(1280, huge)
    assert 40 + 8 + len(msg.payload) == 1280  # RFC 4443 2.4 (c)


def test_icmpv6_checksum_and_short() -> None:
    body = bytearray(icmpv6.build_icmpv6(icmpv6.Icmpv6Message(128, 0, 1, b"x"), pack(A), pack(B)))
    with pytest.raises(ParseError, match="icmp6_short"):
        icmpv6.parse_icmpv6(bytes(body[:7]), pack(A), pack(B))
    with pytest.raises(ParseError, match="icmp6_checksum"):
        icmpv6.parse_icmpv6(bytes(body), pack("fd00::9"), pack(B))  # the pseudo-header counts
    body[-1] ^= 1
    with pytest.raises(ParseError, match="icmp6_checksum"):
        icmpv6.parse_icmpv6(bytes(body), pack(A), pack(B))


@pytest.mark.parametrize(("v6", "v4"), [
    # RFC 7915 section 5.2, ICMPv6 to ICMPv4: Destination Unreachable codes 0 to 4...
    ((icmpv6.DEST_UNREACH, icmpv6.NO_ROUTE), (3, 1)),
    ((icmpv6.DEST_UNREACH, icmpv6.ADMIN_PROHIBITED), (3, 10)),
    ((icmpv6.DEST_UNREACH, icmpv6.BEYOND_SCOPE), (3, 1)),
    ((icmpv6.DEST_UNREACH, icmpv6.ADDRESS_UNREACH), (3, 1)),
    ((icmpv6.DEST_UNREACH, icmpv6.PORT_UNREACH), (3, 3)),
    ((icmpv6.DEST_UNREACH, icmpv6.SOURCE_POLICY), None),  # other codes: dropped
    # ... Time Exceeded keeps its code; Parameter Problem 0 stays one, 1 is protocol unreachable.
    ((icmpv6.TIME_EXCEEDED, 0), (11, 0)),
    ((icmpv6.TIME_EXCEEDED, 1), (11, 1)),
    ((icmpv6.PARAM_PROBLEM, ERRONEOUS_HEADER_FIELD), (12, 0)),
    ((icmpv6.PARAM_PROBLEM, UNRECOGNIZED_NEXT_HEADER), (3, 2)),
    ((icmpv6.PARAM_PROBLEM, UNRECOGNIZED_OPTION), None),
    ((icmpv6.PACKET_TOO_BIG, 0), None),  # path MTU discovery's, not an error to TCP
    ((icmpv6.ECHO_REQUEST, 0), None),
])
def test_icmpv6_errors_translate_to_icmpv4_as_rfc_7915_says(v6: tuple[int, int],
                                                           v4: tuple[int, int] | None) -> None:
    assert icmpv6.as_icmpv4(*v6) == v4
