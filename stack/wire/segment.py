"""A TCP segment in an IP packet of either family, and back: what a peer that is not a stack
(a test playing the remote end, a drill script) builds to feed a Host and reads from what the Host
sends. The family follows the addresses (RFC 9293 3.1: the checksum covers the family's pseudo
header, so the segment is built with the addresses it travels between)."""

from __future__ import annotations

from stack.inet import is_ipv6, pack
from stack.wire.ipv4 import PROTO_TCP, IPv4Packet, build_ipv4, parse_ipv4
from stack.wire.ipv6 import IPv6Packet, build_ipv6, parse_ipv6
from stack.wire.tcp import TcpSegment, build_tcp, parse_tcp


def tcp_packet(src: str, dst: str, seg: TcpSegment) -> bytes:
    """seg from src to dst in an IPv4 or IPv6 packet, with correct checksums."""
    return ip_packet(src, dst, build_tcp(seg, pack(src), pack(dst)))


def ip_packet(src: str, dst: str, payload: bytes, protocol: int = PROTO_TCP) -> bytes:
    """payload (its checksum already right) in an IPv4 or IPv6 packet, by the addresses' family."""
    if is_ipv6(src):
        return build_ipv6(IPv6Packet(src, dst, protocol, payload))
    return build_ipv4(IPv4Packet(src, dst, protocol, payload))


def ip_fields(raw: bytes) -> tuple[str, str, int, bytes]:
    """(src, dst, protocol, payload) of an IPv4 or IPv6 packet; ParseError if malformed."""
    if raw and raw[0] >> 4 == 6:
        ip6 = parse_ipv6(raw)
        return ip6.src, ip6.dst, ip6.next_header, ip6.payload
    ip = parse_ipv4(raw)
    return ip.src, ip.dst, ip.protocol, ip.payload


def tcp_of(raw: bytes, verify_checksum: bool = True) -> TcpSegment | None:
    """The TCP segment an IPv4 or IPv6 packet carries (None for another protocol)."""
    src, dst, protocol, payload = ip_fields(raw)
    if protocol != PROTO_TCP:
        return None
    return parse_tcp(payload, pack(src), pack(dst), verify_checksum=verify_checksum)
