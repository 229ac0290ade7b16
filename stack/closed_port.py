"""The host's CLOSED path (RFC 9293 3.10.7.1): a segment for no connection is answered with a
RST, never a RST. A part of Host (its base class), kept apart for size.

A port bound by a socket that neither listens nor connects yet has no connection either, but
its socket's IP options (IP_TTL, IP_TOS, IPV6_UNICAST_HOPS, IPV6_TCLASS) already hold for what
is sent in its name, as on FreeBSD (tcp_dropwithreset answers with the socket's settings): the
socket registers them with `bind_port` while it is in that state.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

from stack import seq
from stack.trace import conn_id
from stack.wire.tcp import ACK, RST, TcpSegment

if TYPE_CHECKING:
    from stack.config import TcpConfig
    from stack.guard import Bounds
    from stack.tcp.listener import Listener

ConfigOf = Callable[[], "TcpConfig"]


class ClosedPort:
    # What this part uses of the rest of Host (stack.host), declared for the type checker.
    config: TcpConfig
    counters: Counter[str]
    bounds: Bounds
    listeners: dict[int, Listener]
    bound: dict[int, ConfigOf]  # ports bound but not listening or connected: their socket's config

    def drop(self, reason: str, now: float, detail: str = "") -> None:
        raise NotImplementedError

    def local_address(self, remote_ip: str) -> str:
        raise NotImplementedError

    def _transmit_segment(self, remote_ip: str, seg: TcpSegment, cid: str, now: float, gso: int = 0,
                          config: TcpConfig | None = None) -> None:
        raise NotImplementedError

    def bind_port(self, port: int, config: ConfigOf) -> None:
        """A socket bound `port`: what the host sends for the port uses `config()`'s IP fields."""
        self.bound[port] = config

    def unbind_port(self, port: int, config: ConfigOf) -> None:
        """The socket that bound `port` with `config` listens, connects or closes."""
        if self.bound.get(port) == config:
            del self.bound[port]

    def port_config(self, port: int) -> TcpConfig:
        """The settings a RST for `port` goes out with: its listener's, its bound socket's, or
        the host's."""
        listener = self.listeners.get(port)
        if listener is not None:
            return listener.config
        bound = self.bound.get(port)
        return bound() if bound is not None else self.config

    def _reset_closed(self, src: str, seg: TcpSegment, now: float, reason: str) -> None:
        """RFC 9293 3.10.7.1: answer a segment for no connection with a RST, never a RST."""
        self.drop(reason, now)
        if seg.flags & RST:
            return
        if seg.flags & ACK:
            rst = TcpSegment(seg.dst_port, seg.src_port, seg.ack, 0, RST, 0)
        else:
            rst = TcpSegment(
                seg.dst_port, seg.src_port, 0, seq.add(seg.seq, seg.seg_len), RST | ACK, 0
            )
        if not self.bounds.rst.allow(now):
            self.counters["rst_rate_limited"] += 1
            return
        self.counters["rst_sent"] += 1
        cid = conn_id(self.local_address(src), seg.dst_port, src, seg.src_port)
        self._transmit_segment(src, rst, cid, now, 0, self.port_config(seg.dst_port))
