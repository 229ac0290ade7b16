"""IPv4 header (RFC 791 section 3.1). Options are skipped on parse and never built."""

from __future__ import annotations

import functools
import socket
import struct
from dataclasses import dataclass

from stack.checksum import address_pair_sum, internet_checksum
from stack.errors import ParseError

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17

HEADER = struct.Struct("!BBHHHBBH4s4s")
MIN_HEADER_LEN = 20
_FLAG_DF = 0x4000
_FLAG_MF = 0x2000
_OFFSET_MASK = 0x1FFF


@dataclass(slots=True)
class IPv4Packet:
    src: str
    dst: str
    protocol: int
    payload: bytes
    ttl: int = 64
    ident: int = 0
    tos: int = 0
    dont_fragment: bool = True
    more_fragments: bool = False
    fragment_offset: int = 0  # in 8-octet units, as on the wire

    @property
    def is_fragment(self) -> bool:
        return self.more_fragments or self.fragment_offset != 0


@functools.lru_cache(maxsize=1024)
def pack_addr(addr: str) -> bytes:
    """"10.0.0.1" -> b"\\n\\x00\\x00\\x01" (cached: a host sees few distinct addresses)."""
    return socket.inet_aton(addr)


@functools.lru_cache(maxsize=1024)
def unpack_addr(b: bytes) -> str:
    return socket.inet_ntoa(b)


def peek_dst(data: bytes | memoryview) -> bytes:
    """The four raw destination-address bytes, without parsing or verifying the rest."""
    if len(data) < MIN_HEADER_LEN:
        raise ParseError("ip_short", f"{len(data)} bytes")
    return bytes(data[16:20])


def parse_ipv4(data: bytes | memoryview) -> IPv4Packet:
    """Parse one IPv4 packet. Bytes beyond the total length (link padding) are ignored."""
    n = len(data)
    if n < MIN_HEADER_LEN:
        raise ParseError("ip_short", f"{n} bytes")
    ver_ihl, tos, total, ident, frag, ttl, proto, checksum, src, dst = HEADER.unpack_from(data)
    if ver_ihl >> 4 != 4:
        raise ParseError("ip_version", str(ver_ihl >> 4))
    hlen = (ver_ihl & 0x0F) * 4
    if hlen < MIN_HEADER_LEN:
        raise ParseError("ip_ihl", str(hlen))
    if total < hlen or total > n:
        raise ParseError("ip_length", f"total {total}, header {hlen}, have {n}")
    if hlen == MIN_HEADER_LEN:
        # The sum of the header's words from the fields just unpacked, checksum included: a
        # correct header sums to a multiple of 0xffff (RFC 1071; never 0, the version is 4).
        valid = (_words_sum(ver_ihl, tos, total, ident, frag, ttl, proto, src, dst) + checksum) % 0xFFFF == 0
    else:
        valid = internet_checksum(data[:hlen]) == 0
    if not valid:
        raise ParseError("ip_checksum")
    # The fields in their order: with keywords, building it costs three times as much (every packet).
    return IPv4Packet(unpack_addr(src), unpack_addr(dst), proto, bytes(data[hlen:total]), ttl, ident, tos,
                      bool(frag & _FLAG_DF), bool(frag & _FLAG_MF), frag & _OFFSET_MASK)


def _words_sum(ver_ihl: int, tos: int, total: int, ident: int, frag: int, ttl: int, protocol: int,
               src: bytes, dst: bytes) -> int:
    """The sum of a 20-octet header's 16-bit words but the checksum's, from its fields (RFC 1071:
    congruent modulo 0xffff to the one's-complement sum). Positive: ver_ihl is never 0 here."""
    return (ver_ihl << 8 | tos) + total + ident + frag + (ttl << 8 | protocol) + address_pair_sum(src, dst)


def ipv4_header(src: bytes, dst: bytes, protocol: int, total: int, ident: int, ttl: int = 64,
                tos: int = 0, frag: int = _FLAG_DF) -> bytes:
    """A 20-octet header (no options; DF set unless `frag`, the flags and offset field, says
    otherwise) with its checksum, for packed addresses: packed once, the checksum summed from the
    fields (every segment sent)."""
    csum = -_words_sum(0x45, tos, total, ident, frag, ttl, protocol, src, dst) % 0xFFFF  # ~sum; 0, not -0
    return HEADER.pack(0x45, tos, total, ident, frag, ttl, protocol, csum, src, dst)


def build_ipv4(pkt: IPv4Packet) -> bytes:
    """Serialize with a 20-octet header and a correct header checksum."""
    frag = pkt.fragment_offset & _OFFSET_MASK
    if pkt.dont_fragment:
        frag |= _FLAG_DF
    if pkt.more_fragments:
        frag |= _FLAG_MF
    total = MIN_HEADER_LEN + len(pkt.payload)
    header = ipv4_header(pack_addr(pkt.src), pack_addr(pkt.dst), pkt.protocol, total, pkt.ident, pkt.ttl,
                         pkt.tos, frag)
    return header + pkt.payload
