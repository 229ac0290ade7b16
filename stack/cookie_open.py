"""The host's side of SYN cookies (RFC 4987 3.6): answer a SYN without state, open the connection
when a valid cookie comes back. The encoding is in stack.tcp.syncookies; the policy (when the SYN
queue is full, or always with syncookies=2) is in Host._on_listen.

Counters on the host: syncookies_sent, syncookies_recv (valid cookie ACKs: connections made),
syncookies_failed (ACKs to a listener that were no valid cookie: answered with a RST as before).
Trace: SynCookieEvent "sent", "accepted", "failed".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stack import seq
from stack.tcp import syncookies
from stack.tcp.listener import Listener
from stack.trace import SynCookieEvent, conn_id
from stack.wire.ipv4 import pack_addr
from stack.wire.tcp import TcpSegment

if TYPE_CHECKING:
    from stack.host import Host

TS_HZ = 1000  # the timestamp clock of stack.tcp.connection: 1 ms a tick


class CookieOpen:
    """Part of one Host: it uses the host's connection factory, table, counters and output."""

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

    def answer(self, listener: Listener, src: str, syn: TcpSegment, now: float) -> None:
        """The SYN-ACK whose sequence number is the cookie; nothing is kept."""
        host = self.host
        listener.cookies_sent_at = now
        tuple_bytes = self._tuple_bytes(src, syn.src_port, syn.dst_port)
        peer_mss = syn.mss or host.config.default_peer_mss
        cookie = self.cookies.make(now, tuple_bytes, syn.seq, peer_mss)
        tsval = (int(now * TS_HZ) + self.cookies.ts_offset(tuple_bytes)) & seq.MASK
        synack = syncookies.synack(listener.config, syn, cookie, tsval)
        cid = conn_id(host.address, syn.dst_port, src, syn.src_port)
        host.counters["syncookies_sent"] += 1
        if host.trace.enabled:
            host.trace.emit(SynCookieEvent(now, cid, "sent"))
        host._transmit_segment(src, synack, cid, now)

    def accept(self, listener: Listener, src: str, ack: TcpSegment, now: float) -> bool:
        """An ACK to a listener: True if it was a valid cookie ACK, now a connection (or dropped
        for a full accept queue); False when it is no cookie of ours (the caller resets it)."""
        if not self.in_use(listener, now):
            return False
        host = self.host
        tuple_bytes = self._tuple_bytes(src, ack.src_port, ack.dst_port)
        iss = seq.add(ack.ack, -1)
        mss = self.cookies.check(now, tuple_bytes, seq.add(ack.seq, -1), iss)
        opts = None if mss is None else syncookies.options_of(ack, mss, listener.config)
        cid = conn_id(host.address, ack.dst_port, src, ack.src_port)
        if opts is None:
            host.counters["syncookies_failed"] += 1
            if host.trace.enabled:
                host.trace.emit(SynCookieEvent(now, cid, "failed"))
            return False
        if not listener.can_accept():
            listener.overflows += 1
            host._drop("listen_overflow", now, f"port {listener.port}")
            return True  # the peer retransmits; its ACK may find room later
        host.counters["syncookies_recv"] += 1
        if host.trace.enabled:
            host.trace.emit(SynCookieEvent(now, cid, "accepted"))
        conn = host._new_connection(
            ack.dst_port, src, ack.src_port, listener.config, now, listener,
            iss=iss, ts_offset=self.cookies.ts_offset(tuple_bytes),
        )
        # Replay the handshake without its SYN-ACK (the cookie already went): the SYN the cookie
        # remembers, then this ACK. retries=1 as after a retransmitted SYN-ACK: when the SYN-ACK
        # left is not known, so without timestamps the handshake gives no RTT sample (Karn,
        # RFC 6298 3); with them the sample is at most 2**TS_BITS ms long (the option bits).
        host._muted = conn
        try:
            host._open_passive(conn, listener, syncookies.rebuilt_syn(ack, opts), now)
        finally:
            host._muted = None
        conn.retries = 1
        conn.on_segment(ack, now)
        host._after(conn)
        return True

    def _tuple_bytes(self, src: str, src_port: int, dst_port: int) -> bytes:
        ports = src_port.to_bytes(2, "big") + dst_port.to_bytes(2, "big")
        return pack_addr(src) + self.host.address_raw + ports
