"""One TCP connection: the event processing of RFC 9293 section 3.10, without I/O.

Three ways in: `on_segment` (a segment arrived), `on_timer` (the deadline came), and the
application calls (`send`, `recv`, `shutdown`, `close`, `abort`). One way out: the `transmit`
callable the host passes in receives every segment at the moment it is sent. One deadline:
`deadline()`. The host reschedules its timer heap through `sched` when the deadline moves and hears
of application-visible changes (data readable, space writable, state, error) through `notify`.

Reliability (RFC 6298 retransmission timer, RFC 5681/6675/6582 loss recovery, RFC 7323 window
scale and timestamps, RFC 2018/2883 SACK, delayed ACK, Nagle, persist and keepalive timers) lives
here too: they all act on the same sequence variables and timers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from stack import seq
from stack.config import TcpConfig
from stack.inet import endpoint, tcp_overhead
from stack.tcp import congestion
from stack.tcp.reassembly import OutOfOrderQueue
from stack.tcp.rtt import RttEstimator
from stack.tcp.scoreboard import Scoreboard
from stack.tcp.state import CAN_RECEIVE_TEXT, CAN_SEND, SYNCHRONIZED, State
from stack.trace import CongestionEvent, Drop, Retransmit, RttEvent, StateChange, TimerEvent, Trace, conn_id
from stack.wire.tcp import (
    ACK,
    FIN,
    PSH,
    RST,
    SYN,
    URG,
    Mss,
    Nop,
    Sack,
    SackPermitted,
    TcpOption,
    TcpSegment,
    Timestamps,
    WindowScale,
    flags_str,
)

if TYPE_CHECKING:
    from stack.tcp.listener import Listener

TIMER_SLACK = 1e-6  # an asyncio loop may call us a hair before the deadline it was given
MAX_WSCALE = 14  # RFC 7323 2.3
TS_HZ = 1000  # timestamp clock: 1 ms per tick (RFC 7323 5.4 allows 1 ms to 1 s)


class ChallengeAckLimiter:
    """Host-wide rate limit on RFC 5961 challenge ACKs (section 7): at most `per_second`."""

    def __init__(self, per_second: int) -> None:
        self.per_second = per_second
        self._window_start = -1.0
        self._count = 0

    def allow(self, now: float) -> bool:
        if now - self._window_start >= 1.0:
            self._window_start = now
            self._count = 0
        if self._count >= self.per_second:
            return False
        self._count += 1
        return True


@dataclass
class ConnStats:
    """Counters an application or `tcplab ss` can read (observable, not internal state)."""

    segs_in: int = 0
    segs_out: int = 0
    bytes_sent: int = 0  # new data octets, first transmissions
    bytes_retrans: int = 0
    bytes_acked: int = 0
    bytes_received: int = 0  # in-order octets delivered to the receive buffer
    retransmits: int = 0
    rto_expiries: int = 0
    fast_retransmits: int = 0
    dupacks_in: int = 0
    challenge_acks: int = 0
    dsacks_out: int = 0
    ooo_segments: int = 0
    zero_window_probes: int = 0
    keepalive_probes: int = 0
    drops: dict[str, int] = field(default_factory=dict)


class TcpConnection:
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
        transmit: Callable[[TcpConnection, TcpSegment, float], None],
        notify: Callable[[TcpConnection], None],
        sched: Callable[[TcpConnection], None],
        challenge: ChallengeAckLimiter,
        ts_offset: int = 0,
        listener: Listener | None = None,
    ) -> None:
        self.local_ip = local_ip
        self.local_port = local_port
        self.remote_ip = remote_ip
        self.remote_port = remote_port
        self.id = conn_id(local_ip, local_port, remote_ip, remote_port)
        self.config = config
        self.trace = trace
        self._transmit = transmit
        self._notify = notify
        self._sched = sched
        self._challenge = challenge
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
        self.sndq = bytearray()
        self.sndq_seq = seq.add(iss, 1)
        self.fin_queued = False
        self.push_seq: int | None = None  # PSH goes on the segment ending a write (RFC 9293 3.9.1.2)

        # Receive sequence variables.
        self.irs = 0
        self.rcv_nxt = 0
        self.rcv_adv = 0  # right edge of the window we last advertised (never moves left)
        self.rcv_up: int | None = None
        self.rcvq = bytearray()  # in-order data not yet read by the application
        self.ooo = OutOfOrderQueue(config.ooo_limit)
        self.fin_received = False
        self.urgent_mark: int | None = None  # bytes still to read before the urgent octet

        # Negotiated options.
        self.peer_mss = config.default_peer_mss
        self.pmtu = config.mtu
        self.ip_overhead = tcp_overhead(remote_ip)  # IP + TCP headers: 40 over IPv4, 60 over IPv6
        self.snd_wscale = 0
        self.rcv_wscale = self._choose_wscale() if config.window_scaling else 0
        self.ws_ok = False
        self.sack_ok = False
        self.ts_ok = False
        self.ts_offset = ts_offset
        self.ts_recent = 0
        self.ts_recent_age = 0.0
        self.last_ack_sent = 0

        # RTT, retransmission and congestion control.
        self.rtt = RttEstimator(config.rto_initial, config.rto_min, config.rto_max, config.clock_granularity)
        self.backoff = 0
        self.retries = 0
        self.rtt_seq: int | None = None  # Karn: the segment being timed (no timestamps)
        self.rtt_time = 0.0
        self.cc = congestion.create(
            config.congestion_control, self.mss, config.initial_window_segments * self.mss, now
        )
        self.scoreboard = Scoreboard(self.mss, config.dupack_threshold)
        self.dupacks = 0
        self.in_recovery = False
        self.recover = iss  # RFC 6582 "recover"
        self.high_rxt = iss  # RFC 6675 HighRxt
        self.rto_recovery = False  # go-back-N after an RTO, until snd_max is acknowledged
        self.dsack: tuple[int, int] | None = None  # a duplicate to report (RFC 2883)
        self._partial_ack_seen = False

        # Timers: absolute deadlines or None.
        self.rto_at: float | None = None
        self.persist_at: float | None = None
        self.persist_backoff = 0
        self.delack_at: float | None = None
        self.keepalive_at: float | None = None
        self.keepalive_probes = 0
        self.time_wait_at: float | None = None
        self.fin_wait_2_at: float | None = None
        self.unacked_segs = 0  # full-sized segments received since our last ACK
        self.last_recv_time = now
        self._deadline: float | None = None

        # Socket-level settings (setsockopt) and application-visible status.
        self.nodelay = not config.nagle
        self.keepalive = False
        self.linger_zero = False
        self.sndbuf = config.sndbuf
        self.rcvbuf = config.rcvbuf
        self.error: BaseException | None = None
        self.write_shut = False
        self.app_closed = False  # close() was called: orphaned once closed
        self.accepted = False

    # ------------------------------------------------------------------ derived values

    @property
    def mss(self) -> int:
        """Effective send MSS (RFC 9293 3.7.1, RFC 6691): payload octets per segment."""
        m = min(self.peer_mss, self.pmtu - self.ip_overhead)
        if self.ts_ok:
            m -= 12  # NOP, NOP, timestamps ride on every segment
        return max(m, 64)

    def _sack_option_len(self) -> int:
        """Octets the SACK option of our next segment takes (2 NOPs, kind, length, 8 a block)."""
        if not (self.sack_ok and (self.dsack is not None or len(self.ooo))):
            return 0
        blocks = min(len(self.ooo) + (self.dsack is not None), 3 if self.ts_ok else 4)
        return 4 + 8 * blocks

    @property
    def send_mss(self) -> int:
        """Payload octets of a full segment now: SACK blocks come out of the payload, as Linux
        does, since the MSS counts no options (RFC 6691) and a segment must fit the path MTU."""
        return max(self.mss - self._sack_option_len(), 1)

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

    def _choose_wscale(self) -> int:
        shift = 0
        while (self.config.rcvbuf >> shift) > 0xFFFF and shift < MAX_WSCALE:
            shift += 1
        return shift

    def tsval(self, now: float) -> int:
        return (int(now * TS_HZ) + self.ts_offset) & seq.MASK

    # ------------------------------------------------------------------ bookkeeping

    def _set_state(self, new: State, cause: str, now: float) -> None:
        old = self.state
        if old is new:
            return
        self.state = new
        if self.trace.enabled:
            self.trace.emit(StateChange(now, self.id, old.value, new.value, cause))
        if new is State.CLOSED:
            self._cancel_all_timers()
        self._notify(self)

    def _cancel_all_timers(self) -> None:
        self.rto_at = self.persist_at = self.delack_at = None
        self.keepalive_at = self.time_wait_at = self.fin_wait_2_at = None

    def deadline(self) -> float | None:
        return self._deadline

    def _update_deadline(self) -> None:
        times = [
            t
            for t in (
                self.rto_at,
                self.persist_at,
                self.delack_at,
                self.keepalive_at,
                self.time_wait_at,
                self.fin_wait_2_at,
            )
            if t is not None
        ]
        d = min(times) if times else None
        if d != self._deadline:
            self._deadline = d
            self._sched(self)

    def _drop(self, reason: str, now: float, detail: str = "") -> None:
        self.stats.drops[reason] = self.stats.drops.get(reason, 0) + 1
        if self.trace.enabled:
            self.trace.emit(Drop(now, reason, detail, self.id))

    def _cwnd_event(self, why: str, now: float) -> None:
        if self.trace.enabled:
            self.trace.emit(
                CongestionEvent(now, self.id, self.cc.cwnd, self.cc.ssthresh, why, self.flight_size)
            )

    def _fail(self, error: BaseException, cause: str, now: float) -> None:
        """The connection is over because of error: tell the application, go to CLOSED."""
        if self.error is None:
            self.error = error
        self.sndq.clear()
        self._set_state(State.CLOSED, cause, now)
        self._update_deadline()

    # ------------------------------------------------------------------ segment output

    def _options(self, flags: int, now: float, payload_len: int = 0) -> tuple[TcpOption, ...]:
        cfg = self.config
        if flags & SYN:
            # Linux's SYN layout: MSS, SACK-permitted, timestamps, NOP, window scale.
            syn_ack = bool(flags & ACK)
            use_sack = cfg.sack and (self.sack_ok or not syn_ack)
            use_ts = cfg.timestamps and (self.ts_ok or not syn_ack)
            use_ws = cfg.window_scaling and (self.ws_ok or not syn_ack)
            opts: list[TcpOption] = [Mss(cfg.mtu - self.ip_overhead)]
            if use_sack and use_ts:
                opts += [SackPermitted(), Timestamps(self.tsval(now), self.ts_recent if syn_ack else 0)]
            elif use_ts:
                opts += [Nop(), Nop(), Timestamps(self.tsval(now), self.ts_recent if syn_ack else 0)]
            elif use_sack:
                opts += [Nop(), Nop(), SackPermitted()]
            if use_ws:
                opts += [Nop(), WindowScale(self.rcv_wscale)]
            return tuple(opts)
        opts = []
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

    def _window_field(self, syn: bool) -> int:
        """The window to advertise: free buffer space with receiver-side SWS avoidance
        (RFC 9293 3.8.6.2.2); the right edge never moves left (RFC 9293 3.8.6)."""
        free = max(self.rcvbuf - len(self.rcvq), 0)
        cur = max(seq.sub(self.rcv_adv, self.rcv_nxt), 0)
        target = free if free - cur >= min(self.rcvbuf // 2, self.mss) else cur
        if syn:
            wnd = min(target, 0xFFFF)  # RFC 7323 2.2: the window of a SYN is never scaled
            adv = wnd
        else:
            shift = self.rcv_wscale if self.ws_ok else 0
            wnd = min((target + (1 << shift) - 1) >> shift, 0xFFFF)
            adv = wnd << shift
        edge = seq.add(self.rcv_nxt, adv)
        if seq.gt(edge, self.rcv_adv):
            self.rcv_adv = edge
        return wnd

    def _emit(self, flags: int, seqno: int, now: float, payload: bytes = b"", urgent: int = 0) -> None:
        ack = self.rcv_nxt if flags & ACK else 0
        window = self._window_field(bool(flags & SYN))
        options = self._options(flags, now, len(payload))
        seg = TcpSegment(
            self.local_port, self.remote_port, seqno, ack, flags, window, payload, options, urgent
        )
        self.stats.segs_out += 1
        if flags & ACK:
            self.last_ack_sent = self.rcv_nxt
            self.delack_at = None
            self.unacked_segs = 0
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

    def _send_challenge_ack(self, now: float, why: str) -> None:
        """RFC 5961 sections 3.2, 4.2, 5.2: ACK with our current numbers, rate limited."""
        if self._challenge.allow(now):
            self.stats.challenge_acks += 1
            if self.trace.enabled:
                self.trace.emit(TimerEvent(now, self.id, "challenge_ack", why))
            self._send_ack(now)
        else:
            self._drop("challenge_ack_limited", now, why)

    def _send_syn(self, now: float, retransmit: bool = False) -> None:
        flags = SYN | ACK if self.state is State.SYN_RECEIVED else SYN
        if retransmit:
            self.stats.retransmits += 1
            if self.trace.enabled:
                kind = "synack" if flags & ACK else "syn"
                self.trace.emit(Retransmit(now, self.id, self.iss, 0, kind))
        self._emit(flags, self.iss, now)
        self.snd_nxt = self.snd_max = seq.add(self.iss, 1)

    def _arm_rto(self, now: float, restart: bool = False) -> None:
        if self.rto_at is None or restart:
            self.rto_at = now + min(self.rtt.rto * (1 << self.backoff), self.config.rto_max)

    # ------------------------------------------------------------------ opening

    def open_active(self, now: float) -> None:
        """Active OPEN (RFC 9293 3.10.1): send SYN, enter SYN_SENT."""
        self.ts_ok = False
        self._set_state(State.SYN_SENT, "call:connect", now)
        self._send_syn(now)
        self._arm_rto(now)
        self._update_deadline()

    def open_passive(self, syn: TcpSegment, now: float) -> None:
        """A SYN arrived at a listener (RFC 9293 3.10.7.2): enter SYN_RECEIVED and answer SYN-ACK."""
        self.state = State.LISTEN
        self._take_syn_options(syn, now)
        self.irs = syn.seq
        self.rcv_nxt = seq.add(syn.seq, 1)
        self.rcv_adv = self.rcv_nxt
        self.snd_wnd = syn.window  # never scaled on a SYN
        self.max_snd_wnd = self.snd_wnd
        self.snd_wl1 = syn.seq
        self._set_state(State.SYN_RECEIVED, "segment:S", now)
        self._send_syn(now)
        self._arm_rto(now)
        self._update_deadline()

    def _take_syn_options(self, syn: TcpSegment, now: float) -> None:
        cfg = self.config
        mss = syn.mss
        self.peer_mss = mss if mss else cfg.default_peer_mss
        ws = syn.wscale
        if cfg.window_scaling and ws is not None:
            self.ws_ok = True
            self.snd_wscale = min(ws, MAX_WSCALE)  # RFC 7323 2.3: treat larger as 14
        else:
            self.ws_ok = False
            self.rcv_wscale = 0
        self.sack_ok = cfg.sack and syn.sack_permitted
        ts = syn.timestamps
        if cfg.timestamps and ts is not None:
            self.ts_ok = True
            self.ts_recent = ts.tsval
            self.ts_recent_age = now
        else:
            self.ts_ok = False
        self.cc.on_mss_change(self.mss)
        self.cc.cwnd = self.config.initial_window_segments * self.mss
        self.scoreboard = Scoreboard(self.mss, cfg.dupack_threshold)

    # ------------------------------------------------------------------ timers

    def on_timer(self, now: float) -> None:
        t = now + TIMER_SLACK
        if self.time_wait_at is not None and self.time_wait_at <= t:
            self.time_wait_at = None
            self._timer_event("time_wait", now)
            self._set_state(State.CLOSED, "timer:time_wait", now)
        if self.fin_wait_2_at is not None and self.fin_wait_2_at <= t:
            self.fin_wait_2_at = None
            self._timer_event("fin_wait_2", now)
            self._set_state(State.CLOSED, "timer:fin_wait_2", now)
        if self.delack_at is not None and self.delack_at <= t:
            self.delack_at = None
            self._timer_event("delack", now)
            self._send_ack(now)
        if self.rto_at is not None and self.rto_at <= t:
            self.rto_at = None
            self._timer_event("rto", now)
            self._on_rto(now)
        if self.persist_at is not None and self.persist_at <= t:
            self.persist_at = None
            self._timer_event("persist", now)
            self._on_persist(now)
        if self.keepalive_at is not None and self.keepalive_at <= t:
            self.keepalive_at = None
            self._timer_event("keepalive", now)
            self._on_keepalive(now)
        self._update_deadline()

    def _timer_event(self, name: str, now: float) -> None:
        if self.trace.enabled:
            self.trace.emit(TimerEvent(now, self.id, name, "fired"))

    def _on_rto(self, now: float) -> None:
        """Retransmission timeout (RFC 6298 section 5)."""
        self.stats.rto_expiries += 1
        self.retries += 1
        self.rtt_seq = None  # Karn's rule: never time a retransmitted segment
        if self.state in (State.SYN_SENT, State.SYN_RECEIVED):
            limit = self.config.syn_retries if self.state is State.SYN_SENT else self.config.synack_retries
            if self.retries > limit:
                self._give_up(now, "timer:syn_retries")
                return
            self.backoff += 1
            self._send_syn(now, retransmit=True)
            self._arm_rto(now, restart=True)
            return
        if self.retries > self.config.data_retries:
            self._give_up(now, "timer:retries")
            return
        if self.flight_size == 0:
            return
        # RFC 5681 eq. (4) and RFC 6298 5.5-5.7: shrink the window, back off, resend from SND.UNA.
        if self.in_recovery and seq.lt(self.snd_una, self.recover):
            # Fast recovery already set ssthresh for this window; an RTO in the same episode
            # collapses cwnd but does not recompute ssthresh from a FlightSize swollen by the new
            # data recovery sent (one reduction per episode, RFC 6582 "recover"; Linux keeps
            # ssthresh in tcp_enter_loss from Recovery too).
            kept = self.cc.ssthresh
            self.cc.on_rto(now, self.flight_size)
            self.cc.ssthresh = kept
        elif not self.rto_recovery or seq.ge(self.snd_una, self.recover):
            self.cc.on_rto(now, self.flight_size)
        else:
            self.cc.cwnd = self.mss
        self._cwnd_event("rto", now)
        self.backoff = min(self.backoff + 1, 30)
        self.in_recovery = False
        self.dupacks = 0
        self.rto_recovery = True
        self.recover = self.snd_max
        self.high_rxt = self.snd_una
        self.scoreboard.reset()
        self.snd_nxt = self.snd_una
        self._output(now, force_one=True)
        self._arm_rto(now, restart=True)

    def _give_up(self, now: float, cause: str) -> None:
        self._fail(TimeoutError("connection timed out"), cause, now)
        if self.listener is not None:
            self.listener.forget(self)

    def _on_persist(self, now: float) -> None:
        """Zero-window probe (RFC 9293 3.8.6.1): send one octet beyond the window, with backoff."""
        if self.state not in (State.ESTABLISHED, State.CLOSE_WAIT,
                              State.FIN_WAIT_1, State.CLOSING, State.LAST_ACK):
            return
        if self.snd_wnd != 0:
            # RFC 9293 3.8.6.2.1: the window is open but too small for sender SWS avoidance and
            # nothing is in flight to bring an update (a lost window update would stall us
            # forever): on this override timeout send what fits.
            usable = seq.sub(seq.add(self.snd_una, self.snd_wnd), self.snd_nxt)
            avail = seq.sub(self.fin_seq, self.snd_nxt)
            if usable > 0 and avail > 0:
                self._send_data(self.snd_nxt, min(usable, avail, self.send_mss), now, force_push=True)
            return
        self.retries += 1
        if self.retries > self.config.data_retries:
            self._give_up(now, "timer:persist_retries")
            return
        self.stats.zero_window_probes += 1
        # An earlier probe octet that was not acknowledged is resent; else a new one goes.
        probe_seq = self.snd_una if seq.lt(self.snd_una, self.snd_max) else self.snd_nxt
        if seq.lt(probe_seq, self.fin_seq):
            off = seq.sub(probe_seq, self.sndq_seq)
            self._emit(ACK, probe_seq, now, bytes(self.sndq[off : off + 1]))
            end = seq.add(probe_seq, 1)
        elif self.fin_queued:
            self._emit(FIN | ACK, probe_seq, now)
            end = seq.add(probe_seq, 1)
        else:
            return
        if seq.gt(end, self.snd_max):
            self.snd_max = end
        if seq.gt(end, self.snd_nxt):
            self.snd_nxt = end
        self.persist_backoff += 1
        self._arm_persist(now)

    def _arm_persist(self, now: float) -> None:
        base = max(self.rtt.rto, self.config.persist_min)
        self.persist_at = now + min(base * (1 << min(self.persist_backoff, 20)), self.config.persist_max)

    def _on_keepalive(self, now: float) -> None:
        """Keepalive (RFC 9293 3.8.4, RFC 1122 4.2.3.6): probe with SEG.SEQ = SND.NXT - 1."""
        if not self.keepalive or self.state not in (State.ESTABLISHED, State.CLOSE_WAIT):
            return
        idle = now - self.last_recv_time
        if self.keepalive_probes == 0 and idle + TIMER_SLACK < self.config.keepalive_idle:
            self.keepalive_at = self.last_recv_time + self.config.keepalive_idle
            return
        if self.keepalive_probes >= self.config.keepalive_count:
            self._fail(TimeoutError("keepalive: peer did not answer"), "timer:keepalive", now)
            return
        self.keepalive_probes += 1
        self.stats.keepalive_probes += 1
        self._emit(ACK, seq.add(self.snd_una, -1), now)
        self.keepalive_at = now + self.config.keepalive_interval

    def set_keepalive(self, on: bool, now: float) -> None:
        self.keepalive = on
        if on and self.state in (State.ESTABLISHED, State.CLOSE_WAIT):
            self.keepalive_at = self.last_recv_time + self.config.keepalive_idle
        elif not on:
            self.keepalive_at = None
        self._update_deadline()

    # ------------------------------------------------------------------ application calls

    def send(self, data: bytes | bytearray | memoryview, now: float, urgent: bool = False) -> int:
        """Queue data (RFC 9293 3.10.2). Returns the number of octets accepted (0 when full)."""
        if self.error is not None:
            raise self._reraise()
        if self.write_shut or self.state not in CAN_SEND:
            raise BrokenPipeError("connection is closed for sending")
        n = min(len(data), self.send_space)
        if n:
            self.sndq += data[:n]
            self.push_seq = self.fin_seq
            if urgent:
                self.snd_up = self.fin_seq  # RFC 6093: points just past the last urgent octet
            self._output(now)
        self._update_deadline()
        return n

    def recv(self, limit: int, now: float) -> bytes:
        """Take up to `limit` octets of in-order data; b"" when none is ready (see at_eof)."""
        if not self.rcvq:
            if self.error is not None and not self.fin_received:
                raise self._reraise()
            return b""
        data = bytes(self.rcvq[:limit])
        del self.rcvq[:limit]
        if self.urgent_mark is not None:
            self.urgent_mark = max(self.urgent_mark - len(data), 0) or None
        # A window update once the right edge can move by the SWS amount (RFC 9293 3.8.6.2.2).
        if self.state in SYNCHRONIZED and self.state not in (State.TIME_WAIT,) and not self.fin_received:
            free = self.rcvbuf - len(self.rcvq)
            cur = max(seq.sub(self.rcv_adv, self.rcv_nxt), 0)
            if free - cur >= min(self.rcvbuf // 2, self.mss):
                self._send_ack(now)
        self._update_deadline()
        return data

    def shutdown(self, now: float) -> None:
        """Close the sending side (RFC 9293 3.10.4 CLOSE, as SHUT_WR): queue a FIN after the data."""
        if self.write_shut:
            return
        self.write_shut = True
        st = self.state
        if st is State.SYN_SENT:
            self._set_state(State.CLOSED, "call:close", now)
        elif st in (State.SYN_RECEIVED, State.ESTABLISHED):
            self.fin_queued = True
            if st is State.ESTABLISHED:
                self._set_state(State.FIN_WAIT_1, "call:close", now)
                self._output(now)
            # In SYN_RECEIVED the FIN goes once the handshake completes (RFC 9293 3.10.4).
        elif st is State.CLOSE_WAIT:
            self.fin_queued = True
            self._set_state(State.LAST_ACK, "call:close", now)
            self._output(now)
        self._update_deadline()

    def close(self, now: float) -> None:
        """The application is done with the connection (socket close)."""
        if self.app_closed:
            return
        self.app_closed = True
        if self.state is State.CLOSED:
            return
        # RFC 2525 2.17 / RFC 9293 3.10.4: closing with unread data, or SO_LINGER 0, resets.
        if self.rcvq or self.linger_zero:
            self.abort(now, "call:close")
            return
        self.shutdown(now)
        if self.state is State.FIN_WAIT_2 and self.config.fin_wait_2_timeout is not None:
            self.fin_wait_2_at = now + self.config.fin_wait_2_timeout
        self._update_deadline()

    def abort(self, now: float, cause: str = "call:abort") -> None:
        """ABORT (RFC 9293 3.10.5): send RST in synchronized states (and SYN_RECEIVED), CLOSED."""
        if self.state in SYNCHRONIZED or self.state is State.SYN_RECEIVED:
            if self.state is not State.TIME_WAIT:
                self._emit(RST | ACK, self._ack_seq(), now)  # RFC 5961 3: exact SEQ
        self.rcvq.clear()
        self._fail(ConnectionAbortedError("connection aborted"), cause, now)
        if self.listener is not None:
            self.listener.forget(self)

    def _reraise(self) -> BaseException:
        err = self.error
        assert err is not None
        return type(err)(*err.args)

    # ------------------------------------------------------------------ segment arrival

    def on_segment(self, seg: TcpSegment, now: float) -> None:
        self.stats.segs_in += 1
        st = self.state
        if st is State.SYN_SENT:
            self._on_syn_sent(seg, now)
        elif st is not State.CLOSED:
            self._on_synchronized(seg, now)
        self._update_deadline()

    def _on_syn_sent(self, seg: TcpSegment, now: float) -> None:
        """RFC 9293 3.10.7.3."""
        flags = seg.flags
        if flags & ACK:
            # First: the ACK must acknowledge our SYN and nothing more.
            if seq.le(seg.ack, self.iss) or seq.gt(seg.ack, self.snd_max):
                if not flags & RST:
                    self._emit(RST, seg.ack, now)
                self._drop("syn_sent_bad_ack", now)
                return
        if flags & RST:
            if flags & ACK:  # acceptable ACK: the peer refused us
                self._fail(ConnectionRefusedError("connection refused"), "segment:R.", now)
            else:
                self._drop("syn_sent_rst_without_ack", now)
            return
        if not flags & SYN:
            self._drop("syn_sent_no_syn", now)
            return
        self._take_syn_options(seg, now)
        self.irs = seg.seq
        self.rcv_nxt = seq.add(seg.seq, 1)
        # The window our SYN offered (never scaled) is open from RCV.NXT: text in a SYN-ACK is
        # accepted within it (RFC 9293 3.10.7.3: "continue processing at the sixth step").
        self.rcv_adv = seq.add(self.rcv_nxt, min(max(self.rcvbuf - len(self.rcvq), 0), 0xFFFF))
        if flags & ACK:
            self.snd_una = seg.ack
            self.sndq_seq = self.snd_una
            self.snd_wnd = seg.window  # never scaled on a SYN
            self.max_snd_wnd = self.snd_wnd
            self.snd_wl1, self.snd_wl2 = seg.seq, seg.ack
            self._sample_rtt_syn(seg, now)
            self.retries = 0
            self.backoff = 0
            self.rto_at = None
            self.last_recv_time = now  # keepalive idle counts from the last segment received
            self._set_state(State.ESTABLISHED, "segment:" + _flag_letters(flags), now)
            self._start_keepalive(now)
            if seg.payload or flags & FIN:
                # Data in a SYN-ACK is rare but legal; its first octet follows the SYN's
                # sequence number (RFC 9293 3.3.1: the SYN occupies SEG.SEQ).
                self._process_text_and_fin(seg, now, seq.add(seg.seq, 1))
            else:
                self._send_ack(now)
            self._output(now)
        else:
            # Simultaneous open (RFC 9293 figure 8): SYN_SENT -> SYN_RECEIVED, send SYN-ACK.
            self.snd_wnd = seg.window
            self.max_snd_wnd = self.snd_wnd
            self.snd_wl1 = seg.seq
            self._set_state(State.SYN_RECEIVED, "segment:S", now)
            self._emit(SYN | ACK, self.iss, now)
            self._arm_rto(now, restart=True)

    def _sample_rtt_syn(self, seg: TcpSegment, now: float) -> None:
        # Karn: only a SYN that was never retransmitted gives a sample (or an unambiguous echo).
        ts = seg.timestamps
        if self.ts_ok and ts is not None and ts.tsecr:
            self._rtt_sample(now - self._ts_to_time(ts.tsecr, now), now)
        elif self.retries == 0:
            self._rtt_sample(now - self.created, now)

    def _ts_to_time(self, tsecr: int, now: float) -> float:
        ticks = seq.sub(self.tsval(now), tsecr)
        return now - ticks / TS_HZ

    def _rtt_sample(self, sample: float, now: float) -> None:
        self.rtt.sample(sample)
        if self.trace.enabled:
            srtt = self.rtt.srtt if self.rtt.srtt is not None else sample
            self.trace.emit(RttEvent(now, self.id, sample, srtt, self.rtt.rttvar, self.rtt.rto))

    def _acceptable(self, seg: TcpSegment) -> bool:
        """The four-case acceptability test of RFC 9293 3.10.7.4."""
        seg_len = seg.seg_len
        rcv_wnd = max(seq.sub(self.rcv_adv, self.rcv_nxt), 0)
        if seg_len == 0:
            if rcv_wnd == 0:
                return seg.seq == self.rcv_nxt
            return seq.in_window(seg.seq, self.rcv_nxt, rcv_wnd)
        if rcv_wnd == 0:
            return False
        last = seq.add(seg.seq, seg_len - 1)
        return seq.in_window(seg.seq, self.rcv_nxt, rcv_wnd) or seq.in_window(last, self.rcv_nxt, rcv_wnd)

    def _on_synchronized(self, seg: TcpSegment, now: float) -> None:
        """RFC 9293 3.10.7.4 for SYN_RECEIVED and the synchronized states."""
        flags = seg.flags
        st = self.state
        self.last_recv_time = now
        self.keepalive_probes = 0
        if self.keepalive and st in (State.ESTABLISHED, State.CLOSE_WAIT):
            self.keepalive_at = now + self.config.keepalive_idle

        # SYN_RECEIVED: a retransmitted SYN means our SYN-ACK was lost; answer it again.
        if st is State.SYN_RECEIVED and flags & SYN and not flags & ACK and seg.seq == self.irs:
            self._send_syn(now, retransmit=True)
            return
        # Simultaneous open (RFC 9293 figure 8, line 5): the peer's SYN-ACK repeats its SYN
        # (SEG.SEQ = IRS) and acknowledges ours. Its SYN is old news; its ACK completes the
        # handshake, so process it as the segment that follows the SYN.
        if st is State.SYN_RECEIVED and self.listener is None and flags & SYN and flags & ACK \
                and seg.seq == self.irs:
            seg = dataclasses.replace(seg, seq=seq.add(seg.seq, 1), flags=flags & ~SYN)
            flags = seg.flags

        # RFC 7323 5.3 PAWS: a segment with an older timestamp is an old duplicate.
        ts = seg.timestamps
        if self.ts_ok and ts is not None and not flags & RST:
            if seq.lt(ts.tsval, self.ts_recent) and now - self.ts_recent_age < 24 * 86400:
                self._drop("paws", now)
                self._send_ack(now)
                return

        # First: the sequence number.
        if not self._acceptable(seg):
            if flags & RST:
                self._drop("rst_out_of_window", now)
                return
            # RFC 2883: report a wholly duplicate segment with a D-SACK block.
            if self.sack_ok and seg.payload and seq.le(seq.add(seg.seq, len(seg.payload)), self.rcv_nxt):
                self.dsack = (seg.seq, seq.add(seg.seq, len(seg.payload)))
            if st is State.TIME_WAIT and flags & FIN:
                self._restart_time_wait(now)  # a retransmitted FIN: re-ACK, restart 2*MSL
            self._drop("unacceptable_segment", now)
            self._send_ack(now)
            return

        # RFC 7323 4.3: remember the timestamp to echo (segment covers Last.ACK.sent).
        if self.ts_ok and ts is not None and seq.le(seg.seq, self.last_ack_sent):
            self.ts_recent = ts.tsval
            self.ts_recent_age = now

        # Second: RST (RFC 5961 section 3.2: only an exact match resets).
        if flags & RST:
            if seg.seq != self.rcv_nxt:
                self._send_challenge_ack(now, "rst_in_window")
                return
            self._on_reset(now)
            return

        # Fourth: SYN in a synchronized state (RFC 5961 section 4.2): challenge ACK.
        if flags & SYN:
            if st is State.SYN_RECEIVED and self.listener is not None:
                self._back_to_listen(now, "segment:S")
                return
            self._send_challenge_ack(now, "syn_in_window")
            return

        # Fifth: the ACK field.
        if not flags & ACK:
            self._drop("no_ack", now)
            return
        if st is State.SYN_RECEIVED:
            if not (seq.lt(self.snd_una, seg.ack) and seq.le(seg.ack, self.snd_max)):
                self._emit(RST, seg.ack, now)  # RFC 9293: <SEQ=SEG.ACK><CTL=RST>
                self._drop("syn_received_bad_ack", now)
                return
            if self.listener is not None and not self.listener.can_accept():
                self._drop("accept_queue_full", now)  # keep SYN_RECEIVED; our SYN-ACK will retry
                self.listener.overflows += 1  # an accept-queue overflow too (listen(2) backlog)
                return
            self.snd_una = seg.ack
            self.sndq_seq = self.snd_una
            self.snd_wnd = seg.window << self.snd_wscale if self.ws_ok else seg.window
            self.max_snd_wnd = max(self.max_snd_wnd, self.snd_wnd)
            self.snd_wl1, self.snd_wl2 = seg.seq, seg.ack
            self._sample_rtt_syn(seg, now)
            self.retries = 0
            self.backoff = 0
            self.rto_at = None
            self._set_state(State.ESTABLISHED, "segment:" + _flag_letters(flags), now)
            self._start_keepalive(now)
            if self.listener is not None:
                self.listener.established(self)
            if self.write_shut:
                self.fin_queued = True
                self._set_state(State.FIN_WAIT_1, "call:close", now)
                self._output(now)
            st = self.state
        elif not self._process_ack(seg, now):
            return

        st = self.state
        if st is State.CLOSED:
            return

        # Sixth: the URG bit (RFC 9293 3.10.7.4, RFC 6093).
        if flags & URG and st in CAN_RECEIVE_TEXT:
            up = seq.add(seg.seq, seg.urgent)
            if self.rcv_up is None or seq.gt(up, self.rcv_up):
                self.rcv_up = up
                self.urgent_mark = len(self.rcvq) + seq.sub(up, self.rcv_nxt) - 1

        # Seventh and eighth: the segment text and FIN.
        if seg.payload or flags & FIN:
            self._process_text_and_fin(seg, now, seg.seq)
        self._output(now)

    def _on_reset(self, now: float) -> None:
        """An acceptable RST (RFC 9293 3.10.7.4 second check)."""
        st = self.state
        if st is State.SYN_RECEIVED and self.listener is not None:
            self._back_to_listen(now, "segment:R")
            return
        self.sndq.clear()
        self.rcvq.clear()
        if st is State.SYN_RECEIVED:
            self._fail(ConnectionRefusedError("connection refused"), "segment:R", now)
        elif st in (State.CLOSING, State.LAST_ACK, State.TIME_WAIT):
            self._set_state(State.CLOSED, "segment:R", now)
        else:
            self._fail(ConnectionResetError("connection reset by peer"), "segment:R", now)

    def _back_to_listen(self, now: float, cause: str) -> None:
        """A passive open's SYN_RECEIVED returns to LISTEN: the half-open connection is dropped
        and the listener (which never left LISTEN) carries on."""
        self._set_state(State.LISTEN, cause, now)
        self._cancel_all_timers()
        self.error = ConnectionResetError("half-open connection reset")
        if self.listener is not None:
            self.listener.forget(self)
        self._update_deadline()

    def _start_keepalive(self, now: float) -> None:
        if self.keepalive:
            self.keepalive_at = now + self.config.keepalive_idle

    def _restart_time_wait(self, now: float) -> None:
        self.time_wait_at = now + 2 * self.config.msl

    # ------------------------------------------------------------------ ACK processing

    def _process_ack(self, seg: TcpSegment, now: float) -> bool:
        """Fifth check for the synchronized states. Returns False if the segment is done with."""
        ack = seg.ack
        st = self.state
        # RFC 5961 5.2: acceptable if SND.UNA - MAX.SND.WND <= SEG.ACK <= SND.NXT.
        if seq.gt(ack, self.snd_max):
            self._drop("ack_of_unsent_data", now)
            self._send_ack(now)
            return False
        if seq.lt(ack, seq.add(self.snd_una, -max(self.max_snd_wnd, 1))):
            self._drop("ack_too_old", now)
            self._send_ack(now)
            return False

        window = seg.window << self.snd_wscale if self.ws_ok else seg.window
        acked = seq.sub(ack, self.snd_una)
        sack_new = 0
        if self.sack_ok and seg.sack_blocks and self.flight_size:
            sack_new = self.scoreboard.update(self.snd_una, self.snd_max, seg.sack_blocks)

        # Duplicate-ACK detection (RFC 5681 section 2, RFC 6675 section 2 with SACK).
        is_dup = (
            acked == 0
            and self.flight_size > 0
            and not seg.payload
            and not seg.flags & (SYN | FIN)
            and (window == self.snd_wnd or sack_new > 0)
            and window > 0  # answers to zero-window probes (RFC 9293 3.8.6.1) signal no loss
        )

        if acked > 0:
            self._on_new_ack(seg, ack, acked, now)
        # Window update (RFC 9293 3.10.7.4: SND.WL1/SND.WL2 rule).
        if seq.lt(self.snd_wl1, seg.seq) or (
            self.snd_wl1 == seg.seq and seq.le(self.snd_wl2, ack)
        ):
            opened = self.snd_wnd == 0 and window > 0
            self.snd_wnd = window
            self.max_snd_wnd = max(self.max_snd_wnd, window)
            self.snd_wl1, self.snd_wl2 = seg.seq, ack
            if opened:
                self.persist_at = None
                self.persist_backoff = 0
                self.retries = 0
                # RFC 9293 3.8.6.1: a probe octet or FIN the peer did not take is resent now, as
                # ordinary data (no RTO runs while probing: it would never be resent otherwise).
                if seq.lt(self.snd_una, self.snd_nxt) and self.rto_at is None:
                    self.snd_nxt = self.snd_una
            elif window == 0 and self.persist_at is not None:
                # RFC 9293 3.8.6.1: while the receiver answers the probes the connection stays
                # open; only unanswered probes count toward the abort.
                self.retries = 0
        if is_dup:
            self._on_dupack(now)

        # State-specific ACK processing.
        fin_acked = self.fin_queued and seq.gt(self.snd_una, self.fin_seq)
        # A FIN+ACK of our FIN whose FIN is next in order goes straight to TIME_WAIT in the
        # eighth check (RFC 9293 figure 5, FIN_WAIT_1 "rcv FIN, ACK of FIN"): no FIN_WAIT_2 stop.
        fin_next = bool(seg.flags & FIN) and seq.le(seg.seq, self.rcv_nxt) and seq.le(
            seq.add(seg.seq, len(seg.payload)), self.rcv_adv)
        if st is State.FIN_WAIT_1 and fin_acked and fin_next:
            pass
        elif st is State.FIN_WAIT_1 and fin_acked:
            self._set_state(State.FIN_WAIT_2, "segment:" + _flag_letters(seg.flags), now)
            if self.app_closed and self.config.fin_wait_2_timeout is not None:
                self.fin_wait_2_at = now + self.config.fin_wait_2_timeout
        elif st is State.CLOSING and fin_acked:
            self._enter_time_wait(now, "segment:" + _flag_letters(seg.flags))
            return False
        elif st is State.LAST_ACK and fin_acked:
            self._set_state(State.CLOSED, "segment:" + _flag_letters(seg.flags), now)
            return False
        elif st is State.TIME_WAIT:
            if seg.flags & FIN:
                self._send_ack(now)
                self._restart_time_wait(now)
            return False
        return True

    def _on_new_ack(self, seg: TcpSegment, ack: int, acked: int, now: float) -> None:
        flight_before = self.flight_size
        # RTT: timestamps give a sample for every ACK of new data (RFC 7323 4.1); otherwise
        # time one segment at a time and never a retransmitted one (Karn, RFC 6298 section 3).
        ts = seg.timestamps
        if self.ts_ok and ts is not None and ts.tsecr:
            self._rtt_sample(now - self._ts_to_time(ts.tsecr, now), now)
        elif self.rtt_seq is not None and seq.gt(ack, self.rtt_seq):
            self._rtt_sample(now - self.rtt_time, now)
            self.rtt_seq = None
        # Release acknowledged data (a FIN occupies one sequence number after the data).
        data_acked = min(acked, len(self.sndq)) if seq.ge(self.snd_una, self.sndq_seq) else 0
        if data_acked:
            del self.sndq[:data_acked]
            self.sndq_seq = seq.add(self.sndq_seq, data_acked)
        self.stats.bytes_acked += acked
        self.snd_una = ack
        if seq.lt(self.snd_nxt, ack):
            self.snd_nxt = ack
        self.retries = 0
        self.backoff = 0
        self.dupacks = 0
        if self.sack_ok:
            self.scoreboard.update(self.snd_una, self.snd_max, seg.sack_blocks)
        if self.rto_recovery and seq.ge(ack, self.recover):
            self.rto_recovery = False

        if self.in_recovery:
            if seq.ge(ack, self.recover):
                # Full acknowledgment: leave fast recovery (RFC 6582 3.2 step 3, RFC 6675 5).
                self.in_recovery = False
                self.cc.on_recovery_exit(now)
                self._cwnd_event("recovery_exit", now)
            elif not self.sack_ok:
                # NewReno partial ACK (RFC 6582 3.2 step 3): resend the next hole, deflate.
                self._retransmit(self.snd_una, now, "fast")
                self.cc.cwnd = max(self.cc.cwnd - acked + self.mss, self.mss)
                self._arm_rto(now, restart=not self._partial_ack_seen)
                self._partial_ack_seen = True
        else:
            self.cc.on_ack(acked, now, self.rtt.srtt, flight_before)
            if self.trace.enabled:
                self._cwnd_event("ack", now)

        # RFC 6298 5.2/5.3: stop the timer when all is acknowledged, else restart it.
        if self.flight_size == 0:
            self.rto_at = None
        elif not self.in_recovery or self.sack_ok:
            self._arm_rto(now, restart=True)
        self._notify(self)  # send space opened

    def _on_dupack(self, now: float) -> None:
        self.stats.dupacks_in += 1
        self.dupacks += 1
        if self.in_recovery:
            if not self.sack_ok:
                self.cc.cwnd += self.mss  # NewReno inflation (RFC 6582 3.2 step 4)
            return
        thresh = self.config.dupack_threshold
        lost = self.sack_ok and self.scoreboard.is_lost(self.snd_una)
        if self.dupacks >= thresh or lost:
            # RFC 6582 3.2 step 1: duplicate ACKs below `recover` after a timeout start nothing.
            if self.rto_recovery:
                return
            self._enter_recovery(now)
        elif self.config.limited_transmit and self.dupacks < thresh:
            self._limited_transmit(now)

    def _limited_transmit(self, now: float) -> None:
        """RFC 3042: one new segment for each of the first two duplicate ACKs."""
        extra = self.dupacks * self.mss
        avail = seq.sub(self.fin_seq, self.snd_nxt)
        usable = seq.sub(seq.add(self.snd_una, self.snd_wnd), self.snd_nxt)
        if avail > 0 and usable > 0 and self.flight_size <= self.cc.cwnd + extra:
            n = min(self.send_mss, avail, usable)
            self._send_data(self.snd_nxt, n, now)

    def _enter_recovery(self, now: float) -> None:
        self.stats.fast_retransmits += 1
        self.in_recovery = True
        self._partial_ack_seen = False
        self.recover = self.snd_max
        self.cc.on_congestion(now, self.flight_size)
        self._cwnd_event("loss", now)
        self.high_rxt = self.snd_una
        self.scoreboard.clear_retransmitted()
        self._retransmit(self.snd_una, now, "fast")
        if not self.sack_ok:
            self.cc.cwnd = self.cc.ssthresh + self.config.dupack_threshold * self.mss
        self._arm_rto(now, restart=True)

    # ------------------------------------------------------------------ text and FIN

    def _process_text_and_fin(self, seg: TcpSegment, now: float, seqno: int) -> None:
        st = self.state
        payload = seg.payload
        fin = bool(seg.flags & FIN)
        if st not in CAN_RECEIVE_TEXT and st is not State.SYN_RECEIVED:
            if fin and st in (State.CLOSE_WAIT, State.CLOSING, State.LAST_ACK):
                self._send_ack(now)  # a retransmitted FIN: our ACK was lost
            return
        # Trim what lies before RCV.NXT (already received) and beyond the window.
        start = seqno
        if payload and seq.lt(start, self.rcv_nxt):
            cut = seq.sub(self.rcv_nxt, start)
            if cut >= len(payload):
                if self.sack_ok:
                    self.dsack = (start, seq.add(start, len(payload)))
                payload = b""
            else:
                if self.sack_ok:
                    self.dsack = (start, self.rcv_nxt)
                payload = payload[cut:]
            start = self.rcv_nxt
        rcv_wnd = max(seq.sub(self.rcv_adv, self.rcv_nxt), 0)
        room = rcv_wnd - seq.sub(start, self.rcv_nxt)
        if len(payload) > room:
            payload = payload[: max(room, 0)]
            fin = False  # the FIN lies beyond the window
        end = seq.add(start, len(payload))

        if payload and self.app_closed and self.state in (State.FIN_WAIT_1, State.FIN_WAIT_2):
            # Data for an application that has closed: nobody will read it (RFC 2525 2.17).
            self.abort(now, "segment:data_after_close")
            return

        if start == self.rcv_nxt:
            filled_hole = False
            if payload:
                self.rcvq += payload
                self.rcv_nxt = end
                self.stats.bytes_received += len(payload)
                if len(self.ooo):
                    more = self.ooo.pop_ready(self.rcv_nxt)
                    if more:
                        self.rcvq += more
                        self.rcv_nxt = seq.add(self.rcv_nxt, len(more))
                        self.stats.bytes_received += len(more)
                    filled_hole = True
                self._notify(self)
            if fin or (self.ooo.fin_seq is not None and self.ooo.fin_seq == self.rcv_nxt):
                self._on_fin(now, "segment:" + _flag_letters(seg.flags))
                return
            if payload:
                self._ack_data(len(payload), now, immediate=filled_hole)
            return

        # Out of order: keep it (bounded), and ACK at once with SACK blocks (RFC 5681 4.2).
        self.stats.ooo_segments += 1
        if payload:
            # RFC 2883: D-SACK only a true duplicate. A segment refused for lack of room
            # (ooo_limit) was not received: a SACK block for it would make the sender skip it.
            stored = self.ooo.add(start, payload, self.rcv_nxt)
            if not stored and self.sack_ok and self.ooo.covers(start, end):
                self.dsack = (start, end)
        if fin:
            self.ooo.fin_seq = end
        self._send_ack(now)

    def _ack_data(self, n: int, now: float, immediate: bool) -> None:
        """Delayed ACK (RFC 9293 3.8.6.3, RFC 5681 4.2): ACK every second full-sized segment,
        at once for hole-filling data, else within delack_timeout."""
        if n >= self.mss:
            self.unacked_segs += 1
        else:
            self.unacked_segs += 1 if n * 2 >= self.mss else 0
        if immediate or self.unacked_segs >= self.config.delack_segments or self.config.delack_timeout <= 0:
            self._send_ack(now)
        elif self.delack_at is None:
            self.delack_at = now + self.config.delack_timeout

    def _on_fin(self, now: float, cause: str) -> None:
        """Eighth check (RFC 9293 3.10.7.4): the FIN is in order; acknowledge it at once."""
        self.fin_received = True
        self.rcv_nxt = seq.add(self.rcv_nxt, 1)
        self.ooo.clear()
        st = self.state
        if st in (State.SYN_RECEIVED, State.ESTABLISHED):
            self._set_state(State.CLOSE_WAIT, cause, now)
        elif st is State.FIN_WAIT_1:
            if self.fin_queued and seq.gt(self.snd_una, self.fin_seq):
                self._enter_time_wait(now, cause)
            else:
                self._set_state(State.CLOSING, cause, now)
        elif st is State.FIN_WAIT_2:
            self._enter_time_wait(now, cause)
        self._send_ack(now)
        self._notify(self)

    def _enter_time_wait(self, now: float, cause: str) -> None:
        self._set_state(State.TIME_WAIT, cause, now)
        self.rto_at = self.persist_at = self.keepalive_at = self.fin_wait_2_at = self.delack_at = None
        self._restart_time_wait(now)

    # ------------------------------------------------------------------ sending data

    def _usable_window(self) -> int:
        """Octets we may still send: the peer's window and the congestion window (RFC 5681)."""
        peer = seq.sub(seq.add(self.snd_una, self.snd_wnd), self.snd_nxt)
        if self.in_recovery and self.sack_ok:
            pipe = self.scoreboard.pipe(self.snd_una, self.snd_max, self.high_rxt)
            cwnd_room = self.cc.cwnd - pipe
        else:
            cwnd_room = self.cc.cwnd - seq.sub(self.snd_nxt, self.snd_una)
        return min(peer, cwnd_room)

    def _send_data(self, start: int, n: int, now: float, force_push: bool = False) -> None:
        """Send sndq octets [start, start+n) plus FIN if it follows and fits. Advances snd_nxt."""
        off = seq.sub(start, self.sndq_seq)
        payload = bytes(self.sndq[off : off + n])
        end = seq.add(start, n)
        flags = ACK
        if (self.push_seq is not None and seq.ge(end, self.push_seq)) or force_push:
            flags |= PSH
        if self.fin_queued and end == self.fin_seq:
            flags |= FIN
        urgent = 0
        if self.snd_up is not None and seq.lt(start, self.snd_up):
            flags |= URG
            urgent = min(seq.sub(self.snd_up, start), 0xFFFF)
        retrans = seq.lt(start, self.snd_max)
        self._emit(flags, start, now, payload, urgent)
        seg_end = seq.add(end, 1) if flags & FIN else end
        if retrans:
            self._note_retransmit(start, n, now, "rto" if self.rto_recovery else "sack")
        else:
            self.stats.bytes_sent += n
            if self.rtt_seq is None and not self.ts_ok:
                self.rtt_seq, self.rtt_time = start, now
        self.snd_nxt = seg_end
        if seq.gt(seg_end, self.snd_max):
            self.snd_max = seg_end
        if self.rto_at is None:
            self._arm_rto(now)

    def _retransmit(self, start: int, now: float, why: str) -> None:
        """Resend one segment from `start` without moving snd_nxt (fast retransmit)."""
        avail = seq.sub(self.fin_seq, start)
        n = min(self.send_mss, max(avail, 0))
        fin = self.fin_queued and n == avail and seq.lt(start, self.snd_max)
        if n == 0 and not fin:
            return
        off = seq.sub(start, self.sndq_seq)
        flags = ACK | (FIN if fin else 0)
        if n and self.push_seq is not None and seq.ge(seq.add(start, n), self.push_seq):
            flags |= PSH
        self._emit(flags, start, now, bytes(self.sndq[off : off + n]))
        self._note_retransmit(start, n, now, why)
        end = seq.add(start, n + (1 if fin else 0))
        if seq.gt(end, self.high_rxt):
            self.high_rxt = end

    def _note_retransmit(self, start: int, n: int, now: float, why: str) -> None:
        self.stats.retransmits += 1
        self.stats.bytes_retrans += n
        if self.rtt_seq is not None and seq.le(start, self.rtt_seq):
            self.rtt_seq = None  # Karn
        if self.sack_ok:
            self.scoreboard.mark_retransmitted(start, seq.add(start, max(n, 1)))
        if self.trace.enabled:
            self.trace.emit(Retransmit(now, self.id, start, n, why))

    def _output(self, now: float, force_one: bool = False) -> None:
        """Send what the windows, Nagle and SWS avoidance allow (RFC 9293 3.8.6.2.1, RFC 896),
        SACK-driven retransmissions first during recovery (RFC 6675 NextSeg)."""
        if self.state not in (State.ESTABLISHED, State.CLOSE_WAIT, State.FIN_WAIT_1,
                              State.CLOSING, State.LAST_ACK):
            return
        sent_any = False
        if self.in_recovery and self.sack_ok:
            sent_any = self._sack_recovery(now)
        while True:
            fin_pending = self.fin_queued and seq.le(self.snd_nxt, self.fin_seq)
            avail = seq.sub(self.fin_seq, self.snd_nxt)
            if avail <= 0 and not fin_pending:
                break
            # After an RTO, skip what the receiver already holds (RFC 6675 5.1).
            resending = seq.lt(self.snd_nxt, self.snd_max)
            if self.sack_ok and resending and self.scoreboard.is_sacked(self.snd_nxt):
                nxt = self._sacked_end(self.snd_nxt)
                self.snd_nxt = nxt if seq.le(nxt, self.snd_max) else self.snd_max
                continue
            usable = self._usable_window()
            if force_one and not sent_any:
                usable = max(usable, min(self.send_mss, max(avail, 1)))
            if avail <= 0:
                # Only the FIN is left: it needs one octet of window.
                if usable >= 1:
                    self._emit(FIN | ACK, self.snd_nxt, now)
                    if seq.lt(self.snd_nxt, self.snd_max):
                        self._note_retransmit(self.snd_nxt, 0, now, "rto")
                    self.snd_nxt = seq.add(self.snd_nxt, 1)
                    if seq.gt(self.snd_nxt, self.snd_max):
                        self.snd_max = self.snd_nxt
                    if self.rto_at is None:
                        self._arm_rto(now)
                    sent_any = True
                break
            seg_size = self.send_mss
            n = min(avail, seg_size, max(usable, 0))
            if n <= 0:
                break
            if n < seg_size and seq.ge(self.snd_nxt, self.snd_max):
                # A partial segment of new data: Nagle and sender SWS avoidance decide.
                all_queued = n == avail
                idle = self.snd_una == self.snd_max
                if not all_queued and n < self.max_snd_wnd // 2:
                    break  # window too small for a worthwhile segment: wait (SWS)
                if all_queued and not (self.nodelay or idle or self.fin_queued):
                    break  # Nagle: wait for the ACK of the outstanding small segment
            self._send_data(self.snd_nxt, n, now)
            sent_any = True
        # Zero window with something to send: the persist timer (RFC 9293 3.8.6.1).
        pending = seq.sub(self.fin_seq, self.snd_nxt) > 0 or (
            self.fin_queued and seq.le(self.snd_nxt, self.fin_seq)
        )
        # Also when the window is open but too small to use (see _on_persist).
        if pending and self.snd_una == self.snd_max:
            self.rto_at = None
            if self.persist_at is None:
                self._arm_persist(now)
        elif self.snd_wnd > 0:
            self.persist_at = None
        if sent_any:
            self.delack_at = None

    def _sack_recovery(self, now: float) -> bool:
        """RFC 6675 section 5 (step C): while pipe < cwnd, send NextSeg()."""
        sent = False
        for _ in range(1000):
            pipe = self.scoreboard.pipe(self.snd_una, self.snd_max, self.high_rxt)
            if self.cc.cwnd - pipe < self.mss and sent:
                break
            if self.cc.cwnd - pipe <= 0:
                break
            hole = self.scoreboard.next_seg(self.snd_una, self.snd_max, self.high_rxt)
            if hole is None:
                break
            start, _end = hole
            self._retransmit(start, now, "sack")
            sent = True
        return sent

    def _sacked_end(self, sn: int) -> int:
        for start, end in self.scoreboard.blocks:
            if seq.le(start, sn) and seq.lt(sn, end):
                return end
        return sn

    # ------------------------------------------------------------------ path MTU

    def on_pmtu(self, mtu: int, now: float) -> None:
        """ICMP fragmentation needed (RFC 1191): lower the MSS and resend what is in flight."""
        if mtu >= self.pmtu or mtu < 68:
            return
        self.pmtu = max(mtu, 296)
        self.cc.on_mss_change(self.mss)
        self.scoreboard.mss = self.mss
        if self.trace.enabled:
            self.trace.emit(TimerEvent(now, self.id, "pmtu", f"mtu {self.pmtu} mss {self.mss}"))
        if self.flight_size and self.state in SYNCHRONIZED:
            self.snd_nxt = self.snd_una  # resend in smaller segments, no congestion response
            self._output(now, force_one=True)
        self._update_deadline()

    # ------------------------------------------------------------------ introspection

    def info(self) -> dict[str, object]:
        """What `ss -tni` shows for a Linux socket."""
        return {
            "state": self.state.value,
            "local": endpoint(self.local_ip, self.local_port),
            "remote": endpoint(self.remote_ip, self.remote_port),
            "recv_q": len(self.rcvq),
            "send_q": len(self.sndq),
            "rto": self.rtt.rto * (1 << self.backoff),
            "srtt": self.rtt.srtt,
            "rttvar": self.rtt.rttvar,
            "cwnd": self.cc.cwnd,
            "ssthresh": self.cc.ssthresh,
            "mss": self.mss,
            "snd_wnd": self.snd_wnd,
            "rcv_wnd": max(seq.sub(self.rcv_adv, self.rcv_nxt), 0),
            "cc": self.cc.name,
            "retransmits": self.stats.retransmits,
            "bytes_retrans": self.stats.bytes_retrans,
            "bytes_sent": self.stats.bytes_sent,
            "bytes_acked": self.stats.bytes_acked,
            "bytes_received": self.stats.bytes_received,
            "options": ",".join(
                name for name, on in (("ws", self.ws_ok), ("sack", self.sack_ok), ("ts", self.ts_ok)) if on
            ),
        }



def _flag_letters(flags: int) -> str:
    return flags_str(flags)
