"""A host: IPv4 in and out, TCP demultiplexing, listeners and the port table (ICMP: stack.icmp4).

With an IPv6 address too (`address6`), version-6 packets go to its IPv6 layer (`stack.host6`),
which hands TCP segments back here: one connection table and one listener per port serve both
families (a listener accepts IPv4 and IPv6 clients, as a Linux socket bound to `::` does).

Sans-I/O, like everything in the core: see `stack.driver` for how a driver pumps it. A malformed
packet never raises out of `receive`: it is dropped, counted in `counters` under its reason, and
traced as a Drop event.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable

from stack import seq, tunpath
from stack.closed_port import ClosedPort, ConfigOf
from stack.config import TcpConfig
from stack.cookie_open import CookieOpen
from stack.errors import ParseError
from stack.guard import Bounds
from stack.host6 import Ipv6Layer
from stack.icmp4 import Icmp4
from stack.inet import canonical, is_ipv6
from stack.martian import MartianFilter
from stack.passive_open import PassiveOpen
from stack.tcp.connection import TcpConnection
from stack.tcp.isn import IsnGenerator
from stack.tcp.listener import Listener
from stack.tcp.ratelimit import ChallengeAckLimiter
from stack.tcp.state import State
from stack.tcp.time_wait import TimeWaitRecord, can_stand_in
from stack.timer_heap import TimerHeap
from stack.trace import Drop, PacketEvent, Trace, conn_id
from stack.wire import ipv4, vnet
from stack.wire.ipv4 import PROTO_ICMP, PROTO_TCP, IPv4Packet, build_ipv4, pack_addr, parse_ipv4
from stack.wire.tcp import ACK, FIN, SYN, TcpSegment, build_tcp_header, parse_tcp

EPHEMERAL_PORTS = (32768, 60999)  # Linux's default ip_local_port_range
ConnKey = tuple[str, int, int]  # (remote ip, remote port, local port)
Entry = TcpConnection | TimeWaitRecord  # what the table holds: orphans in TIME_WAIT are records
# The most TCP payload one super-segment carries: its IP packet (an IPv4 or IPv6 header, TCP's
# with the largest options) must stay under Linux's GSO_MAX_SIZE 65536 and the 16-bit lengths.
GSO_MAX_PAYLOAD = 0xFFFF - 20 - 60
GSO_MAX_PAYLOAD6 = 0xFFFF - 40 - 60
SYN_FIN = SYN | FIN
DROP_SYN_FIN = "tcp_syn_fin"  # TcpConfig.drop_synfin: a segment with SYN and FIN, dropped unanswered


class Host(ClosedPort, PassiveOpen, Icmp4):
    def __init__(
        self,
        address: str,
        *,
        config: TcpConfig | None = None,
        trace: Trace | None = None,
        rng: random.Random | None = None,
        isn_key: bytes = b"",
        address6: str | None = None,
        offload: bool = False,
        tso: bool = True,
    ) -> None:
        self.address = address
        # Offload mode (a TUN device with IFF_VNET_HDR, see stack.tunpath): every packet in and
        # out starts with a virtio-net header; TCP checksums are left to the kernel and data
        # leaves in TSO super-segments (TSO4, TSO6) of up to gso_max payload octets; with
        # tso=False segment by segment (the checksum offload alone).
        self.offload = offload
        self.tso = offload and tso
        self.gso_max = GSO_MAX_PAYLOAD if self.tso else 0
        self.address_raw = pack_addr(address)
        self.address6 = canonical(address6) if address6 is not None else None
        if self.address6 is not None and not is_ipv6(self.address6):
            raise ValueError(f"address6 must be an IPv6 address, got {address6!r}")
        self.config = config or TcpConfig()
        self.trace = trace or Trace()
        self.rng = rng or random.Random(0)
        self.isn = IsnGenerator(isn_key)
        challenge_rng = random.Random(b"challenge-ack:" + isn_key)  # its budget's draws (stack.tcp.ratelimit)
        self.challenge = ChallengeAckLimiter(self.config.challenge_ack_limit, challenge_rng)
        self.counters: Counter[str] = Counter()
        self.martians = MartianFilter((address,))
        self.bounds = Bounds(self.config)
        self.cookie_open = CookieOpen(self, isn_key)
        self._clock = 0.0  # the latest `now` seen (application calls bring none)
        self.connections: dict[ConnKey, Entry] = {}
        self.listeners: dict[int, Listener] = {}
        self.bound: dict[int, ConfigOf] = {}  # stack.closed_port
        self._out: list[bytes] = []
        self._events: dict[object, None] = {}  # insertion-ordered set
        self._batch = tunpath.BatchAcks()
        self._timers: TimerHeap[ConnKey, Entry] = TimerHeap(self.connections)
        self._ident = self.rng.randrange(0x10000)
        # Bound once: every connection keeps these three, and each `self._x` is a new object.
        self._callbacks = (self._transmit, self._notify, self._sched)
        self.ip6 = None if self.address6 is None else Ipv6Layer(self, self.address6, isn_key + b"flow")
        # RFC 1122 4.2.3.9: the last ICMP soft error of a connection, reported if it times out.

    # ------------------------------------------------------------------ driver interface

    def receive(self, packet: bytes | memoryview, now: float, *, loopback: bool = False) -> None:
        """Process one IP packet (in offload mode: a virtio-net header and its packet); never raises
        for bad input: drops and counts it. `loopback`: the packet never left this host, so our own
        address as its source is genuine; from any interface it is martian (stack.martian)."""
        self._clock = now
        trusted, gso, partial = False, 0, False
        try:
            if self.offload:
                packet, trusted, gso, partial = tunpath.unframe(packet)
            if packet[:1] and packet[0] >> 4 == 6:
                if self.ip6 is None:
                    self.drop("ip6_no_address", now)
                else:
                    self.ip6.receive(packet, now, trusted, gso, partial)
                return
            ip = parse_ipv4(packet)
        except ParseError as e:
            self.drop(e.reason, now, e.detail)
            return
        if self.trace.enabled:
            # (In offload mode a view of the frame: no copy of a 64 KB super-segment per event.
            # The pcap completes a partial checksum where TCP keeps it; other protocols as read.)
            partial = partial and ip.protocol == PROTO_TCP
            self.trace.emit(PacketEvent(now, "in", packet, gso, partial))
        if ip.dst != self.address:
            self.drop("ip_not_for_us", now, ip.dst)
            return
        src_raw = pack_addr(ip.src)
        martian = None if loopback else self.martians.check_source(src_raw)
        if martian is not None:
            self.drop(martian, now, ip.src)  # never answered: it is forged
            return
        if ip.is_fragment:
            self.drop("ip_fragment", now)  # no reassembly (yet): count and drop
            return
        if ip.protocol == PROTO_TCP:
            try:
                seg = parse_tcp(ip.payload, src_raw, self.address_raw, not trusted)
            except ParseError as e:
                self.drop(e.reason, now, e.detail)
                return
            self.on_tcp(ip.src, seg, now, gso)
        elif ip.protocol == PROTO_ICMP:
            self._on_icmp(ip, now)
        else:
            self.drop("ip_protocol", now, str(ip.protocol))

    def receive_batch(self, packets: Iterable[bytes], now: float) -> None:
        """Process packets read together (one TUN read): as `receive` each, except that in-order
        data is acknowledged once per connection at the end of the batch (stack.tunpath)."""
        self._batch.receive(self, packets, now)

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
            self.after_event(conn)

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
            self.after_event(conn)
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
        remote_ip = canonical(remote_ip)
        self.local_address(remote_ip)  # this host must speak the remote's family
        if local_port is None:
            local_port = self.ephemeral_port(remote_ip, remote_port)
        elif (remote_ip, remote_port, local_port) in self.connections:
            raise OSError(98, "Address already in use")
        conn = self._new_connection(local_port, remote_ip, remote_port, config or self.config, now, None)
        self.connections[(remote_ip, remote_port, local_port)] = conn
        if setup is not None:
            setup(conn)
        conn.open_active(now)
        self.after_event(conn)
        return conn

    def app_call(self, conn: Entry) -> None:
        """Tell the host an application call changed conn (so its timer and table stay right)."""
        self.after_event(conn)

    def find(self, local_port: int, remote_ip: str, remote_port: int) -> TcpConnection | None:
        """The connection on this 4-tuple (not a TIME_WAIT record: no application has that)."""
        conn = self.connections.get((remote_ip, remote_port, local_port))
        return conn if isinstance(conn, TcpConnection) else None

    def local_address(self, remote_ip: str) -> str:
        """Our address of remote_ip's family (ENETUNREACH if we have none)."""
        if not is_ipv6(remote_ip):
            return self.address
        if self.address6 is None:
            raise OSError(101, f"Network is unreachable: this host has no IPv6 address for {remote_ip}")
        return self.address6

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
        local_ip = self.local_address(remote_ip)
        iss = self.isn.isn(now, local_ip, local_port, remote_ip, remote_port) if iss is None else iss
        ts_offset = self.rng.randrange(1 << 32) if ts_offset is None else ts_offset
        return TcpConnection(
            local_ip=local_ip,
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
            gso_max=min(self.gso_max, GSO_MAX_PAYLOAD6) if is_ipv6(remote_ip) else self.gso_max,
            defer_ack=self._batch.defer,
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

    def after_event(self, conn: Entry) -> None:
        """Enforce the host-wide bounds (stack.guard); swap an orphan entering TIME_WAIT for a
        light record (stack.tcp.time_wait); forget a connection once it is CLOSED (its object
        stays with the application)."""
        if conn.state is State.ESTABLISHED and not conn.app_closed:
            # Nothing below applies (the bounds track only what the application closed, and
            # close() is final): the common case, after every segment of a transfer.
            return
        self.bounds.enforce(conn, self._clock, self.counters)
        key = (conn.remote_ip, conn.remote_port, conn.local_port)
        if conn.state is State.TIME_WAIT and isinstance(conn, TcpConnection) and can_stand_in(conn):
            if self.connections.get(key) is conn:
                record = TimeWaitRecord(conn, self._transmit, self._sched, self.challenge)
                self.connections[key] = record
                self.bounds.replace(conn, record)
                self._sched(record)
            return
        if conn.state is State.CLOSED or conn.state is State.LISTEN:
            if self.connections.get(key) is conn:
                del self.connections[key]

    def drop(self, reason: str, now: float, detail: str = "") -> None:
        self.counters[reason] += 1
        if self.trace.enabled:
            self.trace.emit(Drop(now, reason, detail))

    def _send_ip(self, dst: str, protocol: int, payload: bytes, now: float) -> None:
        packet = build_ipv4(IPv4Packet(self.address, dst, protocol, payload, ident=self.next_ip_ident()))
        self.queue_packet(packet)
        if self.trace.enabled:
            self.trace.emit(PacketEvent(now, "out", packet))

    def queue_packet(self, packet: bytes) -> None:
        """Queue one complete IP packet (of either family) for the driver."""
        self._out.append(vnet.PLAIN + packet if self.offload else packet)

    def queue_frame(self, frame: bytes) -> None:
        """Queue one frame that already carries its virtio-net header (stack.tunpath)."""
        self._out.append(frame)

    def next_ip_ident(self, count: int = 1) -> int:
        """The IPv4 identification of the next packet, reserving `count` in a row."""
        ident = (self._ident + 1) & 0xFFFF
        self._ident = (ident + count - 1) & 0xFFFF
        return ident

    def _transmit(self, conn: Entry, seg: TcpSegment, now: float, gso: int = 0) -> None:
        self._transmit_segment(conn.remote_ip, seg, conn.id, now, gso, conn.config)

    def _transmit_segment(self, remote_ip: str, seg: TcpSegment, cid: str, now: float, gso: int = 0,
                          config: TcpConfig | None = None) -> None:
        """`config`: the IP header fields (TTL, TOS; hop limit, traffic class) of the socket
        that sends seg; the host's by default."""
        cfg = config or self.config
        if self.trace.enabled:
            self.trace.segment(now, "out", cid, seg, gso)
        if self.ip6 is not None and is_ipv6(remote_ip):
            self.ip6.send_tcp(remote_ip, seg, now, gso, cfg)
            return
        if self.offload:
            tunpath.send_tcp_offload(self, remote_ip, seg, now, gso, cfg)
            return
        dst = pack_addr(remote_ip)
        tcp = build_tcp_header(seg, self.address_raw, dst)
        ident = self.next_ip_ident()
        # The header build_ipv4 would make (DF), without an IPv4Packet per segment.
        total = ipv4.MIN_HEADER_LEN + len(tcp) + len(seg.payload)
        header = ipv4.ipv4_header(self.address_raw, dst, PROTO_TCP, total, ident, cfg.ip_ttl, cfg.ip_tos)
        packet = b"".join((header, tcp, seg.payload))  # the payload's one copy
        self._out.append(packet)
        if self.trace.enabled:
            self.trace.emit(PacketEvent(now, "out", packet))

    # ------------------------------------------------------------------ TCP demultiplexing

    def on_tcp(self, src: str, seg: TcpSegment, now: float, gso: int = 0) -> None:
        key = (src, seg.src_port, seg.dst_port)
        conn = self.connections.get(key)
        if self.trace.enabled:
            cid = conn.id if conn is not None else conn_id(self.local_address(src), seg.dst_port, src,
                                                            seg.src_port)
            self.trace.segment(now, "in", cid, seg, gso)
        if seg.flags & SYN_FIN == SYN_FIN and self.config.drop_synfin:
            self.drop(DROP_SYN_FIN, now)  # in any state, never answered (FreeBSD's drop_synfin)
            return
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
                self.after_event(conn)
                return
        listener = self.listeners.get(seg.dst_port)
        if listener is not None:
            self._on_listen(listener, src, seg, now)
            return
        self._reset_closed(src, seg, now, "closed_port")

