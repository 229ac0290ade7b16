"""The host's paths that only the TUN driver takes (`stack.tun`); the simulated network delivers
one plain packet at a time and never enters them, so its traces do not depend on this module.

- A batch: packets read together in one TUN read. In-order data in it is acknowledged once per
  connection at the batch's end (`Tcb._ack_in_batch` asks `defer_ack`), not once per segment.
- Offload mode (`Host(offload=True)`, a TUN opened with IFF_VNET_HDR by `stack.tundev`): every
  packet in and out starts with a virtio-net header (`stack.wire.vnet`). Received, the header says
  whether the checksum needs verifying and whether the packet is a GRO super-segment. Sent, a TCP
  segment of either family leaves with a partial checksum, and a train of full segments as one
  TSO super-segment (TSO4, TSO6: `stack.tundev.OFFLOADS`). Other packets (ICMP, ICMPv6) leave
  complete behind a plain header.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

from stack.trace import PacketEvent
from stack.wire import vnet
from stack.wire.ipv4 import pack_addr

if TYPE_CHECKING:
    from stack.config import TcpConfig
    from stack.host import Host
    from stack.tcp.connection import TcpConnection
    from stack.wire.tcp import TcpSegment


class Unframed(NamedTuple):
    packet: memoryview  # the IP packet, a view of the frame (no copy of a 64 KB super-segment)
    trusted: bool  # the TCP checksum need not be verified (NEEDS_CSUM or DATA_VALID)
    gso: int  # a GRO super-segment's segment size, else 0
    partial: bool  # NEEDS_CSUM: the checksum field holds the pseudo-header sum only


def unframe(frame: bytes | memoryview) -> Unframed:
    """Split a received frame into its virtio-net header's verdicts and the packet. Raises
    ParseError for a frame shorter than the header."""
    vh = vnet.parse_vnet(frame)
    # NEEDS_CSUM: the sender left the checksum to the device (nothing to verify);
    # DATA_VALID: the kernel verified it. A GRO super-segment comes with gso_size.
    gso = vh.gso_size if vh.gso_type != vnet.GSO_NONE else 0
    return Unframed(memoryview(frame)[vnet.HEADER_LEN :], vh.checksum_trusted,
                    gso, bool(vh.flags & vnet.F_NEEDS_CSUM))


def send_tcp_offload(host: Host, remote_ip: str, seg: TcpSegment, now: float, gso: int,
                     config: TcpConfig) -> None:
    """One IPv4 TCP segment (gso: a TSO super-segment) as a frame with a partial checksum, its
    TTL and TOS the connection's (`config`)."""
    # The kernel gives the segments of a super-segment consecutive IP idents.
    ident = host.next_ip_ident(1 + (len(seg.payload) - 1) // gso if gso else 1)
    frame = vnet.tcp_frame(seg, host.address_raw, pack_addr(remote_ip), ident, gso, config.ip_ttl,
                           config.ip_tos)
    queue_tcp_frame(host, frame, now, gso)


def queue_tcp_frame(host: Host, frame: bytes, now: float, gso: int) -> None:
    """Queue a TCP frame with a partial checksum (either family) and trace its packet, which
    the pcap shows with the checksum completed."""
    host.queue_frame(frame)
    if host.trace.enabled:
        host.trace.emit(PacketEvent(now, "out", memoryview(frame)[vnet.HEADER_LEN :], gso, True))


class BatchAcks:
    """The connections with an ACK held back while a batch is processed."""

    def __init__(self) -> None:
        self._pending: dict[TcpConnection, None] | None = None  # None: not inside a batch

    def defer(self, conn: TcpConnection) -> bool:
        """Hold conn's ACK to the batch's end (False outside a batch: send it now)."""
        if self._pending is None:
            return False
        self._pending[conn] = None
        return True

    def receive(self, host: Host, packets: Iterable[bytes], now: float) -> None:
        self._pending = {}
        try:
            for packet in packets:
                host.receive(packet, now)
        finally:
            pending, self._pending = self._pending, None
        for conn in pending:
            conn.flush_ack(now)
