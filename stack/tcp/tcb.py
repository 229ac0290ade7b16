"""The transmission control block: the variables of one connection (RFC 9293 3.3.1) and the one
way out, shared by the role modules that make up a TcpConnection.

`Tcb` holds every variable and what is derived from them (MSS, FlightSize, buffers), the one
method that changes state (`_transition`, through the table of stack.tcp.transitions) and the one
that emits a segment (`_emit`). The roles (timers, autotune, recovery, sender, receiver,
handshake) are layers over this one object, each class the base of the next in that order, with
TcpConnection on top: they read and write the same attributes directly, as the RFC's pseudo-code
does, and cost no extra indirection on the per-segment path. The methods a role calls in a role
above it are declared at the bottom of this class and implemented there. (One chain, not
mixins: the method resolution order is the one the mixins had, and mypyc, which compiles the
optional accelerated build, supports single inheritance only.)
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any, Protocol

from stack import seq
from stack.compiled import mypyc_attr
from stack.config import TcpConfig
from stack.errors import socket_error
from stack.inet import IPV6_MIN_MTU, is_ipv6, tcp_overhead
from stack.tcp import congestion
from stack.tcp.bytequeue import ByteQueue
from stack.tcp.counters import ConnStats
from stack.tcp.cwv import CwndUse
from stack.tcp.ratelimit import ChallengeAckLimiter, OutOfWindowLimiter
from stack.tcp.reassembly import OutOfOrderQueue
from stack.tcp.rtt import RttEstimator
from stack.tcp.scoreboard import Scoreboard
from stack.tcp.segsize import SegmentSize
from stack.tcp.state import CAN_SEND, SYNCHRONIZED, State
from stack.tcp.transitions import Event, take
from stack.trace import CongestionEvent, Drop, RttEvent, StateChange, TimerEvent, Trace, conn_id
from stack.wire.tcp import ACK, RST, SYN, Nop, Sack, TcpOption, TcpSegment, Timestamps

TIMER_SLACK = 1e-6  # an asyncio loop may call us a hair before the deadline it was given
MAX_WSCALE = 14  # RFC 7323 2.3
TS_HZ = 1000  # timestamp clock: 1 ms per tick (RFC 7323 5.4 allows 1 ms to 1 s)


class ListenerLink(Protocol):
    """What a passively opened connection tells the listener that made it (stack.tcp.listener).
    `conn` is the TcpConnection itself (Any here: this module imports nothing above it)."""

    def can_accept(self) -> bool: ...

    def established(self, conn: Any) -> None: ...

    def forget(self, conn: Any) -> None: ...

    def overflow(self) -> None: ...


@mypyc_attr(allow_interpreted_subclasses=True)
class Tcb(SegmentSize):
    def __init__(
        self,
        *,
        local_ip: str,
        local_port: int,
        remote_ip: str,
        remote_port: int,
        config: TcpConfig,
        trace: Trace,
        iss: int,
        now: float,
        transmit: Callable[..., None],
        notify: Callable[[Any], None],
        sched: Callable[[Any], None],
        challenge: ChallengeAckLimiter,
        ts_offset: int = 0,
        listener: ListenerLink | None = None,
        gso_max: int = 0,
        defer_ack: Callable[[Any], bool] | None = None,
    ) -> None:
        self.local_ip = local_ip
        self.local_port = local_port
        self.remote_ip = remote_ip
        self.remote_port = remote_port
        self.id = conn_id(local_ip, local_port, remote_ip, remote_port)
        self.config = config
        self.trace = trace
        # The host's callbacks take the TcpConnection this Tcb is part of, i.e. `self`.
        # transmit(conn, seg, now) sends one segment; transmit(conn, seg, now, gso) one TSO
        # super-segment to be cut into segments of gso payload octets (only when gso_max > 0).
        self._transmit = transmit
        self.gso_max = gso_max  # the most payload one super-segment may carry; 0: no TSO
        # defer_ack(conn): True when the host is processing a batch of packets read together and
        # will call conn.flush_ack at its end (see _ack_in_batch).
        self._defer_ack = defer_ack
        self.ack_pending = False
        self._notify = notify
        self._sched = sched
        self._challenge = challenge
        self._oow = OutOfWindowLimiter(config.invalid_ratelimit)
        self.listener = listener
        self.state = State.CLOSED
        self.stats = ConnStats()
        self.created = now

        # Send sequence variables (RFC 9293 3.3.1). snd_max is the highest sequence sent + 1;
        # snd_nxt is pulled back to snd_una after a retransmission timeout (go-back-N).
        self.iss = iss
        self.snd_una = iss
        self.snd_nxt = iss
        self.snd_max = iss
        self.snd_wnd = 0
        self.snd_wl1 = 0
        self.snd_wl2 = 0
        self.max_snd_wnd = 0
        self.snd_up: int | None = None  # urgent pointer: the octet after the urgent data
        # Send buffer: every octet from sndq_seq that is not yet acknowledged.
        self.sndq = ByteQueue()
        self.sndq_seq = seq.add(iss, 1)
        self.fin_queued = False
        self.push_seq: int | None = None  # PSH goes on the segment ending a write (RFC 9293 3.9.1.2)
        self.snd_sml = iss  # end of the last segment shorter than the MSS we sent (Minshall)

        # Receive sequence variables.
        self.irs = 0
        self.rcv_nxt = 0
        self.rcv_adv = 0  # right edge of the window we last advertised (never moves left)
        self.rcv_up: int | None = None
        # The window Linux would offer (its rcv_ssthresh): the initial window, grown by two
        # segments per segment received (tcp_grow_window). Only window_update_doubling reads it.
        self.rcv_ssthresh = min(config.rcvbuf, 0xFFFF)
        self.rcvq = ByteQueue()  # in-order data not yet read by the application
        self.ooo = OutOfOrderQueue(config.rcvbuf)  # held within the receive buffer
        self.fin_received = False
        self.urgent_mark: int | None = None  # bytes still to read before the urgent octet

        # Negotiated options.
        # RFC 9293 3.7.1 (MUST-15): without an MSS option assume 536 over IPv4 (the configured
        # default, FreeBSD's mssdflt), 1220 over IPv6 (the IPv6 minimum MTU less 60), as Linux does.
        self.default_peer_mss = IPV6_MIN_MTU - 60 if is_ipv6(remote_ip) else config.default_peer_mss
        self._peer_mss = self.default_peer_mss  # these three: stack.tcp.segsize
        self._pmtu = config.mtu
        self._ts_ok = False
        self.ip_overhead = tcp_overhead(remote_ip)  # IP + TCP headers: 40 over IPv4, 60 over IPv6
        self._update_mss()
        self.snd_wscale = 0
        self.rcv_wscale = 0  # chosen when the connection opens (Handshake._choose_wscale)
        self.ws_ok = False
        self.sack_ok = False
        self.ts_offset = ts_offset
        self.ts_recent = 0
        self.ts_recent_age = 0.0
        self.last_ack_sent = 0

        # RTT, retransmission and congestion control.
        self.rtt = RttEstimator(config.rto_initial, config.rto_min, config.rto_max, config.clock_granularity,
                                config.rto_min_in_variance)
        self.backoff = 0
        self.retries = 0
        self.rtt_seq: int | None = None  # Karn: the segment being timed (no timestamps)
        self.rtt_time = 0.0
        self.cc = congestion.create(
            config.congestion_control, self.mss, config.initial_window_segments * self.mss, now
        )
        if gso_max:
            # With TSO the peer acknowledges whole super-segments (GRO): one ACK for up to 45
            # segments is the normal case, not an ACK-division risk. RFC 3465 2.2's L = 2 would
            # hold slow start to a few percent a round trip; count every segment acked, as Linux.
            self.cc.abc_limit = max(gso_max // self.cc.mss, 2)
        self.cwnd_use = CwndUse(iss)  # whether cwnd is what limits sending (stack.tcp.cwv)
        self.scoreboard = Scoreboard(self.mss, config.dupack_threshold)
        self.dupacks = 0
        self.in_recovery = False
        self.recover = iss  # RFC 6582 "recover"
        self.high_rxt = iss  # RFC 6675 HighRxt
        self.rto_recovery = False  # go-back-N after an RTO, until snd_max is acknowledged
        self.dsack: tuple[int, int] | None = None  # a duplicate to report (RFC 2883)
        self._partial_ack_seen = False

        # Timers (stack.tcp.timers): absolute deadlines or None.
        self.rto_at: float | None = None
        self.persist_at: float | None = None
        self.persist_backoff = 0
        self.delack_at: float | None = None
        self.keepalive_at: float | None = None
        self.keepalive_probes = 0
        self.time_wait_at: float | None = None
        self.fin_wait_2_at: float | None = None
        self.unacked_segs = 0  # full-sized segments received since our last ACK
        # Quick-ACK mode (config.quickack_segments, Linux's icsk_ack.quick/pingpong): ACKs
        # still owed at once, whether the connection is interactive, when data last came.
        self.quickacks = 0
        self.pingpong = False
        self.data_rcv_time: float | None = None
        self.last_recv_time = now
        self._deadline: float | None = None

        # Socket-level settings (setsockopt) and application-visible status.
        self.nodelay = not config.nagle
        self.keepalive = False
        self.linger_zero = False
        self.sndbuf = config.sndbuf
        self.rcvbuf = config.rcvbuf
        # Autotuning (stack.tcp.autotune): the most each buffer may grow to (None: as set); the
        # octets read in the last measured round trip, read in all when this one began, and when.
        self.sndbuf_max = None if config.sndbuf_locked else config.sndbuf_max
        self.rcvbuf_max = None if config.rcvbuf_locked else config.rcvbuf_max
        self.rcvq_space, self.rcvq_space_mark = 0, 0
        self.rcvq_space_time: float | None = None
        self.rcv_rtt: float | None = None  # the round trip the receiver measures (autotune)
        self.error: BaseException | None = None
        self.soft_error: OSError | None = None  # the last ICMP soft error, what a timeout reports
        self.write_shut = False
        self.read_shut = False  # shutdown(SHUT_RD): reads return 0 once the queue is empty
        self.app_closed = False  # close() was called: orphaned once closed
        self.accepted = False

    # ------------------------------------------------------------------ derived values

    @property
    def flight_size(self) -> int:
        """FlightSize of RFC 5681: data sent but not yet cumulatively acknowledged."""
        return seq.sub(self.snd_max, self.snd_una)

    @property
    def fin_seq(self) -> int:
        return seq.add(self.sndq_seq, len(self.sndq))

    @property
    def at_eof(self) -> bool:
        return self.fin_received and not self.rcvq

    @property
    def readable(self) -> int:
        return len(self.rcvq)

    @property
    def send_space(self) -> int:
        return max(self.sndbuf - len(self.sndq), 0)

    @property
    def is_open_for_send(self) -> bool:
        return self.state in CAN_SEND and not self.write_shut and self.error is None

    @property
    def connected(self) -> bool:
        return self.state in SYNCHRONIZED

    def tsval(self, now: float) -> int:
        return (int(now * TS_HZ) + self.ts_offset) & seq.MASK

    def _ts_to_time(self, tsecr: int, now: float) -> float:
        ticks = seq.sub(self.tsval(now), tsecr)
        return now - ticks / TS_HZ

    # ------------------------------------------------------------------ the one state change

    def _transition(self, event: Event, cause: str, now: float) -> None:
        """Change state as TRANSITIONS says (a pair not in it raises TransitionError); trace it."""
        old = self.state
        new = take(old, event)
        if old is new:
            return
        self.state = new
        if self.trace.enabled:
            self.trace.emit(StateChange(now, self.id, old.value, new.value, cause))
        if new is State.CLOSED:
            self._cancel_all_timers()
        self._notify(self)

    def _fail(self, error: BaseException, event: Event, cause: str, now: float) -> None:
        """The connection is over because of error: tell the application, go to CLOSED."""
        if self.error is None:
            self.error = error
        self.sndq.clear()
        if self.state is not State.CLOSED:
            self._transition(event, cause, now)
        self._update_deadline()

    def _give_up(self, now: float, cause: str) -> None:
        self._fail(self.soft_error or socket_error(errno.ETIMEDOUT), Event.USER_TIMEOUT, cause, now)
        if self.listener is not None:
            self.listener.forget(self)

    # ------------------------------------------------------------------ trace helpers

    def _drop(self, reason: str, now: float, detail: str = "") -> None:
        self.stats.drops[reason] = self.stats.drops.get(reason, 0) + 1
        if self.trace.enabled:
            self.trace.emit(Drop(now, reason, detail, self.id))

    def _cwnd_event(self, why: str, now: float) -> None:
        if self.trace.enabled:
            self.trace.emit(
                CongestionEvent(now, self.id, self.cc.cwnd, self.cc.ssthresh, why, self.flight_size)
            )

    def _rtt_sample(self, sample: float, now: float) -> None:
        self.rtt.sample(sample)
        if self.trace.enabled:
            srtt = self.rtt.srtt if self.rtt.srtt is not None else sample
            self.trace.emit(RttEvent(now, self.id, sample, srtt, self.rtt.rttvar, self.rtt.rto))

    # ------------------------------------------------------------------ the one way out

    def _options(self, flags: int, now: float, payload_len: int = 0) -> tuple[TcpOption, ...]:
        if flags & SYN:
            return self._syn_options(flags, now)
        opts: list[TcpOption] = []
        if self.ts_ok:
            opts += [Nop(), Nop(), Timestamps(self.tsval(now), self.ts_recent)]
        if self.sack_ok and (self.dsack is not None or len(self.ooo)):
            limit = 3 if self.ts_ok else 4
            # Never past the path MTU: a data segment carries only the blocks that fit.
            room = self.pmtu - self.ip_overhead - payload_len - (12 if self.ts_ok else 0)
            limit = min(limit, max((room - 4) // 8, 0))
            blocks: list[tuple[int, int]] = []
            if limit > 0:
                if self.dsack is not None:
                    blocks.append(self.dsack)  # RFC 2883: the D-SACK block goes first
                    self.stats.dsacks_out += 1
                    self.dsack = None
                blocks += self.ooo.sack_blocks(limit)
                opts += [Nop(), Nop(), Sack(tuple(blocks[:limit]))]
        return tuple(opts)

    def _emit(self, flags: int, seqno: int, now: float, payload: bytes = b"", urgent: int = 0,
              gso: int = 0) -> None:
        """Send one segment now; with gso, one super-segment of segments of gso payload octets
        each (the options, SACK blocks included, are sized for one of them: each carries them)."""
        ack = self.rcv_nxt if flags & ACK else 0
        window = 0 if flags & RST and self.config.rst_window_zero else self._window_field(bool(flags & SYN))
        options = self._options(flags, now, gso or len(payload))
        seg = TcpSegment(
            self.local_port, self.remote_port, seqno, ack, flags, window, payload, options, urgent
        )
        if flags & ACK:
            if self.quickacks and self.rcv_nxt != self.last_ack_sent:
                self.quickacks -= 1  # an ACK of new data (Linux tcp_dec_quickack_mode)
            self.last_ack_sent = self.rcv_nxt
            self.delack_at = None
            self.unacked_segs = 0
            self.ack_pending = False
        if gso:
            self.stats.segs_out += -(-len(payload) // gso)
            self._transmit(self, seg, now, gso)
        else:
            self.stats.segs_out += 1
            self._transmit(self, seg, now)

    def _ack_seq(self) -> int:
        """SEQ of a segment without text (RFC 9293 3.10.7.4: <SEQ=SND.NXT>). SND.NXT in the RFC's
        sense is snd_max here (snd_nxt is pulled back for go-back-N after an RTO, and a segment
        below the peer's RCV.NXT is unacceptable, so its ACK would be ignored: both ends in RTO
        recovery would then ignore each other's ACKs forever). Never beyond the peer's window
        (a zero-window probe octet may lie there), as Linux's tcp_acceptable_seq."""
        wnd_end = seq.add(self.snd_una, self.snd_wnd)
        return self.snd_max if seq.le(self.snd_max, wnd_end) else wnd_end

    def _send_ack(self, now: float) -> None:
        self._emit(ACK, self._ack_seq(), now)

    def _ack_in_batch(self, now: float) -> None:
        """The ACK that in-order data calls for: at once, or, while the host processes a batch of
        packets read together (one TUN read), once at the batch's end for all of them: a stretch
        ACK, as Linux sends after GRO merged the same packets (RFC 5681 4.2 asks for an ACK every
        second full-sized segment; this trades that SHOULD for one write per batch). A data
        segment sent meanwhile carries the acknowledgment, and then no ACK goes at all."""
        if self._defer_ack is not None and self._defer_ack(self):
            self.ack_pending = True
        else:
            self._send_ack(now)

    def _send_challenge_ack(self, now: float, why: str) -> None:
        """RFC 5961 sections 3.2, 4.2, 5.2: ACK with our current numbers, rate limited per
        connection first (so no one connection can count the host-wide budget), then host-wide
        (section 7)."""
        if self._oow.allow(now) and self._challenge.allow(now):
            self.stats.challenge_acks += 1
            if self.trace.enabled:
                self.trace.emit(TimerEvent(now, self.id, "challenge_ack", why))
            self._send_ack(now)
        else:
            self._drop("challenge_ack_limited", now, why)

    # ------------------------------------------------------------------ implemented by the roles

    def _syn_options(self, flags: int, now: float) -> tuple[TcpOption, ...]:  # handshake
        raise NotImplementedError

    def _send_syn(self, now: float, retransmit: bool = False) -> None:  # handshake
        raise NotImplementedError

    def _window_field(self, syn: bool) -> int:  # receiver
        raise NotImplementedError

    def _update_ts_recent(self, seg: TcpSegment, now: float) -> None:  # receiver
        raise NotImplementedError

    def _process_text_and_fin(self, seg: TcpSegment, now: float, seqno: int) -> None:  # receiver
        raise NotImplementedError

    def _output(self, now: float, force_one: bool = False) -> None:  # sender
        raise NotImplementedError

    def _send_data(self, start: int, n: int, now: float, force_push: bool = False,
                   gso: int = 0) -> None:  # sender
        raise NotImplementedError

    def _retransmit(self, start: int, now: float, why: str) -> None:  # sender
        raise NotImplementedError

    def _usable_window(self) -> int:  # recovery
        raise NotImplementedError

    def _recovery_on_ack(self, seg: TcpSegment, ack: int, acked: int, flight_before: int,
                         now: float) -> None:  # recovery
        raise NotImplementedError

    def _sack_recovery(self, now: float) -> bool:  # recovery
        raise NotImplementedError

    def _sacked_end(self, sn: int) -> int:  # recovery
        raise NotImplementedError

    def _sndbuf_expand(self) -> None:  # autotune
        raise NotImplementedError

    def _rcv_rtt_measure(self, seg: TcpSegment, now: float) -> None:  # autotune
        raise NotImplementedError

    def _arm_rto(self, now: float, restart: bool = False) -> None:  # timers
        raise NotImplementedError

    def _arm_persist(self, now: float) -> None:  # timers
        raise NotImplementedError

    def _update_deadline(self) -> None:  # timers
        raise NotImplementedError

    def _cancel_all_timers(self) -> None:  # timers
        raise NotImplementedError

    def _start_keepalive(self, now: float) -> None:  # timers
        raise NotImplementedError

    def _enter_time_wait(self, now: float, cause: str, event: Event) -> None:  # timers
        raise NotImplementedError

    def _restart_time_wait(self, now: float) -> None:  # timers
        raise NotImplementedError

    def abort(self, now: float, cause: str = "call:abort") -> None:  # connection
        raise NotImplementedError
