"""The host's side of SYN cookies (RFC 4987 3.6): answer a SYN without state, open the connection
when a valid cookie comes back. The encoding is in stack.tcp.syncookies; the policy (when the SYN
queue is full, or always with syncookies=2) and the connection a valid cookie opens are the
host's (Host._on_listen, Host._cookie_ack): this module only makes and checks cookies.

Counters on the host: syncookies_sent, syncookies_recv (valid cookie ACKs: connections made),
syncookies_failed (ACKs to a listener that were no valid cookie: answered with a RST as before).
Trace: SynCookieEvent "sent", "accepted", "failed".
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stack import seq
from stack.inet import family, is_ipv6, pack, tcp_overhead
from stack.tcp import syncookies
from stack.tcp.listener import Listener
from stack.trace import SynCookieEvent, conn_id
from stack.wire.tcp import TcpSegment

if TYPE_CHECKING:
    from stack.host import Host

from stack.tcp.tcb import TS_HZ


@dataclass(frozen=True, slots=True)
class Opening:
    """What a valid cookie ACK gives back: the connection's numbers and the SYN it remembers."""

    cid: str
    iss: int
    ts_offset: int
    syn: TcpSegment


class CookieOpen:
    """Part of one Host: it reads the host's address, settings, counters and trace."""

    def __init__(self, host: Host, isn_key: bytes) -> None:
        self.host = host
        self.cookies = syncookies.SynCookies(isn_key)

    def in_use(self, listener: Listener, now: float) -> bool:
        """Check ACKs for cookies only while they may be out there (Linux: for two minutes after
        the last one, or always with syncookies=2): otherwise an ACK to a listener gets a RST."""
        if self.host.config.syncookies == 2:
            return True
        sent = listener.cookies_sent_at
        return sent is not None and now - sent < syncookies.VALID_AFTER_SENDING

    def answer(self, listener: Listener, src: str, syn: TcpSegment, now: float) -> tuple[TcpSegment, str]:
        """The SYN-ACK whose sequence number is the cookie, and its connection id; nothing is kept."""
        host = self.host
        listener.cookies_sent_at = now
        tuple_bytes = self._tuple_bytes(src, syn.src_port, syn.dst_port)
        peer_mss = syn.mss or host.config.default_peer_mss
        cookie = self.cookies.make(now, tuple_bytes, syn.seq, peer_mss, _mss_table(src))
        tsval = (int(now * TS_HZ) + self.cookies.ts_offset(tuple_bytes)) & seq.MASK
        mss = listener.config.mtu - tcp_overhead(src)  # as a connection offers (Handshake)
        synack = syncookies.synack(listener.config, syn, cookie, tsval, mss)
        cid = conn_id(host.local_address(src), syn.dst_port, src, syn.src_port)
        host.counters["syncookies_sent"] += 1
        if host.trace.enabled:
            host.trace.emit(SynCookieEvent(now, cid, "sent"))
        return synack, cid

    def check(self, listener: Listener, src: str, ack: TcpSegment, now: float) -> Opening | None:
        """An ACK to a listener: the opening its cookie encodes, or None when it is no cookie of
        ours (counted as failed if cookies are in use; the caller resets it)."""
        if not self.in_use(listener, now):
            return None
        host = self.host
        tuple_bytes = self._tuple_bytes(src, ack.src_port, ack.dst_port)
        iss = seq.add(ack.ack, -1)
        mss = self.cookies.check(now, tuple_bytes, seq.add(ack.seq, -1), iss, _mss_table(src))
        opts = None if mss is None else syncookies.options_of(ack, mss, listener.config)
        cid = conn_id(host.local_address(src), ack.dst_port, src, ack.src_port)
        if opts is None:
            host.counters["syncookies_failed"] += 1
            if host.trace.enabled:
                host.trace.emit(SynCookieEvent(now, cid, "failed"))
            return None
        return Opening(cid, iss, self.cookies.ts_offset(tuple_bytes), syncookies.rebuilt_syn(ack, opts))

    def opened(self, opening: Opening, now: float) -> None:
        """The host made the connection a valid cookie ACK asked for."""
        self.host.counters["syncookies_recv"] += 1
        if self.host.trace.enabled:
            self.host.trace.emit(SynCookieEvent(now, opening.cid, "accepted"))

    def _tuple_bytes(self, src: str, src_port: int, dst_port: int) -> bytes:
        ports = src_port.to_bytes(2, "big") + dst_port.to_bytes(2, "big")
        # inet_pton, not the cached `pack`: a flood of spoofed sources would fill its cache.
        return socket.inet_pton(family(src), src) + pack(self.host.local_address(src)) + ports


def _mss_table(src: str) -> tuple[int, ...]:
    return syncookies.MSS_TABLE6 if is_ipv6(src) else syncookies.MSS_TABLE
