"""The virtio-net header a TUN device opened with IFF_VNET_HDR puts before every packet
(struct virtio_net_hdr, include/uapi/linux/virtio_net.h; the Virtio 1.x specification 5.1.6).

It says how the kernel should treat (on write) or has treated (on read) a packet:

- flags NEEDS_CSUM: the transport checksum is *partial*: the field at csum_start + csum_offset
  holds the folded pseudo-header sum, and whoever transmits the packet completes it over the
  octets from csum_start to the end (CHECKSUM_PARTIAL in the kernel). A packet read with this flag
  was never checksummed (it came from a local sender): there is nothing to verify.
- flags DATA_VALID: the kernel already verified the checksum (read only).
- gso_type TCPV4 or TCPV6 with gso_size: a GSO/TSO *super-segment*, one IP packet carrying up to
  64 KB of TCP payload that the kernel cuts into segments of gso_size payload octets, each with
  the same TCP header and options, the sequence number advanced, PSH and FIN only on the last
  (linux net/ipv4/tcp_offload.c, net/ipv6/tcpv6_offload.c). hdr_len is the length of the IP and
  TCP headers; csum_start is where TCP begins (the IPv4 header's length, or 40 for IPv6: we send
  no extension headers).

Fields are little-endian (the device's native order on x86 and arm64; TUNSETVNETLE is not set).
`segment()` is a reference model of the kernel's cut, for tests and for drawing.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from stack.checksum import internet_checksum, pseudo_header_sum
from stack.errors import ParseError
from stack.wire.ipv4 import MIN_HEADER_LEN as IP_HEADER_LEN
from stack.wire.ipv4 import PROTO_TCP, ipv4_header
from stack.wire.ipv6 import HEADER_LEN as IP6_HEADER_LEN
from stack.wire.ipv6 import NH_TCP, ipv6_header
from stack.wire.tcp import TcpSegment, build_tcp_header_partial

HEADER = struct.Struct("<BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
HEADER_LEN = HEADER.size  # 10: what TUNSETVNETHDRSZ is given

F_NEEDS_CSUM = 1
F_DATA_VALID = 2
GSO_NONE = 0
GSO_TCPV4 = 1
GSO_TCPV6 = 4
GSO_ECN = 0x80

TCP_CSUM_OFFSET = 16  # the checksum field within the TCP header
# A plain packet whose checksums are complete: the header a per-packet sender writes.
PLAIN = HEADER.pack(0, GSO_NONE, 0, 0, 0, 0)


@dataclass(slots=True)
class VnetHeader:
    flags: int = 0
    gso_type: int = GSO_NONE
    hdr_len: int = 0
    gso_size: int = 0
    csum_start: int = 0
    csum_offset: int = 0

    @property
    def checksum_trusted(self) -> bool:
        """The TCP checksum need not (NEEDS_CSUM: cannot) be verified in software."""
        return bool(self.flags & (F_NEEDS_CSUM | F_DATA_VALID))


def parse_vnet(frame: bytes | memoryview) -> VnetHeader:
    if len(frame) < HEADER_LEN:
        raise ParseError("vnet_short", f"{len(frame)} bytes")
    return VnetHeader(*HEADER.unpack_from(frame))


def tcp_header(ip_hlen: int, tcp_hlen: int, gso_size: int = 0, gso_type: int = GSO_TCPV4) -> bytes:
    """The header for a TCP packet whose TCP checksum is partial (the folded pseudo-header sum,
    see `stack.wire.tcp.build_tcp_header_partial`) and starts after ip_hlen octets of IP header;
    with gso_size a TSO super-segment (gso_type TCPV4 or TCPV6) the kernel cuts into segments
    of gso_size payload octets."""
    return HEADER.pack(
        F_NEEDS_CSUM, gso_type if gso_size else GSO_NONE, ip_hlen + tcp_hlen if gso_size else 0,
        gso_size, ip_hlen, TCP_CSUM_OFFSET,
    )


def tcp_frame(seg: TcpSegment, src: bytes, dst: bytes, ident: int, gso: int = 0, ttl: int = 64,
              tos: int = 0) -> bytes:
    """What a TUN with offloads is given for one TCP segment (gso: a super-segment): this header,
    an IPv4 header, the TCP header with a partial checksum, the payload, joined once (no octet of
    a 64 KB super-segment is copied twice or summed in Python)."""
    tcp = build_tcp_header_partial(seg, src, dst)
    ip = ipv4_header(src, dst, PROTO_TCP, IP_HEADER_LEN + len(tcp) + len(seg.payload), ident, ttl, tos)
    return b"".join((tcp_header(IP_HEADER_LEN, len(tcp), gso), ip, tcp, seg.payload))


def tcp6_frame(seg: TcpSegment, src: bytes, dst: bytes, hop_limit: int, flow_label: int,
               gso: int = 0, traffic_class: int = 0) -> bytes:
    """`tcp_frame` for IPv6: the fixed header (no extension headers, so TCP starts at octet 40)
    and a partial checksum over RFC 8200 8.1's pseudo-header (16-octet addresses, the 32-bit
    upper-layer length of the whole super-segment, next header 6); the kernel adjusts it per
    segment when it cuts (TSO6)."""
    tcp = build_tcp_header_partial(seg, src, dst)
    ip = ipv6_header(src, dst, NH_TCP, len(tcp) + len(seg.payload), hop_limit, flow_label, traffic_class)
    return b"".join((tcp_header(IP6_HEADER_LEN, len(tcp), gso, GSO_TCPV6), ip, tcp, seg.payload))


def complete_checksum(packet: bytes | bytearray | memoryview) -> bytes:
    """A TCP packet with a partial TCP checksum, made whole (what the kernel does before the
    packet reaches a wire, and what a capture file must show). The field holds the pseudo-header
    sum already, so the sum from csum_start to the end, complemented, is the checksum. IPv4, or
    IPv6 with TCP directly after the fixed header (csum_start 40)."""
    view = memoryview(packet)
    if view[0] >> 4 == 6:
        ihl, total = 40, 40 + int.from_bytes(view[4:6], "big")
    else:
        ihl, total = (view[0] & 0x0F) * 4, int.from_bytes(view[2:4], "big")
    at = ihl + TCP_CSUM_OFFSET
    csum = internet_checksum(view[ihl:total])
    return b"".join((view[:at], csum.to_bytes(2, "big"), view[at + 2 : total]))


def segment(header: VnetHeader, packet: bytes) -> list[bytes]:
    """What the kernel puts on a wire for one packet written with `header` (a reference model of
    tcp_gso_segment for IPv4 and IPv6): TSO super-segments cut at gso_size, the IPv4 ident
    advanced by one per segment (IPv6 has none: each piece keeps the flow label and hop limit),
    PSH/FIN only on the last, every checksum complete."""
    gso_type = header.gso_type & ~GSO_ECN
    if gso_type not in (GSO_TCPV4, GSO_TCPV6) or not header.gso_size:
        return [complete_checksum(packet) if header.flags & F_NEEDS_CSUM else packet]
    v6 = gso_type == GSO_TCPV6
    ihl = IP6_HEADER_LEN if v6 else (packet[0] & 0x0F) * 4
    thl = (packet[ihl + 12] >> 4) * 4
    hdrs, payload = packet[: ihl + thl], packet[ihl + thl :]
    ident = int.from_bytes(packet[4:6], "big")
    seqno = int.from_bytes(packet[ihl + 4 : ihl + 8], "big")
    flags = packet[ihl + 13]
    src, dst = (packet[8:24], packet[24:40]) if v6 else (packet[12:16], packet[16:20])
    out: list[bytes] = []
    pieces = range(0, len(payload), header.gso_size)
    for i, off in enumerate(pieces):
        piece = payload[off : off + header.gso_size]
        buf = bytearray(hdrs)
        if v6:
            buf[4:6] = (thl + len(piece)).to_bytes(2, "big")  # payload length (RFC 8200 3)
        else:
            buf[2:4] = (ihl + thl + len(piece)).to_bytes(2, "big")
            buf[4:6] = ((ident + i) & 0xFFFF).to_bytes(2, "big")
            buf[10:12] = b"\0\0"
            buf[10:12] = internet_checksum(bytes(buf[:ihl])).to_bytes(2, "big")
        buf[ihl + 4 : ihl + 8] = ((seqno + off) & 0xFFFFFFFF).to_bytes(4, "big")
        if i != len(pieces) - 1:
            buf[ihl + 13] = flags & ~0x09  # FIN and PSH ride on the last segment only
        # The partial sum was for the whole super-segment's length: sum this piece afresh.
        buf[ihl + TCP_CSUM_OFFSET : ihl + TCP_CSUM_OFFSET + 2] = b"\0\0"
        init = pseudo_header_sum(src, dst, PROTO_TCP, thl + len(piece))
        csum = internet_checksum(bytes(buf[ihl:]) + piece, init)
        buf[ihl + TCP_CSUM_OFFSET : ihl + TCP_CSUM_OFFSET + 2] = csum.to_bytes(2, "big")
        out.append(bytes(buf) + piece)
    return out
