"""Loss recovery: duplicate ACKs, limited transmit, fast retransmit and fast recovery (NewReno,
RFC 6582, or SACK-based, RFC 6675, chosen by whether SACK was negotiated), and the response to a
retransmission timeout (RFC 6298 section 5, RFC 5681 eq. (4)).

The interface the rest of the connection uses, whichever of the two runs:
  `_on_dupack`        a duplicate ACK arrived (RFC 5681 section 2)
  `_recovery_on_ack`  new data was acknowledged: leave recovery, a partial ACK, or grow cwnd
  `_usable_window`    how much may be sent now (cwnd against FlightSize, or against the pipe)
  `_sack_recovery`    RFC 6675 NextSeg transmissions while in SACK recovery
  `_on_rto`           the retransmission timer fired
This module and stack.tcp.congestion are the only places that set cwnd or ssthresh.
"""

from __future__ import annotations

from stack import seq
from stack.compiled import mypyc_attr
from stack.tcp.autotune import Autotune
from stack.tcp.state import State
from stack.tcp.tcb import TIMER_SLACK
from stack.tcp.timers import keepinit_deadline
from stack.wire.tcp import TcpSegment


@mypyc_attr(allow_interpreted_subclasses=True)
class Recovery(Autotune):
    def _usable_window(self) -> int:
        """Octets we may still send: the peer's window and the congestion window (RFC 5681)."""
        peer = seq.sub(seq.add(self.snd_una, self.snd_wnd), self.snd_nxt)
        if self.in_recovery and self.sack_ok:
            pipe = self.scoreboard.pipe(self.snd_una, self.snd_max, self.high_rxt)
            cwnd_room = self.cc.cwnd - pipe
        else:
            cwnd_room = self.cc.cwnd - seq.sub(self.snd_nxt, self.snd_una)
        return min(peer, cwnd_room)

    def _recovery_on_ack(self, seg: TcpSegment, ack: int, acked: int, flight_before: int, now: float) -> None:
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
                self.cc.deflate_partial_ack(acked, self.mss)
                self._arm_rto(now, restart=not self._partial_ack_seen)
                self._partial_ack_seen = True
        else:
            # cwnd grows only while it is what limits sending (stack.tcp.cwv: RFC 7661, RFC 9438
            # 5.8). An ACK that finds it unused, or leaves nothing in flight (idle until the
            # application writes), stops the clock of time-based growth (RFC 9438 4.2).
            limited = self.cwnd_use.cwnd_limited(self.cc.cwnd, self.cc.in_slow_start)
            if limited:
                self.cc.on_ack(acked, now, self.rtt.srtt, flight_before)
            if not limited or self.flight_size == 0:
                self.cc.on_app_limited(now)
            if self.trace.enabled:
                self._cwnd_event("ack", now)

    def _on_dupack(self, now: float) -> None:
        self.stats.dupacks_in += 1
        self.dupacks += 1
        if self.in_recovery:
            if not self.sack_ok:
                self.cc.inflate(self.mss)  # NewReno inflation (RFC 6582 3.2 step 4)
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
            # RFC 6582 3.2 step 2: cwnd = ssthresh + 3*SMSS.
            self.cc.set_window(self.cc.ssthresh + self.config.dupack_threshold * self.mss)
        self._arm_rto(now, restart=True)

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

    # ------------------------------------------------------------------ retransmission timeout

    def _on_rto(self, now: float) -> None:
        """Retransmission timeout (RFC 6298 section 5)."""
        self.stats.rto_expiries += 1
        self.retries += 1
        self.rtt_seq = None  # Karn's rule: never time a retransmitted segment
        if self.state in (State.SYN_SENT, State.SYN_RECEIVED):
            keepinit = keepinit_deadline(self)
            if keepinit is not None and now + TIMER_SLACK >= keepinit:
                self._give_up(now, "timer:keepinit")
                return
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
            self.cc.keep_ssthresh(kept)
        elif not self.rto_recovery or seq.ge(self.snd_una, self.recover):
            self.cc.on_rto(now, self.flight_size)
        else:
            self.cc.set_window(self.mss)  # a timeout during go-back-N: the loss window again
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
