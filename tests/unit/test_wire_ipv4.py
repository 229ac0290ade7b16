"""IPv4 codec: round trips, every error reason, options skipped, truncation and fuzz."""

from __future__ import annotations

import dataclasses
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stack.checksum import internet_checksum
from stack.errors import ParseError
from stack.wire.ipv4 import (
    HEADER,
    PROTO_ICMP,
    PROTO_TCP,
    PROTO_UDP,
    IPv4Packet,
    build_ipv4,
    ipv4_header,
    pack_addr,
    parse_ipv4,
    peek_dst,
    unpack_addr,
)

SETTINGS = settings(max_examples=200, derandomize=True, deadline=None)

addresses = st.integers(0, 0xFFFFFFFF).map(lambda n: unpack_addr(n.to_bytes(4, "big")))
packets = st.builds(
    IPv4Packet,
    src=addresses,
    dst=addresses,
    protocol=st.integers(0, 255),
    payload=st.binary(max_size=100),
    ttl=st.integers(0, 255),
    ident=st.integers(0, 0xFFFF),
    tos=st.integers(0, 255),
    dont_fragment=st.booleans(),
    more_fragments=st.booleans(),
    fragment_offset=st.integers(0, 0x1FFF),
)


def reason(data: bytes) -> str:
    with pytest.raises(ParseError) as info:
        parse_ipv4(data)
    return info.value.reason


def with_checksum(packet: bytearray) -> bytearray:
    """Recompute the header checksum over what the IHL field says is the header."""
    hlen = min(max(20, (packet[0] & 0x0F) * 4), len(packet))
    struct.pack_into("!H", packet, 10, 0)
    struct.pack_into("!H", packet, 10, internet_checksum(packet[:hlen]))
    return packet


@SETTINGS
@given(packets)
def test_round_trip(pkt: IPv4Packet) -> None:
    wire = build_ipv4(pkt)
    assert len(wire) == 20 + len(pkt.payload)
    assert internet_checksum(wire[:20]) == 0
    assert parse_ipv4(wire) == pkt
    assert parse_ipv4(memoryview(wire)) == pkt
    assert peek_dst(wire) == pack_addr(pkt.dst)


def test_known_bytes() -> None:
    pkt = IPv4Packet("192.168.0.1", "192.168.0.199", PROTO_UDP, bytes(95), ident=0, ttl=64)
    # The checksum of this textbook header is b861.
    assert build_ipv4(pkt)[:20].hex() == "450000730000400040 11b861c0a80001c0a800c7".replace(" ", "")


def test_constants() -> None:
    assert (PROTO_ICMP, PROTO_TCP, PROTO_UDP) == (1, 6, 17)


def test_is_fragment() -> None:
    base = IPv4Packet("10.0.0.1", "10.0.0.2", PROTO_TCP, b"")
    assert not base.is_fragment
    assert dataclasses.replace(base, more_fragments=True).is_fragment
    assert dataclasses.replace(base, fragment_offset=185).is_fragment
    assert not dataclasses.replace(base, dont_fragment=False).is_fragment


def test_trailing_bytes_beyond_total_length_are_ignored() -> None:
    pkt = IPv4Packet("10.0.0.1", "10.0.0.2", PROTO_TCP, b"abc")
    assert parse_ipv4(build_ipv4(pkt) + b"\x00" * 7) == pkt


def test_options_are_skipped() -> None:
    wire = bytearray(build_ipv4(IPv4Packet("10.0.0.1", "10.0.0.2", PROTO_ICMP, b"payload")))
    wire[0] = 0x46
    wire[2:4] = (len(wire) + 4).to_bytes(2, "big")
    wire[20:20] = b"\x01\x01\x01\x00"  # NOP NOP NOP EOL
    pkt = parse_ipv4(bytes(with_checksum(wire)))
    assert pkt.payload == b"payload" and pkt.protocol == PROTO_ICMP


def test_errors() -> None:
    good = build_ipv4(IPv4Packet("10.0.0.1", "10.0.0.2", PROTO_TCP, b"abcd"))
    assert reason(good[:19]) == "ip_short"
    v6 = bytearray(good)
    v6[0] = 0x65
    assert reason(bytes(with_checksum(v6))) == "ip_version"
    ihl = bytearray(good)
    ihl[0] = 0x44
    assert reason(bytes(with_checksum(ihl))) == "ip_ihl"
    too_long = bytearray(good)
    too_long[2:4] = (len(good) + 1).to_bytes(2, "big")
    assert reason(bytes(with_checksum(too_long))) == "ip_length"
    below_header = bytearray(good)
    below_header[2:4] = (19).to_bytes(2, "big")
    assert reason(bytes(with_checksum(below_header))) == "ip_length"
    ihl_past_total = bytearray(good)
    ihl_past_total[0] = 0x46
    ihl_past_total[2:4] = (22).to_bytes(2, "big")
    assert reason(bytes(ihl_past_total)) == "ip_length"
    corrupt = bytearray(good)
    corrupt[8] ^= 0x01  # TTL
    assert reason(bytes(corrupt)) == "ip_checksum"
    with pytest.raises(ParseError, match="ip_short"):
        peek_dst(good[:19])


def test_addresses() -> None:
    assert pack_addr("10.0.0.1") == b"\x0a\x00\x00\x01"
    assert unpack_addr(b"\xc0\xa8\x00\xc7") == "192.168.0.199"
    with pytest.raises(OSError):
        pack_addr("not an address")


@SETTINGS
@given(packets)
def test_every_prefix_raises_parse_error(pkt: IPv4Packet) -> None:
    wire = build_ipv4(pkt)
    for n in range(len(wire)):
        with pytest.raises(ParseError):
            parse_ipv4(wire[:n])


@settings(max_examples=500, derandomize=True, deadline=None)
@given(st.binary(max_size=80), st.booleans())
def test_fuzz(data: bytes, fix_checksum: bool) -> None:
    """Arbitrary bytes parse or raise ParseError; fixing the version and checksum reaches the rest."""
    if fix_checksum and len(data) >= 20:
        data = bytes(with_checksum(bytearray(bytes((0x40 | data[0] & 0x0F,)) + data[1:])))
    try:
        pkt = parse_ipv4(data)
    except ParseError:
        pass
    else:
        assert len(pkt.payload) <= len(data) - 20


raw_addresses = st.binary(min_size=4, max_size=4)


def _reference_header(src: bytes, dst: bytes, protocol: int, total: int, ident: int, ttl: int,
                      tos: int) -> bytes:
    header = HEADER.pack(0x45, tos, total, ident, 0x4000, ttl, protocol, 0, src, dst)
    return header[:10] + internet_checksum(header).to_bytes(2, "big") + header[12:]


@SETTINGS
@given(raw_addresses, raw_addresses, st.integers(0, 255), st.integers(20, 0xFFFF), st.integers(0, 0xFFFF),
       st.integers(0, 255), st.integers(0, 255))
def test_a_built_header_has_the_checksum_of_its_octets(src: bytes, dst: bytes, protocol: int, total: int,
                                                       ident: int, ttl: int, tos: int) -> None:
    """ipv4_header sums the fields, not the packed octets: the same checksum, also where the
    words sum to a multiple of 0xffff (0x0000 then, as internet_checksum gives, never 0xffff)."""
    args = (src, dst, protocol, total, ident, ttl, tos)
    assert ipv4_header(*args) == _reference_header(*args)
    # The ident that makes the other words sum to a multiple of 0xffff: the checksum with ident 0.
    zero_sum = (*args[:4], int.from_bytes(_reference_header(src, dst, protocol, total, 0, ttl, tos)[10:12]),
                ttl, tos)
    header = ipv4_header(*zero_sum)  # type: ignore[arg-type]
    assert header == _reference_header(*zero_sum) and header[10:12] == bytes(2)  # type: ignore[arg-type]


@SETTINGS
@given(raw_addresses, raw_addresses, st.integers(20, 0xFFFF), st.integers(0, 0xFFFF),
       st.integers(0, 0xFFFF))
def test_a_header_is_accepted_exactly_when_its_octets_sum_to_zero(src: bytes, dst: bytes, total: int,
                                                                    ident: int, csum: int) -> None:
    """parse_ipv4 checks a 20-octet header from its unpacked fields; it agrees with the RFC 1071
    sum of the octets for any checksum field, the right one and the other zero (0xffff) too."""
    good = _reference_header(src, dst, PROTO_TCP, total, ident, 64, 0)
    for field in (csum, int.from_bytes(good[10:12], "big"), 0xFFFF - int.from_bytes(good[10:12], "big")):
        header = good[:10] + field.to_bytes(2, "big") + good[12:]
        packet = header + bytes(total - 20)
        expected_ok = internet_checksum(header) == 0
        if expected_ok:
            assert parse_ipv4(packet).ident == ident
        else:
            assert reason(packet) == "ip_checksum"
