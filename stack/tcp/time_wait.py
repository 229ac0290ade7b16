"""A light TIME_WAIT entry (RFC 9293 3.6.1, 3.10.7.4) for a connection the application closed.

A whole `TcpConnection` costs about 4 KB; a connection in TIME_WAIT only has to answer a
retransmitted FIN, challenge an in-window RST or SYN (RFC 5961), close on an exact RST, and
expire after 2*MSL. Once the application has let go of a connection that enters TIME_WAIT, the
host swaps it for this record (Linux's inet_timewait_sock does the same), which keeps just the
numbers needed. A connection the application still holds (after shutdown(), say) keeps its full
object. The record speaks for the same connection id and ends through the same transition
table (stack.tcp.transitions): the connection object, if something still refers to it, takes the
TIME_WAIT -> CLOSED edge itself (one trace event, as if no record had stood in); else the record
takes it and traces it.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

from stack import seq
from stack.tcp.connection import TcpConnection
from stack.tcp.ratelimit import ChallengeAckLimiter, OutOfWindowLimiter
from stack.tcp.state import State
from stack.tcp.tcb import TIMER_SLACK, TS_HZ
from stack.tcp.transitions import Event, take
from stack.trace import Drop, StateChange, TimerEvent
from stack.wire.tcp import ACK, FIN, RST, SYN, Nop, TcpOption, TcpSegment, Timestamps

PAWS_IDLE = 24 * 86400  # RFC 7323 5.5: TS.Recent older than 24 days is no reference


def can_stand_in(conn: TcpConnection) -> bool:
    """Whether a record may replace conn: the application let go of it, and its settings are the
    ones the record answers by (RFC 9293 with RFC 5961). A connection of the freebsd profile
    (time_wait_acks_all, no RFC 5961 checks) keeps its own object through TIME_WAIT."""
    cfg = conn.config
    return conn.app_closed and not cfg.time_wait_acks_all and cfg.rfc5961_rst and cfg.rfc5961_syn


class TimeWaitRecord:
    __slots__ = (
        "__weakref__",
        "_challenge",
        "_conn",
        "_oow",
        "_sched",
        "_transmit",
        "ack_floor",
        "app_closed",
        "config",
        "id",
        "local_ip",
        "local_port",
        "msl",
        "rcv_nxt",
        "rcv_wnd",
        "remote_ip",
        "remote_port",
        "snd_nxt",
        "state",
        "time_wait_at",
        "trace",
        "ts_offset",
        "ts_ok",
        "ts_recent",
        "ts_recent_age",
        "window",
    )

    def __init__(
        self,
        conn: TcpConnection,
        transmit: Callable[[TimeWaitRecord, TcpSegment, float], None],
        sched: Callable[[TimeWaitRecord], None],
        challenge: ChallengeAckLimiter,
    ) -> None:
        self.id = conn.id
        self.local_ip, self.local_port = conn.local_ip, conn.local_port
        self.remote_ip, self.remote_port = conn.remote_ip, conn.remote_port
        self.state = State.TIME_WAIT
        self.app_closed = True
        self.snd_nxt = conn.snd_max  # our FIN is acknowledged: nothing lies beyond it
        # RFC 5961 5.2: an ACK below SND.UNA - MAX.SND.WND is too old to be genuine.
        self.ack_floor = seq.add(conn.snd_una, -max(conn.max_snd_wnd, 1))
        self.rcv_nxt = conn.rcv_nxt
        self.rcv_wnd = max(seq.sub(conn.rcv_adv, conn.rcv_nxt), 0)
        shift = conn.rcv_wscale if conn.ws_ok else 0
        self.window = min(self.rcv_wnd >> shift, 0xFFFF)
        self.ts_ok = conn.ts_ok
        self.ts_offset = conn.ts_offset
        self.ts_recent, self.ts_recent_age = conn.ts_recent, conn.ts_recent_age
        self.time_wait_at = conn.time_wait_at
        self.msl = conn.config.msl
        self.config = conn.config  # the IP header fields of what it sends (stack.host._transmit)
        self.trace = conn.trace
        self._transmit = transmit
        self._sched = sched
        self._challenge = challenge
        self._oow = OutOfWindowLimiter(conn.config.invalid_ratelimit)
        self._conn = weakref.ref(conn)

    # ------------------------------------------------------------------ what the host calls

    def deadline(self) -> float | None:
        return self.time_wait_at

    def on_timer(self, now: float) -> None:
        if self.time_wait_at is not None and self.time_wait_at <= now + TIMER_SLACK:
            if self.trace.enabled:
                self.trace.emit(TimerEvent(now, self.id, "time_wait", "fired"))
            self._close(Event.TIMEOUT_2MSL, "timer:time_wait", now)

    def abort(self, now: float, cause: str = "call:abort") -> None:
        """TIME_WAIT ends without a RST (as TcpConnection.abort does in this state)."""
        self._close(Event.ABORT, cause, now)

    def close(self, now: float) -> None:
        """Nothing to do: the application closed the connection before it came here."""

    def info(self) -> dict[str, object]:
        return {"state": self.state.value, "local": f"{self.local_ip}:{self.local_port}",
                "remote": f"{self.remote_ip}:{self.remote_port}", "recv_q": 0, "send_q": 0,
                "timewait_record": True}

    def on_segment(self, seg: TcpSegment, now: float) -> None:
        """RFC 9293 3.10.7.4 in TIME_WAIT, as TcpConnection handles it there."""
        flags = seg.flags
        ts = seg.timestamps
        if self.ts_ok and ts is not None and not flags & RST and seq.lt(ts.tsval, self.ts_recent) \
                and now - self.ts_recent_age < PAWS_IDLE:
            self._drop("paws", now)
            self._oow_ack(seg, now)
            return
        if not self._acceptable(seg):
            if flags & RST:
                self._drop("rst_out_of_window", now)
                return
            if flags & FIN:
                self._restart(now)  # a retransmitted FIN: re-ACK, restart 2*MSL
            self._drop("unacceptable_segment", now)
            self._oow_ack(seg, now)
            return
        if flags & RST:
            if seg.seq == self.rcv_nxt:
                self._close(Event.RCV_RST, "segment:R", now)
            else:
                self._challenge_ack(now, "rst_in_window")
            return
        if flags & SYN:
            self._challenge_ack(now, "syn_in_window")  # the host took a SYN that reuses the tuple
            return
        if not flags & ACK:
            self._drop("no_ack", now)
            return
        if seq.gt(seg.ack, self.snd_nxt):
            self._drop("ack_of_unsent_data", now)
            self._challenge_ack(now, "ack_of_unsent_data")
            return
        if seq.lt(seg.ack, self.ack_floor):
            self._drop("ack_too_old", now)
            self._challenge_ack(now, "ack_too_old")
            return
        if self.ts_ok and ts is not None and seq.le(seg.seq, self.rcv_nxt):
            self.ts_recent, self.ts_recent_age = ts.tsval, now  # RFC 7323 4.3
        if flags & FIN:
            self._ack(now)
            self._restart(now)

    # ------------------------------------------------------------------ internals

    def _acceptable(self, seg: TcpSegment) -> bool:
        n, wnd = seg.seg_len, self.rcv_wnd
        if n == 0:
            return seg.seq == self.rcv_nxt if wnd == 0 else seq.in_window(seg.seq, self.rcv_nxt, wnd)
        if wnd == 0:
            return False
        last = seq.add(seg.seq, n - 1)
        return seq.in_window(seg.seq, self.rcv_nxt, wnd) or seq.in_window(last, self.rcv_nxt, wnd)

    def _ack(self, now: float) -> None:
        opts: tuple[TcpOption, ...] = ()
        if self.ts_ok:
            tsval = (int(now * TS_HZ) + self.ts_offset) & seq.MASK
            opts = (Nop(), Nop(), Timestamps(tsval, self.ts_recent))
        seg = TcpSegment(self.local_port, self.remote_port, self.snd_nxt, self.rcv_nxt, ACK, self.window,
                         b"", opts)
        self._transmit(self, seg, now)

    def _oow_ack(self, seg: TcpSegment, now: float) -> None:
        if (seg.seg_len and not seg.flags & SYN) or self._oow.allow(now):
            self._ack(now)
        else:
            self._drop("oow_ack_limited", now)

    def _challenge_ack(self, now: float, why: str) -> None:
        if self._oow.allow(now) and self._challenge.allow(now):
            if self.trace.enabled:
                self.trace.emit(TimerEvent(now, self.id, "challenge_ack", why))
            self._ack(now)
        else:
            self._drop("challenge_ack_limited", now, why)

    def _restart(self, now: float) -> None:
        self.time_wait_at = now + 2 * self.msl
        self._sched(self)  # the host's timer heap learns the new deadline

    def _close(self, event: Event, cause: str, now: float) -> None:
        if self.state is State.CLOSED:
            return
        self.time_wait_at = None
        conn = self._conn()
        if conn is not None and conn.state is State.TIME_WAIT:
            conn.end_time_wait(event, cause, now)  # traces the edge and tells its holder
            self.state = conn.state
            return
        old, self.state = self.state, take(self.state, event)
        if self.trace.enabled:
            self.trace.emit(StateChange(now, self.id, old.value, self.state.value, cause))

    def _drop(self, reason: str, now: float, detail: str = "") -> None:
        if self.trace.enabled:
            self.trace.emit(Drop(now, reason, detail, self.id))
