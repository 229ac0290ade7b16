"""IPv6 (RFC 8200): the fixed header, and the extension headers a destination walks past.

`parse_ipv6` returns the upper-layer protocol and data after the extension headers, walking them
as RFC 8200 section 4 asks of a destination node:

- Hop-by-Hop Options (only right after the fixed header, 4.3) and Destination Options (4.6):
  each option's two high-order type bits say what to do with an option we do not know (4.2):
  skip it, discard the packet, or discard it and send a Parameter Problem.
- Routing (4.4): with Segments Left 0 it is ignored; otherwise (we know no routing type) the
  packet is discarded with a Parameter Problem pointing at the Routing Type.
- Fragment (4.5): an atomic fragment (offset 0, M 0) is processed as a whole packet (RFC 6946);
  any other fragment comes back marked `is_fragment` for the host to drop and count: the stack
  does not reassemble (TCP never needs it: it sizes segments from the path MTU).
- No Next Header (59) ends the chain with no data.

A packet the walk must refuse raises `ParameterProblem` (the host answers it with ICMPv6, RFC 4443
3.4) or `ParseError` (dropped silently). Extension headers are never built: the stack sends none.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from stack.errors import ParseError
from stack.inet import pack, unpack

NH_HOP_BY_HOP = 0
NH_TCP = 6
NH_UDP = 17
NH_ROUTING = 43
NH_FRAGMENT = 44
NH_ICMPV6 = 58
NH_NONE = 59
NH_DEST_OPTS = 60

HEADER = struct.Struct("!IHBB16s16s")  # version/class/flow label, payload length, NH, hop limit
HEADER_LEN = 40
DEFAULT_HOP_LIMIT = 64
_FRAGMENT = struct.Struct("!BBHI")

# Parameter Problem codes (RFC 4443 3.4).
ERRONEOUS_HEADER_FIELD = 0
UNRECOGNIZED_NEXT_HEADER = 1
UNRECOGNIZED_OPTION = 2


class ParameterProblem(ParseError):
    """A packet to discard with an ICMPv6 Parameter Problem: `pointer` is the octet offset, in
    the original packet, of the field that stopped the walk (RFC 4443 3.4)."""

    def __init__(self, reason: str, code: int, pointer: int, detail: str = "") -> None:
        super().__init__(reason, detail or f"code {code} at octet {pointer}")
        self.code = code
        self.pointer = pointer


@dataclass(slots=True)
class IPv6Packet:
    src: str
    dst: str
    next_header: int  # the upper-layer protocol, after any extension headers
    payload: bytes  # the upper-layer data (a fragment's data when is_fragment)
    hop_limit: int = DEFAULT_HOP_LIMIT
    traffic_class: int = 0
    flow_label: int = 0
    extensions: tuple[int, ...] = ()  # the extension headers walked past, in order (on parse)
    next_header_offset: int = 6  # where the field naming `next_header` sits in the packet
    fragment_offset: int = 0  # in 8-octet units, as on the wire
    more_fragments: bool = False

    @property
    def is_fragment(self) -> bool:
        return self.more_fragments or self.fragment_offset != 0


def peek_dst(data: bytes | memoryview) -> bytes:
    """The 16 raw destination-address octets, without parsing or verifying the rest."""
    if len(data) < HEADER_LEN:
        raise ParseError("ip6_short", f"{len(data)} bytes")
    return bytes(data[24:40])


def parse_ipv6(data: bytes | memoryview) -> IPv6Packet:
    """Parse one IPv6 packet (see the module docstring). Octets beyond the payload length (link
    padding) are ignored. Jumbograms (RFC 2675, payload length 0 with a Jumbo option) are not
    supported: their Jumbo option is an unknown option to us."""
    n = len(data)
    if n < HEADER_LEN:
        raise ParseError("ip6_short", f"{n} bytes")
    vtf, plen, nh, hops, src, dst = HEADER.unpack_from(data)
    if vtf >> 28 != 6:
        raise ParseError("ip6_version", str(vtf >> 28))
    end = HEADER_LEN + plen
    if end > n:
        raise ParseError("ip6_length", f"payload length {plen}, have {n - HEADER_LEN}")
    buf = bytes(data[:end])
    multicast_dst = dst[0] == 0xFF
    offset, nh_at = HEADER_LEN, 6
    walked: list[int] = []
    frag_offset, more = 0, False
    while True:
        if nh in (NH_HOP_BY_HOP, NH_DEST_OPTS, NH_ROUTING, NH_FRAGMENT):
            if nh == NH_HOP_BY_HOP and offset != HEADER_LEN:
                # RFC 8200 4.3: Hop-by-Hop must follow the fixed header; elsewhere it is unknown.
                raise ParameterProblem("ip6_hop_by_hop_misplaced", UNRECOGNIZED_NEXT_HEADER, nh_at)
            length = _extension_length(buf, offset, nh, end)
            if nh == NH_ROUTING and buf[offset + 3] != 0:
                raise ParameterProblem("ip6_routing_type", ERRONEOUS_HEADER_FIELD, offset + 2,
                                       f"routing type {buf[offset + 2]}, segments left {buf[offset + 3]}")
            if nh == NH_FRAGMENT:
                _nh, _reserved, frag, _ident = _FRAGMENT.unpack_from(buf, offset)
                frag_offset, more = frag >> 3, bool(frag & 1)
            elif nh != NH_ROUTING:
                _check_options(buf, offset + 2, offset + length, multicast_dst)
            walked.append(nh)
            nh, nh_at = buf[offset], offset
            offset += length
            if frag_offset or more:
                break  # the rest of the chain is in the fragment's data
            continue
        break
    payload = buf[offset:] if nh != NH_NONE else b""
    return IPv6Packet(
        src=unpack(src),
        dst=unpack(dst),
        next_header=nh,
        payload=payload,
        hop_limit=hops,
        traffic_class=(vtf >> 20) & 0xFF,
        flow_label=vtf & 0xFFFFF,
        extensions=tuple(walked),
        next_header_offset=nh_at,
        fragment_offset=frag_offset,
        more_fragments=more,
    )


def _extension_length(buf: bytes, offset: int, nh: int, end: int) -> int:
    """Octets of the extension header at offset; it must fit in the payload."""
    if offset + 8 > end:
        raise ParseError("ip6_ext_short", f"header {nh} at {offset} of {end}")
    length = 8 if nh == NH_FRAGMENT else (buf[offset + 1] + 1) * 8
    if offset + length > end:
        raise ParseError("ip6_ext_short", f"header {nh} at {offset}: {length} octets past {end}")
    return length


def _check_options(buf: bytes, i: int, end: int, multicast_dst: bool) -> None:
    """Walk the TLV options of a Hop-by-Hop or Destination Options header (RFC 8200 4.2)."""
    while i < end:
        kind = buf[i]
        if kind == 0:  # Pad1
            i += 1
            continue
        if i + 2 > end or i + 2 + buf[i + 1] > end:
            raise ParseError("ip6_option_length", f"option {kind} at octet {i} runs past its header")
        if kind != 1:  # anything but PadN is unknown to us: its two high bits decide
            action = kind >> 6
            if action == 1 or (action == 3 and multicast_dst):
                raise ParseError("ip6_option", f"unknown option {kind} at octet {i}")
            if action >= 2:
                raise ParameterProblem("ip6_option", UNRECOGNIZED_OPTION, i, f"unknown option {kind}")
        i += 2 + buf[i + 1]


def build_ipv6(pkt: IPv6Packet) -> bytes:
    """Serialize the fixed header and the payload (`next_header` names the payload)."""
    vtf = (6 << 28) | ((pkt.traffic_class & 0xFF) << 20) | (pkt.flow_label & 0xFFFFF)
    header = HEADER.pack(vtf, len(pkt.payload), pkt.next_header, pkt.hop_limit, pack(pkt.src), pack(pkt.dst))
    return header + pkt.payload


def ipv6_header(src: bytes, dst: bytes, next_header: int, payload_len: int, hop_limit: int,
                flow_label: int = 0, traffic_class: int = 0) -> bytes:
    """The fixed header alone, from packed addresses, for a sender that joins it to a payload
    it does not copy (`stack.wire.vnet.tcp6_frame`)."""
    vtf = (6 << 28) | ((traffic_class & 0xFF) << 20) | (flow_label & 0xFFFFF)
    return HEADER.pack(vtf, payload_len, next_header, hop_limit, src, dst)


def decrement_hop_limit(packet: bytes) -> bytes:
    """What a router forwards: the packet with its hop limit one lower (no header checksum)."""
    return packet[:7] + bytes((packet[7] - 1,)) + packet[8:]
