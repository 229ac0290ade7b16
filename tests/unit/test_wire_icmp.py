"""ICMP codec: round trips, echo and RFC 1191 helpers, errors, scapy as an oracle, fuzz."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stack.checksum import internet_checksum
from stack.errors import ParseError
from stack.wire.icmp import (
    DEST_UNREACH,
    ECHO_REPLY,
    ECHO_REQUEST,
    FRAG_NEEDED,
    PORT_UNREACH,
    TIME_EXCEEDED,
    IcmpMessage,
    build_icmp,
    echo_reply_for,
    frag_needed,
    next_hop_mtu,
    parse_icmp,
    quoted_packet,
)
from stack.wire.ipv4 import PROTO_ICMP, PROTO_TCP, IPv4Packet, build_ipv4, parse_ipv4

SETTINGS = settings(max_examples=200, derandomize=True, deadline=None)

messages = st.builds(
    IcmpMessage,
    type=st.integers(0, 255),
    code=st.integers(0, 255),
    rest=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=100),
)


def reason(data: bytes) -> str:
    with pytest.raises(ParseError) as info:
        parse_icmp(data)
    return info.value.reason


def test_constants() -> None:
    assert (ECHO_REPLY, DEST_UNREACH, ECHO_REQUEST, TIME_EXCEEDED) == (0, 3, 8, 11)
    assert (PORT_UNREACH, FRAG_NEEDED) == (3, 4)


@SETTINGS
@given(messages)
def test_round_trip(msg: IcmpMessage) -> None:
    wire = build_icmp(msg)
    assert internet_checksum(wire) == 0
    assert parse_icmp(wire) == msg
    assert parse_icmp(memoryview(wire)) == msg


def test_echo_reply_keeps_identifier_sequence_and_data() -> None:
    request = parse_icmp(build_icmp(IcmpMessage(ECHO_REQUEST, 0, 0x12340007, b"ping data")))
    reply = echo_reply_for(request)
    assert reply == IcmpMessage(ECHO_REPLY, 0, 0x12340007, b"ping data")
    wire = build_icmp(reply)
    assert wire[:2] == b"\x00\x00" and wire[4:8] == bytes.fromhex("12340007")


def test_frag_needed_quotes_header_and_eight_octets() -> None:
    original = build_ipv4(IPv4Packet("10.0.0.1", "10.0.0.2", PROTO_TCP, bytes(range(100))))
    msg = parse_icmp(build_icmp(frag_needed(1400, original)))
    assert (msg.type, msg.code) == (DEST_UNREACH, FRAG_NEEDED)
    assert msg.rest == 1400 and next_hop_mtu(msg) == 1400  # RFC 1191: low 16 bits, unused high
    assert msg.payload == original[:28]
    assert quoted_packet(msg) == original[:28]
    assert quoted_packet(msg)[20:] == bytes(range(8))


def test_frag_needed_of_a_packet_with_options_quotes_the_whole_header() -> None:
    original = bytes((0x46,)) + bytes(23) + bytes(range(20))
    assert frag_needed(576, original).payload == original[:32]


def test_quoted_packet_cuts_extra_quoted_octets() -> None:
    original = build_ipv4(IPv4Packet("10.0.0.1", "10.0.0.2", PROTO_TCP, bytes(range(50))))
    msg = IcmpMessage(DEST_UNREACH, PORT_UNREACH, 0, original)  # a router quoting everything
    assert quoted_packet(msg) == original[:28]
    assert quoted_packet(IcmpMessage(DEST_UNREACH, PORT_UNREACH)) == b""


def test_next_hop_mtu_ignores_the_unused_high_half() -> None:
    assert next_hop_mtu(IcmpMessage(DEST_UNREACH, FRAG_NEEDED, 0xABCD05DC)) == 1500


def test_errors() -> None:
    assert reason(b"\x08\x00\x00\x00\x00\x00\x00") == "icmp_short"
    assert reason(b"") == "icmp_short"
    wire = bytearray(build_icmp(IcmpMessage(ECHO_REQUEST, 0, 1, b"abc")))
    wire[-1] ^= 0xFF
    assert reason(bytes(wire)) == "icmp_checksum"


def test_every_header_prefix_raises_parse_error() -> None:
    wire = build_icmp(IcmpMessage(ECHO_REQUEST, 0, 0x00010001, b"abcdefgh"))
    # ICMP has no length field: shorter than the header is "icmp_short"; a cut inside this
    # payload breaks the checksum.
    for n in range(len(wire)):
        with pytest.raises(ParseError):
            parse_icmp(wire[:n])


@settings(max_examples=500, derandomize=True, deadline=None)
@given(st.binary(max_size=40), st.booleans())
def test_fuzz(data: bytes, fix_checksum: bool) -> None:
    if fix_checksum and len(data) >= 8:
        data = data[:2] + internet_checksum(data[:2] + b"\x00\x00" + data[4:]).to_bytes(2, "big") + data[4:]
    try:
        msg = parse_icmp(data)
    except ParseError:
        assert not fix_checksum or len(data) < 8
    else:
        assert build_icmp(msg) == data


@SETTINGS
@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=64), st.booleans())
def test_echo_same_bytes_as_scapy(ident: int, seq: int, data: bytes, request: bool) -> None:
    scapy_inet = pytest.importorskip("scapy.layers.inet")
    kind = ECHO_REQUEST if request else ECHO_REPLY
    theirs = bytes(
        scapy_inet.IP(src="10.0.0.1", dst="10.0.0.2", id=7, flags="DF")
        / scapy_inet.ICMP(type=kind, id=ident, seq=seq)
        / data
    )
    icmp = build_icmp(IcmpMessage(kind, 0, ident << 16 | seq, data))
    ours = build_ipv4(IPv4Packet("10.0.0.1", "10.0.0.2", PROTO_ICMP, icmp, ident=7))
    assert ours == theirs
    assert parse_icmp(parse_ipv4(theirs).payload) == IcmpMessage(kind, 0, ident << 16 | seq, data)
