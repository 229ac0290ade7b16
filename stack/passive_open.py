"""The host's LISTEN path (RFC 9293 3.10.7.2): a SYN opens a half-open connection, or past a full
SYN queue (or always with syncookies=2) is answered with a SYN cookie (RFC 4987 3.6, stack.cookie_open)
whose valid ACK opens the connection then. A part of Host (its base class), kept apart for size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stack.tcp.listener import Listener
from stack.wire.tcp import ACK, RST, SYN, TcpSegment

if TYPE_CHECKING:
    from stack.config import TcpConfig
    from stack.cookie_open import CookieOpen
    from stack.tcp.connection import TcpConnection


class PassiveOpen:
    # What this part uses of the rest of Host (stack.host), declared for the type checker.
    config: TcpConfig
    connections: dict[tuple[str, int, int], Any]
    cookie_open: CookieOpen

    def _new_connection(self, local_port: int, remote_ip: str, remote_port: int, config: TcpConfig,
                        now: float, listener: Listener | None, *, iss: int | None = None,
                        ts_offset: int | None = None) -> TcpConnection:
        raise NotImplementedError

    def after_event(self, conn: Any) -> None:
        raise NotImplementedError

    def drop(self, reason: str, now: float, detail: str = "") -> None:
        raise NotImplementedError

    def _transmit_segment(self, remote_ip: str, seg: TcpSegment, cid: str, now: float, gso: int = 0,
                          config: TcpConfig | None = None) -> None:
        raise NotImplementedError

    def _reset_closed(self, src: str, seg: TcpSegment, now: float, reason: str) -> None:
        raise NotImplementedError

    def _on_listen(self, listener: Listener, src: str, seg: TcpSegment, now: float) -> None:
        """RFC 9293 3.10.7.2, LISTEN state; SYN cookies past the SYN queue (RFC 4987 3.6)."""
        flags = seg.flags
        if flags & RST:
            self.drop("listen_rst", now)
            return
        if flags & ACK:
            if flags & SYN and self.config.listen_drop_syn_ack:
                self.drop("listen_syn_ack", now)  # FreeBSD's choice (TcpConfig.listen_drop_syn_ack)
                return
            if not flags & SYN and self._cookie_ack(listener, src, seg, now):
                return
            self._reset_closed(src, seg, now, "listen_ack")
            return
        if not flags & SYN:
            self.drop("listen_no_syn", now)
            return
        if not listener.can_accept():
            self._overflow(listener, now)
            return
        mode = self.config.syncookies
        if mode == 2 or (mode == 1 and listener.syn_queue_full()):
            synack, cid = self.cookie_open.answer(listener, src, seg, now)
            self._transmit_segment(src, synack, cid, now, 0, listener.config)
            return
        if listener.syn_queue_full():
            self._overflow(listener, now)
            return
        conn = self._new_connection(seg.dst_port, src, seg.src_port, listener.config, now, listener)
        self._open_passive(conn, listener, seg, now)

    def _cookie_ack(self, listener: Listener, src: str, ack: TcpSegment, now: float) -> bool:
        """An ACK to a listener: True if it carried a valid SYN cookie (the connection opens, or
        the ACK is dropped for a full accept queue); False if not (the caller resets it)."""
        opening = self.cookie_open.check(listener, src, ack, now)
        if opening is None:
            return False
        if not listener.can_accept():
            self._overflow(listener, now)  # the peer retransmits; its ACK may find room later
            return True
        self.cookie_open.opened(opening, now)
        conn = self._new_connection(ack.dst_port, src, ack.src_port, listener.config, now, listener,
                                    iss=opening.iss, ts_offset=opening.ts_offset)
        self._open_passive(conn, listener, opening.syn, now, by_cookie=True)
        conn.on_segment(ack, now)  # the handshake's last ACK, this time to the connection
        self.after_event(conn)
        return True

    def _overflow(self, listener: Listener, now: float) -> None:
        listener.overflows += 1
        self.drop("listen_overflow", now, f"port {listener.port}")

    def _open_passive(self, conn: TcpConnection, listener: Listener, syn: TcpSegment, now: float,
                      *, by_cookie: bool = False) -> None:
        conn.nodelay = listener.nodelay
        conn.keepalive = listener.keepalive
        self.connections[(conn.remote_ip, conn.remote_port, conn.local_port)] = conn
        listener.add_half_open(conn)
        if by_cookie:
            conn.open_by_cookie(syn, now)  # its SYN-ACK went with the cookie
        else:
            conn.open_passive(syn, now)
