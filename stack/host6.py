"""A host's IPv6 layer (RFC 8200): input checks, ICMPv6 (RFC 4443), output with hop limit and
flow label. The `Host` owns one when it has an IPv6 address and hands it every version-6 packet;
TCP demultiplexing stays the host's, shared by both families.

No neighbour discovery (RFC 4861): the stack runs on a point-to-point TUN link (or the simulated
network), where a packet has one place to go, so there are no link-layer addresses to resolve, no
router to discover and no address to defend. Neighbour discovery messages (ICMPv6 types 133 to
137) are counted as `icmp6_nd_ignored` and otherwise ignored.

ICMPv6 errors about our TCP segments (RFC 4443 section 3, checked against the quoted sequence
number as RFC 5927 4.1 advises) act on the connection:
- Packet Too Big lowers its path MTU (RFC 8201 section 4), never below the IPv6 minimum of 1280:
  a message reporting less is discarded and counted, as RFC 8201 section 4 requires;
- Destination Unreachable, Time Exceeded and Parameter Problem are judged as the ICMPv4 message
  RFC 7915 5.2 translates each to, by the connection's one rule for both families
  (TcpConnection.on_icmp_error): in SYN-SENT a hard error (port unreachable, an unrecognized Next
  Header, i.e. protocol unreachable; with `icmp_prohibited_ttl_hard` also administratively
  prohibited and hop limit exceeded) aborts the connection (RFC 1122 4.2.3.9, RFC 5461 section 4).
  Every other is a soft error: the connection carries on, and if it later times out the
  application gets the last one (EHOSTUNREACH, ECONNREFUSED, ...) instead of ETIMEDOUT, as Linux
  does.

Flow label (RFC 6437 section 3): one per connection, a keyed hash of the addresses and ports, so
a flow keeps one label and labels do not reveal anything; ICMPv6 messages we send carry zero.
"""

from __future__ import annotations

import errno
import functools
import hashlib
from typing import TYPE_CHECKING

from stack import seq, tunpath
from stack.errors import ParseError
from stack.inet import pack, unpack
from stack.tcp.ratelimit import PerSecondLimit
from stack.tcp.state import State
from stack.trace import PacketEvent
from stack.wire import icmpv6, vnet
from stack.wire.icmpv6 import Icmpv6Message, build_icmpv6, parse_icmpv6
from stack.wire.ipv6 import (
    HEADER_LEN,
    NH_ICMPV6,
    NH_NONE,
    NH_TCP,
    UNRECOGNIZED_NEXT_HEADER,
    IPv6Packet,
    ParameterProblem,
    build_ipv6,
    parse_ipv6,
)
from stack.wire.tcp import TcpSegment, build_tcp, parse_tcp

if TYPE_CHECKING:
    from stack.config import TcpConfig
    from stack.host import Host

ICMP_ERRORS_PER_SECOND = 100  # RFC 4443 2.4 (f): rate-limit the errors we originate
_ND_TYPES = range(133, 138)  # RS, RA, NS, NA, Redirect (RFC 4861 section 4)

# How Linux names each ICMPv6 error for the application (net/ipv6/icmp.c, icmpv6_err_convert).
_UNREACH_ERRNO = {
    icmpv6.NO_ROUTE: errno.ENETUNREACH,
    icmpv6.ADMIN_PROHIBITED: errno.EACCES,
    icmpv6.BEYOND_SCOPE: errno.EHOSTUNREACH,
    icmpv6.ADDRESS_UNREACH: errno.EHOSTUNREACH,
    icmpv6.PORT_UNREACH: errno.ECONNREFUSED,
    icmpv6.SOURCE_POLICY: errno.EACCES,
    icmpv6.REJECT_ROUTE: errno.EACCES,
}


@functools.lru_cache(maxsize=4096)
def flow_label(key: bytes, src: str, dst: str, sport: int, dport: int) -> int:
    """RFC 6437 section 3: a keyed hash of the flow's addresses and ports, 20 bits, never 0."""
    digest = hashlib.blake2s(f"{src} {dst} {sport} {dport}".encode(), key=key[:32], digest_size=4)
    return (int.from_bytes(digest.digest(), "big") & 0xFFFFF) or 1


_MAPPED_PREFIX = bytes(10) + b"\xff\xff"


def _martian_source(packet: bytes | memoryview) -> bool:
    """A source no packet may carry: multicast, unspecified (RFC 4291 2.5.2, 2.7) or IPv4-mapped
    (RFC 4291 2.5.5.2: mapped addresses name IPv4 peers to applications, never on the wire)."""
    return packet[8] == 0xFF or not any(packet[8:24]) or packet[8:20] == _MAPPED_PREFIX


class Ipv6Layer:
    def __init__(self, host: Host, address: str, flow_key: bytes) -> None:
        self.host = host
        self.address = address
        self.address_raw = pack(address)
        self.flow_key = flow_key
        self.hop_limit = 64
        self.error_limit = PerSecondLimit(ICMP_ERRORS_PER_SECOND)

    # ------------------------------------------------------------------ input

    def receive(self, packet: bytes | memoryview, now: float, trusted: bool = False, gso: int = 0,
                partial: bool = False) -> None:
        """Process one version-6 packet. Never raises for bad input: drops and counts it.
        From a TUN with offloads (stack.tunpath): trusted, the TCP checksum need not be verified;
        gso, a GRO super-segment's segment size; partial, its checksum field holds the
        pseudo-header sum only (the pcap completes it if TCP directly follows this header)."""
        host = self.host
        try:
            ip = parse_ipv6(packet)
        except ParameterProblem as e:
            self._trace_in(packet, now)
            host.drop(e.reason, now, e.detail)
            self._refuse(packet, e.code, e.pointer, now)
            return
        except ParseError as e:
            host.drop(e.reason, now, e.detail)
            return
        self._trace_in(packet, now, gso, partial and packet[6] == NH_TCP)
        if ip.dst != self.address:
            host.drop("ip_not_for_us", now, ip.dst)
            return
        if _martian_source(packet):
            host.drop("ip6_bad_source", now, ip.src)
            return
        if ip.is_fragment:
            host.drop("ip6_fragment", now)  # no reassembly: TCP sizes segments to the path MTU
            return
        if ip.next_header == NH_TCP:
            try:
                seg = parse_tcp(ip.payload, pack(ip.src), self.address_raw, not trusted)
            except ParseError as e:
                host.drop(e.reason, now, e.detail)
                return
            host.on_tcp(ip.src, seg, now, gso)
        elif ip.next_header == NH_ICMPV6:
            self._on_icmp(ip, now)
        elif ip.next_header == NH_NONE:
            host.drop("ip6_no_next_header", now)
        else:
            host.drop("ip_protocol", now, str(ip.next_header))
            self._refuse(packet, UNRECOGNIZED_NEXT_HEADER, ip.next_header_offset, now)

    def _trace_in(self, packet: bytes | memoryview, now: float, gso: int = 0, partial: bool = False) -> None:
        if self.host.trace.enabled:
            self.host.trace.emit(PacketEvent(now, "in", bytes(packet), gso, partial))

    def _refuse(self, packet: bytes | memoryview, code: int, pointer: int, now: float) -> None:
        """Answer a packet we cannot process with a Parameter Problem (RFC 8200 section 4), if
        it was for us, from a unicast source, and not itself an ICMPv6 error (RFC 4443 2.4 (e))."""
        if bytes(packet[24:40]) != self.address_raw or _martian_source(packet):
            return
        if packet[6] == NH_ICMPV6 and len(packet) > HEADER_LEN and packet[HEADER_LEN] < 128:
            return
        src = unpack(bytes(packet[8:24]))
        self._send_error(icmpv6.parameter_problem(code, pointer, bytes(packet)), src, now)

    def _on_icmp(self, ip: IPv6Packet, now: float) -> None:
        host = self.host
        try:
            msg = parse_icmpv6(ip.payload, pack(ip.src), self.address_raw)
        except ParseError as e:
            host.drop(e.reason, now, e.detail)
            return
        if msg.type == icmpv6.ECHO_REQUEST:
            host.counters["icmp6_echo"] += 1
            self.send(ip.src, NH_ICMPV6, build_icmpv6(icmpv6.echo_reply_for(msg), self.address_raw,
                                                     pack(ip.src)), now)
        elif msg.type in (icmpv6.PACKET_TOO_BIG, icmpv6.DEST_UNREACH, icmpv6.TIME_EXCEEDED,
                          icmpv6.PARAM_PROBLEM):
            self._on_error(msg, now)
        elif msg.type in _ND_TYPES:
            host.counters["icmp6_nd_ignored"] += 1
        else:
            host.counters[f"icmp6_type_{msg.type}"] += 1

    def _on_error(self, msg: Icmpv6Message, now: float) -> None:
        """An ICMPv6 error quoting one of our TCP segments (the quote: our IPv6 header, without
        extension headers since we send none, then at least the TCP ports and sequence number)."""
        host = self.host
        q = msg.payload
        if len(q) < HEADER_LEN + 8 or q[6] != NH_TCP or q[8:24] != self.address_raw:
            host.drop("icmp6_quote", now, f"type {msg.type}")
            return
        remote = unpack(q[24:40])
        sport = int.from_bytes(q[40:42], "big")
        dport = int.from_bytes(q[42:44], "big")
        conn = host.find(sport, remote, dport)
        if conn is None:
            host.drop("icmp_no_connection", now)
            return
        quoted_seq = int.from_bytes(q[44:48], "big")
        # RFC 5927 4.1: SND.UNA <= SEG.SEQ < SND.NXT, the IPv4 rule (stack.icmp4, _icmp_connection).
        if not (seq.le(conn.snd_una, quoted_seq) and seq.lt(quoted_seq, conn.snd_max)):
            host.drop("icmp6_out_of_window", now, f"seq {quoted_seq}")
            return
        if msg.type == icmpv6.PACKET_TOO_BIG:
            if msg.rest < 1280:
                host.drop("icmp6_ptb_below_min", now, f"mtu {msg.rest}")  # RFC 8201 section 4
                return
            host.counters["icmp6_packet_too_big"] += 1
            conn.on_pmtu(msg.rest, now)
            host.after_event(conn)
            return
        as_v4 = icmpv6.as_icmpv4(msg.type, msg.code)
        if as_v4 is not None:  # hard or soft, judged as its ICMPv4 translation is (RFC 7915 5.2)
            conn.on_icmp_error(*as_v4, now, cause=f"icmp6:{msg.type}/{msg.code}")
            if conn.state is State.CLOSED:
                host.counters[f"icmp6_hard_error_{msg.type}"] += 1
                host.after_event(conn)
                return
        if msg.type == icmpv6.DEST_UNREACH:
            code = _UNREACH_ERRNO.get(msg.code, errno.EHOSTUNREACH)
        elif msg.type == icmpv6.TIME_EXCEEDED:
            code = errno.EHOSTUNREACH
        else:
            code = errno.EPROTO
        host.note_soft_error(conn, code, f"ICMPv6 type {msg.type} code {msg.code}",
                             f"icmp6_soft_error_{msg.type}", now)

    # ------------------------------------------------------------------ output

    def send(self, dst: str, next_header: int, payload: bytes, now: float, label: int = 0,
             hops: int | None = None, traffic_class: int = 0) -> None:
        hop_limit = self.hop_limit if hops is None else hops
        packet = build_ipv6(IPv6Packet(self.address, dst, next_header, payload, hop_limit,
                                       traffic_class, label))
        self.host.queue_packet(packet)
        if self.host.trace.enabled:
            self.host.trace.emit(PacketEvent(now, "out", packet))

    def send_tcp(self, remote: str, seg: TcpSegment, now: float, gso: int, config: TcpConfig) -> None:
        """One TCP segment, its hop limit and traffic class the connection's (`config`); on an
        offload host (stack.tunpath) a frame with a partial checksum, with gso a TSO6
        super-segment the device cuts into segments of gso payload octets."""
        label = flow_label(self.flow_key, self.address, remote, seg.src_port, seg.dst_port)
        hops, tclass = config.ipv6_hops, config.ipv6_tclass
        if self.host.offload:
            frame = vnet.tcp6_frame(seg, self.address_raw, pack(remote), hops, label, gso, tclass)
            tunpath.queue_tcp_frame(self.host, frame, now, gso)
            return
        data = build_tcp(seg, self.address_raw, pack(remote))
        self.send(remote, NH_TCP, data, now, label, hops, tclass)

    def _send_error(self, msg: Icmpv6Message, dst: str, now: float) -> None:
        if not self.error_limit.allow(now):
            self.host.counters["icmp6_error_rate_limited"] += 1
            return
        self.host.counters[f"icmp6_sent_type_{msg.type}"] += 1
        self.send(dst, NH_ICMPV6, build_icmpv6(msg, self.address_raw, pack(dst)), now)
