"""ICMP as an IPv4 host takes it (RFC 792, RFC 1122 3.2.2): echo requests answered (rate limited),
Fragmentation Needed lowering the path MTU (RFC 1191), and the errors that concern a connection:
a hard one aborts it in SYN-SENT (TcpConnection.on_icmp_error), a soft one is remembered and
reported if the connection then times out (RFC 1122 4.2.3.9, RFC 5461 section 4), as Linux
reports sk_err_soft. A part of Host (its base class), kept apart for size; stack.host6 has the
IPv6 counterpart and records its soft errors through `note_soft_error` too.
"""

from __future__ import annotations

import errno
from collections import Counter
from typing import TYPE_CHECKING, Any

from stack import seq
from stack.errors import ParseError, socket_error
from stack.tcp.connection import TcpConnection
from stack.tcp.state import State
from stack.trace import AppEvent, Trace
from stack.wire import icmp, ipv4
from stack.wire.ipv4 import PROTO_ICMP, PROTO_TCP, IPv4Packet

if TYPE_CHECKING:
    from stack.guard import Bounds

# What an ICMP Destination Unreachable code means to an application (Linux's icmp_err_convert).
UNREACH_ERRNO = {
    0: errno.ENETUNREACH,
    icmp.HOST_UNREACH: errno.EHOSTUNREACH,
    icmp.PROTO_UNREACH: errno.ENOPROTOOPT,
    icmp.PORT_UNREACH: errno.ECONNREFUSED,
    5: errno.EOPNOTSUPP,  # source route failed
    6: errno.ENETUNREACH,  # destination network unknown
    7: errno.EHOSTDOWN,  # destination host unknown
    8: errno.ENONET,  # source host isolated
    9: errno.ENETUNREACH,  # network administratively prohibited
    10: errno.EHOSTUNREACH,  # host administratively prohibited
    11: errno.ENETUNREACH,  # network unreachable for TOS
    12: errno.EHOSTUNREACH,  # host unreachable for TOS
    13: errno.EHOSTUNREACH,  # communication administratively prohibited
}


class Icmp4:
    # What this part uses of the rest of Host (stack.host), declared for the type checker.
    bounds: Bounds
    counters: Counter[str]
    connections: dict[tuple[str, int, int], Any]
    trace: Trace

    def after_event(self, conn: TcpConnection) -> None:
        raise NotImplementedError

    def drop(self, reason: str, now: float, detail: str = "") -> None:
        raise NotImplementedError

    def _send_ip(self, dst: str, protocol: int, payload: bytes, now: float) -> None:
        raise NotImplementedError

    def note_soft_error(self, conn: TcpConnection, code: int, what: str, counter: str, now: float) -> None:
        """Remember an ICMP or ICMPv6 soft error on `conn`: if it times out, the application
        hears this error (errno `code`) rather than a bare timeout (RFC 1122 4.2.3.9)."""
        self.counters[counter] += 1
        conn.soft_error = socket_error(code, f"{what} from the path")
        if self.trace.enabled:
            self.trace.emit(AppEvent(now, conn.id, "soft_error", errno.errorcode[code]))

    def _on_icmp(self, ip: IPv4Packet, now: float) -> None:
        try:
            msg = icmp.parse_icmp(ip.payload)
        except ParseError as e:
            self.drop(e.reason, now, e.detail)
            return
        if msg.type == icmp.ECHO_REQUEST:
            if not self.bounds.icmp.allow(now):
                self.counters["icmp_rate_limited"] += 1
                return
            self.counters["icmp_echo"] += 1
            self._send_ip(ip.src, PROTO_ICMP, icmp.build_icmp(icmp.echo_reply_for(msg)), now)
        elif msg.type == icmp.DEST_UNREACH and msg.code == icmp.FRAG_NEEDED:
            conn = self._icmp_connection(msg, now)
            if conn is not None:
                self.counters["icmp_frag_needed"] += 1
                conn.on_pmtu(icmp.next_hop_mtu(msg), now)  # RFC 1191
                self.after_event(conn)
        elif msg.type in (icmp.DEST_UNREACH, icmp.TIME_EXCEEDED):
            conn = self._icmp_connection(msg, now)
            if conn is not None:
                self.counters[f"icmp_type_{msg.type}"] += 1
                conn.on_icmp_error(msg.type, msg.code, now)
                if conn.state is not State.CLOSED:  # soft: remembered for a timeout
                    code = (UNREACH_ERRNO.get(msg.code, errno.EHOSTUNREACH)
                            if msg.type == icmp.DEST_UNREACH else errno.EHOSTUNREACH)
                    self.note_soft_error(conn, code, f"ICMP type {msg.type} code {msg.code}",
                                         f"icmp_soft_error_{msg.type}", now)
                self.after_event(conn)
        else:
            self.counters[f"icmp_type_{msg.type}"] += 1

    def _icmp_connection(self, msg: icmp.IcmpMessage, now: float) -> TcpConnection | None:
        """The connection an ICMP error is about: the quoted header's ports name it, and the
        quoted sequence number must lie in SND.UNA..SND.NXT - 1, or the message is no answer
        to a segment we sent (RFC 5927 section 4.1, RFC 5961 section 7)."""
        quoted = icmp.quoted_packet(msg)
        if len(quoted) < 28:  # the quoted IP header and the first 8 octets of TCP
            self.drop("icmp_quote_short", now)
            return None
        ihl = (quoted[0] & 0x0F) * 4
        if quoted[9] != PROTO_TCP:
            self.drop("icmp_not_tcp", now)
            return None
        dst = ipv4.unpack_addr(bytes(quoted[16:20]))
        sport = int.from_bytes(quoted[ihl : ihl + 2], "big")
        dport = int.from_bytes(quoted[ihl + 2 : ihl + 4], "big")
        seqno = int.from_bytes(quoted[ihl + 4 : ihl + 8], "big")
        conn = self.connections.get((dst, dport, sport))
        if not isinstance(conn, TcpConnection):  # none, or TIME_WAIT: nothing left to send
            self.drop("icmp_no_connection", now)
            return None
        if not (seq.le(conn.snd_una, seqno) and seq.lt(seqno, conn.snd_max)):
            self.drop("icmp_seq_out_of_window", now)
            return None
        return conn
