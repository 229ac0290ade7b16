"""ICMPv6 messages (RFC 4443): echo, and the error messages TCP and PMTU discovery read, with
the ICMPv4 message each error translates to (RFC 7915 section 5.2), by which TCP judges it.

Unlike ICMP for IPv4, the checksum covers the IPv6 pseudo-header (RFC 4443 2.3), so parse and
build take the packed source and destination addresses. An error message quotes as much of the
packet that caused it as fits in the minimum MTU (RFC 4443 2.4 (c)).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from stack.checksum import internet_checksum, pseudo_header_sum
from stack.errors import ParseError
from stack.inet import IPV6_MIN_MTU
from stack.wire import icmp
from stack.wire.ipv6 import ERRONEOUS_HEADER_FIELD, NH_ICMPV6, UNRECOGNIZED_NEXT_HEADER
from stack.wire.ipv6 import HEADER_LEN as IPV6_HEADER_LEN

DEST_UNREACH = 1
PACKET_TOO_BIG = 2
TIME_EXCEEDED = 3
PARAM_PROBLEM = 4
ECHO_REQUEST = 128
ECHO_REPLY = 129

# Destination Unreachable codes (RFC 4443 3.1).
NO_ROUTE = 0
ADMIN_PROHIBITED = 1
BEYOND_SCOPE = 2
ADDRESS_UNREACH = 3
PORT_UNREACH = 4
SOURCE_POLICY = 5
REJECT_ROUTE = 6

HEADER = struct.Struct("!BBHI")
HEADER_LEN = 8
MAX_QUOTE = IPV6_MIN_MTU - IPV6_HEADER_LEN - HEADER_LEN  # 1232 octets of the invoking packet


@dataclass(slots=True)
class Icmpv6Message:
    type: int
    code: int
    rest: int = 0  # id/seq for echo, the MTU of Packet Too Big, the pointer of Parameter Problem
    payload: bytes = b""

    @property
    def is_error(self) -> bool:
        """Error messages have types 0 to 127 (RFC 4443 2.1)."""
        return self.type < 128


def parse_icmpv6(data: bytes | memoryview, src: bytes, dst: bytes) -> Icmpv6Message:
    """Parse and verify one message; src/dst are the packed addresses of its IPv6 header."""
    n = len(data)
    if n < HEADER_LEN:
        raise ParseError("icmp6_short", f"{n} bytes")
    if internet_checksum(data, pseudo_header_sum(src, dst, NH_ICMPV6, n)) != 0:
        raise ParseError("icmp6_checksum")
    type_, code, _csum, rest = HEADER.unpack_from(data)
    return Icmpv6Message(type_, code, rest, bytes(data[HEADER_LEN:]))


def build_icmpv6(msg: Icmpv6Message, src: bytes, dst: bytes) -> bytes:
    body = bytearray(HEADER.pack(msg.type, msg.code, 0, msg.rest))
    body += msg.payload
    csum = internet_checksum(body, pseudo_header_sum(src, dst, NH_ICMPV6, len(body)))
    body[2:4] = csum.to_bytes(2, "big")
    return bytes(body)


def echo_reply_for(request: Icmpv6Message) -> Icmpv6Message:
    """RFC 4443 4.2: the reply carries the request's identifier, sequence number and data."""
    return Icmpv6Message(ECHO_REPLY, 0, request.rest, request.payload)


def packet_too_big(mtu: int, invoking_packet: bytes) -> Icmpv6Message:
    """RFC 4443 3.2: the next-hop link's MTU, and as much of the packet as fits."""
    return Icmpv6Message(PACKET_TOO_BIG, 0, mtu, invoking_packet[:MAX_QUOTE])


def parameter_problem(code: int, pointer: int, invoking_packet: bytes) -> Icmpv6Message:
    """RFC 4443 3.4: `pointer` is the octet offset of the offending field in invoking_packet."""
    return Icmpv6Message(PARAM_PROBLEM, code, pointer, invoking_packet[:MAX_QUOTE])


def destination_unreachable(code: int, invoking_packet: bytes) -> Icmpv6Message:
    return Icmpv6Message(DEST_UNREACH, code, 0, invoking_packet[:MAX_QUOTE])


# RFC 7915 section 5.2: the ICMPv4 Destination Unreachable code of each ICMPv6 one.
_UNREACH_AS_ICMPV4 = {
    NO_ROUTE: icmp.HOST_UNREACH,
    ADMIN_PROHIBITED: icmp.HOST_PROHIBITED,
    BEYOND_SCOPE: icmp.HOST_UNREACH,
    ADDRESS_UNREACH: icmp.HOST_UNREACH,
    PORT_UNREACH: icmp.PORT_UNREACH,
}


def as_icmpv4(type_: int, code: int) -> tuple[int, int] | None:
    """The ICMPv4 (type, code) an ICMPv6 error means, as RFC 7915 section 5.2 translates it, so
    that TCP judges an error of either family by one rule (TcpConnection.on_icmp_error): port
    unreachable stays port unreachable, administratively prohibited becomes code 10, an
    unrecognized Next Header (Parameter Problem code 1) is protocol unreachable, Time Exceeded
    keeps its code. None for what has no translation (RFC 7915 drops it) and for Packet Too Big,
    which is no error to TCP but path MTU discovery (RFC 8201)."""
    if type_ == DEST_UNREACH:
        v4_code = _UNREACH_AS_ICMPV4.get(code)
        return None if v4_code is None else (icmp.DEST_UNREACH, v4_code)
    if type_ == TIME_EXCEEDED:
        return icmp.TIME_EXCEEDED, code
    if type_ == PARAM_PROBLEM and code == UNRECOGNIZED_NEXT_HEADER:
        return icmp.DEST_UNREACH, icmp.PROTO_UNREACH
    if type_ == PARAM_PROBLEM and code == ERRONEOUS_HEADER_FIELD:
        return icmp.PARAM_PROBLEM, 0
    return None
