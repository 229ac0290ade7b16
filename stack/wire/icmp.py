"""ICMP messages (RFC 792) and the Path MTU "fragmentation needed" form (RFC 1191 section 4)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from stack.checksum import internet_checksum
from stack.errors import ParseError

ECHO_REPLY = 0
DEST_UNREACH = 3
ECHO_REQUEST = 8
TIME_EXCEEDED = 11
PARAM_PROBLEM = 12

# Destination Unreachable codes (RFC 792; 9, 10: RFC 1122 3.2.2.1; 13: RFC 1812 5.2.7.1).
HOST_UNREACH = 1
PROTO_UNREACH = 2
PORT_UNREACH = 3
FRAG_NEEDED = 4
HOST_PROHIBITED = 10
ADMIN_PROHIBITED = (9, HOST_PROHIBITED, 13)  # network, host, communication administratively prohibited

HEADER = struct.Struct("!BBHI")
HEADER_LEN = 8


@dataclass(slots=True)
class IcmpMessage:
    type: int
    code: int
    rest: int = 0  # the 4-octet "rest of header": id/seq for echo, next-hop MTU for FRAG_NEEDED
    payload: bytes = b""


def parse_icmp(data: bytes | memoryview) -> IcmpMessage:
    if len(data) < HEADER_LEN:
        raise ParseError("icmp_short", f"{len(data)} bytes")
    if internet_checksum(data) != 0:
        raise ParseError("icmp_checksum")
    type_, code, _csum, rest = HEADER.unpack_from(data)
    return IcmpMessage(type_, code, rest, bytes(data[HEADER_LEN:]))


def build_icmp(msg: IcmpMessage) -> bytes:
    body = HEADER.pack(msg.type, msg.code, 0, msg.rest) + msg.payload
    csum = internet_checksum(body)
    return body[:2] + csum.to_bytes(2, "big") + body[4:]


def echo_reply_for(request: IcmpMessage) -> IcmpMessage:
    """RFC 792 Echo: the reply carries the request's identifier, sequence number and data."""
    return IcmpMessage(ECHO_REPLY, 0, request.rest, request.payload)


def frag_needed(next_hop_mtu: int, original_ip_packet: bytes) -> IcmpMessage:
    """Destination Unreachable / Fragmentation Needed and DF set, with the next-hop MTU in the
    low-order 16 bits of the rest of the header (RFC 1191 section 4) and the original header
    plus the first 64 bits of its data quoted (RFC 792)."""
    ihl = (original_ip_packet[0] & 0x0F) * 4 if original_ip_packet else 0
    quoted = original_ip_packet[: ihl + 8]
    return IcmpMessage(DEST_UNREACH, FRAG_NEEDED, next_hop_mtu & 0xFFFF, quoted)


def next_hop_mtu(msg: IcmpMessage) -> int:
    return msg.rest & 0xFFFF


def quoted_packet(msg: IcmpMessage) -> bytes:
    """The quoted original IP header plus the first 8 octets of its payload (error messages),
    cut at the quoted header's length: routers may quote more (RFC 1812 section 4.3.2.3)."""
    p = msg.payload
    if not p:
        return b""
    ihl = (p[0] & 0x0F) * 4
    return p[: ihl + 8]
