"""A host: IPv4 in and out, ICMP echo, TCP demultiplexing, listeners and the port table.

Sans-I/O, like everything in the core: see `stack.driver` for how a driver pumps it. A malformed
packet never raises out of `receive`: it is dropped, counted in `counters` under its reason, and
traced as a Drop event.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

from stack import seq
from stack.config import TcpConfig
from stack.cookie_open import CookieOpen
from stack.errors import ParseError
from stack.guard import Bounds
from stack.martian import MartianFilter
from stack.tcp.connection import TcpConnection
from stack.tcp.isn import IsnGenerator
from stack.tcp.listener import Listener
from stack.tcp.ratelimit import ChallengeAckLimiter
from stack.tcp.state import State
from stack.tcp.time_wait import TimeWaitRecord
from stack.timer_heap import TimerHeap
from stack.trace import Drop, PacketEvent, SegmentEvent, Trace, conn_id
from stack.wire import icmp, ipv4
from stack.wire.ipv4 import PROTO_ICMP, PROTO_TCP, IPv4Packet, build_ipv4, pack_addr, parse_ipv4
from stack.wire.tcp import ACK, RST, SYN, TcpSegment, build_tcp, flags_str, format_options, parse_tcp

EPHEMERAL_PORTS = (32768, 60999)  # Linux's default ip_local_port_range
ConnKey = tuple[str, int, int]  # (remote ip, remote port, local port)
Entry = TcpConnection | TimeWaitRecord  # what the table holds: orphans in TIME_WAIT are records


class Host:
    def __init__(
        self,
        address: str,
        *,
        config: TcpConfig | None = None,
        trace: Trace | None = None,
        rng: random.Random | None = None,
        isn_key: bytes = b"",
    ) -> None:
        self.address = address
        self.address_raw = pack_addr(address)
        self.config = config or TcpConfig()
        self.trace = trace or Trace()
        self.rng = rng or random.Random(0)
        self.isn = IsnGenerator(isn_key)
        self.challenge = ChallengeAckLimiter(
            self.config.challenge_ack_limit, random.Random(b"challenge-ack:" + isn_key)
        )
        self.counters: Counter[str] = Counter()
        self.martians = MartianFilter((address,))
        self.bounds = Bounds(self.config)
        self.cookie_open = CookieOpen(self, isn_key)
        self._clock = 0.0  # the latest `now` seen (application calls bring none)
        self.connections: dict[ConnKey, Entry] = {}
        self.listeners: dict[int, Listener] = {}
        self._out: list[bytes] = []
        self._events: dict[object, None] = {}  # insertion-ordered set
        self._timers: TimerHeap[ConnKey, Entry] = TimerHeap(self.connections)
        self._ident = self.rng.randrange(0x10000)
        # Bound once: every connection keeps these three, and each `self._x` is a new object.
        self._callbacks = (self._transmit, self._notify, self._sched)

    # ------------------------------------------------------------------ driver interface

    def receive(self, packet: bytes, now: float, *, loopback: bool = False) -> None:
        """Process one IPv4 packet. Never raises for bad input: drops and counts it.
        `loopback`: the packet never left this host (a driver looped it back), so a source
        address of our own is genuine; from any interface it is martian (stack.martian)."""
        try:
            ip = parse_ipv4(packet)
        except ParseError as e:
            self._drop(e.reason, now, e.detail)
            return
        self._clock = now
        if self.trace.enabled:
            self.trace.emit(PacketEvent(now, "in", bytes(packet)))
        if ip.dst != self.address:
            self._drop("ip_not_for_us", now, ip.dst)
            return
        src_raw = pack_addr(ip.src)
        martian = None if loopback else self.martians.check_source(src_raw)
        if martian is not None:
            self._drop(martian, now, ip.src)  # never answered: it is forged
            return
        if ip.is_fragment:
            self._drop("ip_fragment", now)  # no reassembly (yet): count and drop
            return
        if ip.protocol == PROTO_TCP:
            try:
                seg = parse_tcp(ip.payload, src_raw, self.address_raw)
            except ParseError as e:
                self._drop(e.reason, now, e.detail)
                return
            self._on_tcp(ip.src, seg, now)
        elif ip.protocol == PROTO_ICMP:
            self._on_icmp(ip, now)
        else:
            self._drop("ip_protocol", now, str(ip.protocol))

    def take_packets(self) -> list[bytes]:
        out, self._out = self._out, []
        return out

    def take_app_events(self) -> list[object]:
        events = list(self._events)
        self._events.clear()
        return events

    def deadline(self) -> float | None:
        return self._timers.earliest()

    def on_timer(self, now: float) -> None:
        self._clock = now
        for conn in self._timers.due(now, 1e-6):
            conn.on_timer(now)
            self._after(conn)

    # ------------------------------------------------------------------ application interface

    def listen(self, port: int, backlog: int | None = None, config: TcpConfig | None = None) -> Listener:
        if port in self.listeners:
            raise OSError(98, "Address already in use")
        listener = Listener(
            self.address, port, backlog or self.config.default_backlog, config or self.config, self._notify
        )
        self.listeners[port] = listener
        return listener

    def close_listener(self, listener: Listener, now: float) -> None:
        """Closing a listener resets the connections nobody accepted (as Linux does)."""
        self._clock = now
        if self.listeners.get(listener.port) is listener:
            del self.listeners[listener.port]
        listener.closed = True
        for conn in [*listener.half_open.values(), *listener.accept_queue]:
            conn.detach_listener()
            conn.abort(now, "call:close_listener")
            self._after(conn)
        listener.half_open.clear()
        listener.accept_queue.clear()
        self._notify(listener)

    def connect(
        self,
        remote_ip: str,
        remote_port: int,
        now: float,
        *,
        local_port: int | None = None,
        config: TcpConfig | None = None,
        setup: Callable[[TcpConnection], None] | None = None,
    ) -> TcpConnection:
        """Active open. `setup` may adjust the connection (socket options) before the SYN goes."""
        self._clock = now
        if local_port is None:
            local_port = self.ephemeral_port(remote_ip, remote_port)
        elif (remote_ip, remote_port, local_port) in self.connections:
            raise OSError(98, "Address already in use")
        conn = self._new_connection(local_port, remote_ip, remote_port, config or self.config, now, None)
        self.connections[(remote_ip, remote_port, local_port)] = conn
        if setup is not None:
            setup(conn)
        conn.open_active(now)
        self._after(conn)
        return conn

    def app_call(self, conn: Entry) -> None:
        """Tell the host an application call changed conn (so its timer and table stay right)."""
        self._after(conn)

    def find(self, local_port: int, remote_ip: str, remote_port: int) -> TcpConnection | None:
        """The connection on this 4-tuple (not a TIME_WAIT record: no application has that)."""
        conn = self.connections.get((remote_ip, remote_port, local_port))
        return conn if isinstance(conn, TcpConnection) else None

    # ------------------------------------------------------------------ internals

    def _new_connection(
        self,
        local_port: int,
        remote_ip: str,
        remote_port: int,
        config: TcpConfig,
        now: float,
        listener: Listener | None,
        *,
        iss: int | None = None,
        ts_offset: int | None = None,
    ) -> TcpConnection:
        if iss is None:
            iss = self.isn.isn(now, self.address, local_port, remote_ip, remote_port)
        if ts_offset is None:
            ts_offset = self.rng.randrange(1 << 32)
        return TcpConnection(
            local_ip=self.address,
            local_port=local_port,
            remote_ip=remote_ip,
            remote_port=remote_port,
            config=config,
            trace=self.trace,
            iss=iss,
            now=now,
            transmit=self._callbacks[0],
            notify=self._callbacks[1],
            sched=self._callbacks[2],
            challenge=self.challenge,
            ts_offset=ts_offset,
            listener=listener,
        )

    def ephemeral_port(self, remote_ip: str, remote_port: int) -> int:
        low, high = EPHEMERAL_PORTS
        span = high - low + 1
        start = self.rng.randrange(span)
        for i in range(span):
            port = low + (start + i) % span
            if (remote_ip, remote_port, port) not in self.connections and port not in self.listeners:
                return port
        raise OSError(99, "Cannot assign requested address: no free ephemeral port")

    def _notify(self, obj: object) -> None:
        self._events[obj] = None

    def _sched(self, conn: Entry) -> None:
        d = conn.deadline()
        if d is not None:
            self._timers.push((conn.remote_ip, conn.remote_port, conn.local_port), d)

    def _after(self, conn: Entry) -> None:
        """Enforce the host-wide bounds (stack.guard); swap an orphan entering TIME_WAIT for a
        light record (stack.tcp.time_wait); forget a connection once it is CLOSED (its object
        stays with the application)."""
        bound = self.bounds.note(conn)
        if bound is not None:
            self.counters[bound] += 1
            conn.abort(self._clock, f"bound:{bound}")  # resets an orphan; TIME_WAIT just ends
            self.bounds.note(conn)
        if conn.state is State.TIME_WAIT and conn.app_closed and isinstance(conn, TcpConnection):
            key = (conn.remote_ip, conn.remote_port, conn.local_port)
            if self.connections.get(key) is conn:
                record = TimeWaitRecord(conn, self._transmit, self._sched, self.challenge)
                self.connections[key] = record
                self.bounds.replace(conn, record)
                self._sched(record)
            return
        if conn.state is State.CLOSED or conn.state is State.LISTEN:
            key = (conn.remote_ip, conn.remote_port, conn.local_port)
            if self.connections.get(key) is conn:
                del self.connections[key]

    def _drop(self, reason: str, now: float, detail: str = "") -> None:
        self.counters[reason] += 1
        if self.trace.enabled:
            self.trace.emit(Drop(now, reason, detail))

    def _send_ip(self, dst: str, protocol: int, payload: bytes, now: float) -> None:
        self._ident = (self._ident + 1) & 0xFFFF
        packet = build_ipv4(IPv4Packet(self.address, dst, protocol, payload, ident=self._ident))
        self._out.append(packet)
        if self.trace.enabled:
            self.trace.emit(PacketEvent(now, "out", packet))

    def _transmit(self, conn: Entry, seg: TcpSegment, now: float) -> None:
        self._transmit_segment(conn.remote_ip, seg, conn.id, now)

    def _transmit_segment(self, remote_ip: str, seg: TcpSegment, cid: str, now: float) -> None:
        data = build_tcp(seg, self.address_raw, pack_addr(remote_ip))
        t = now
        if self.trace.enabled:
            self.trace.emit(
                SegmentEvent(t, "out", cid, flags_str(seg.flags), seg.seq, seg.ack, seg.window,
                             len(seg.payload), format_options(seg.options))
            )
        self._send_ip(remote_ip, PROTO_TCP, data, t)

    # ------------------------------------------------------------------ TCP demultiplexing

    def _on_tcp(self, src: str, seg: TcpSegment, now: float) -> None:
        key = (src, seg.src_port, seg.dst_port)
        if self.trace.enabled:
            cid = conn_id(self.address, seg.dst_port, src, seg.src_port)
            self.trace.emit(
                SegmentEvent(now, "in", cid, flags_str(seg.flags), seg.seq, seg.ack, seg.window,
                             len(seg.payload), format_options(seg.options))
            )
        conn = self.connections.get(key)
        if conn is not None:
            # RFC 6191 / RFC 9293 3.10.7.4 note: a new SYN may reuse a TIME_WAIT 4-tuple when its
            # sequence number is above the old connection's.
            if (conn.state is State.TIME_WAIT and seg.flags & SYN and not seg.flags & ACK
                    and seg.dst_port in self.listeners and seq.gt(seg.seq, conn.rcv_nxt)):
                conn.abort(now, "segment:S reuse")
                del self.connections[key]
                self.bounds.note(conn)
            else:
                conn.on_segment(seg, now)
                self._after(conn)
                return
        listener = self.listeners.get(seg.dst_port)
        if listener is not None:
            self._on_listen(listener, src, seg, now)
            return
        self._reset_closed(src, seg, now, "closed_port")

    def _on_listen(self, listener: Listener, src: str, seg: TcpSegment, now: float) -> None:
        """RFC 9293 3.10.7.2, LISTEN state; SYN cookies past the SYN queue (RFC 4987 3.6)."""
        flags = seg.flags
        if flags & RST:
            self._drop("listen_rst", now)
            return
        if flags & ACK:
            if not flags & SYN and self._cookie_ack(listener, src, seg, now):
                return
            self._reset_closed(src, seg, now, "listen_ack")
            return
        if not flags & SYN:
            self._drop("listen_no_syn", now)
            return
        if not listener.can_accept():
            self._overflow(listener, now)
            return
        mode = self.config.syncookies
        if mode == 2 or (mode == 1 and listener.syn_queue_full()):
            synack, cid = self.cookie_open.answer(listener, src, seg, now)
            self._transmit_segment(src, synack, cid, now)
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
        self._after(conn)
        return True

    def _overflow(self, listener: Listener, now: float) -> None:
        listener.overflows += 1
        self._drop("listen_overflow", now, f"port {listener.port}")

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

    def _reset_closed(self, src: str, seg: TcpSegment, now: float, reason: str) -> None:
        """RFC 9293 3.10.7.1: answer a segment for no connection with a RST, never a RST."""
        self._drop(reason, now)
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
        self._transmit_segment(src, rst, conn_id(self.address, seg.dst_port, src, seg.src_port), now)

    # ------------------------------------------------------------------ ICMP

    def _on_icmp(self, ip: IPv4Packet, now: float) -> None:
        try:
            msg = icmp.parse_icmp(ip.payload)
        except ParseError as e:
            self._drop(e.reason, now, e.detail)
            return
        if msg.type == icmp.ECHO_REQUEST:
            if not self.bounds.icmp.allow(now):
                self.counters["icmp_rate_limited"] += 1
                return
            self.counters["icmp_echo"] += 1
            self._send_ip(ip.src, PROTO_ICMP, icmp.build_icmp(icmp.echo_reply_for(msg)), now)
        elif msg.type == icmp.DEST_UNREACH and msg.code == icmp.FRAG_NEEDED:
            self._on_frag_needed(msg, now)
        else:
            self.counters[f"icmp_type_{msg.type}"] += 1

    def _on_frag_needed(self, msg: icmp.IcmpMessage, now: float) -> None:
        """RFC 1191: find the connection the quoted header belongs to and lower its MSS."""
        quoted = icmp.quoted_packet(msg)
        try:
            inner = parse_ipv4(quoted) if len(quoted) >= 28 else None
        except ParseError:
            inner = None
        if inner is None or inner.protocol != PROTO_TCP or len(inner.payload) < 8:
            # The quoted packet is truncated (header + 8 bytes), so parse ports by hand.
            raw = quoted
            if len(raw) < 28:
                self._drop("icmp_quote_short", now)
                return
            ihl = (raw[0] & 0x0F) * 4
            dst = ipv4.unpack_addr(bytes(raw[16:20]))
            sport = int.from_bytes(raw[ihl : ihl + 2], "big")
            dport = int.from_bytes(raw[ihl + 2 : ihl + 4], "big")
        else:
            dst = inner.dst
            sport = int.from_bytes(inner.payload[0:2], "big")
            dport = int.from_bytes(inner.payload[2:4], "big")
        conn = self.connections.get((dst, dport, sport))
        if not isinstance(conn, TcpConnection):  # none, or TIME_WAIT: nothing left to send
            self._drop("icmp_no_connection", now)
            return
        self.counters["icmp_frag_needed"] += 1
        conn.on_pmtu(icmp.next_hop_mtu(msg), now)
        self._after(conn)
