"""The sending half: the send buffer, what goes out now (`_output`: the windows, Nagle, sender
SWS avoidance; `_cwnd_validate`: whether cwnd was the limit), (re)transmission of one segment,
the ACK of new data, the send window update rule and the persist timer's zero-window probes.
"""

from __future__ import annotations

from stack import seq
from stack.compiled import mypyc_attr
from stack.tcp.recovery import Recovery
from stack.tcp.state import State
from stack.trace import Retransmit
from stack.wire.tcp import ACK, FIN, PSH, URG, TcpSegment

# States in which queued data and the FIN may be sent (RFC 9293 3.10.2, 3.10.4).
_OUTPUT_STATES = (State.ESTABLISHED, State.CLOSE_WAIT, State.FIN_WAIT_1, State.CLOSING, State.LAST_ACK)


@mypyc_attr(allow_interpreted_subclasses=True)
class Sender(Recovery):
    def _send_data(self, start: int, n: int, now: float, force_push: bool = False, gso: int = 0) -> None:
        """Send sndq octets [start, start+n) plus FIN if it follows and fits. Advances snd_nxt.
        With gso: as one TSO super-segment of n // gso full segments (n a multiple of gso)."""
        off = seq.sub(start, self.sndq_seq)
        payload = self.sndq.read(off, n)
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
        self._emit(flags, start, now, payload, urgent, gso)
        if n < self.send_mss:  # (a TSO train is whole full segments: never small)
            self.snd_sml = end  # the end of the last small segment sent (Minshall)
        seg_end = seq.add(end, 1) if flags & FIN else end
        if retrans:
            self._note_retransmit(start, n, now, "rto" if self.rto_recovery else "sack")
        else:
            self.stats.bytes_sent += n
            if self.data_rcv_time is not None and now - self.data_rcv_time < self.config.delack_timeout:
                self.pingpong = True  # a reply within the ACK delay: interactive (Linux pingpong)
            if self.rtt_seq is None and not self.ts_ok:
                self.rtt_seq, self.rtt_time = start, now
        self.snd_nxt = seg_end
        if seq.gt(seg_end, self.snd_max):
            self.snd_max = seg_end
        if self.rto_at is None:
            self._arm_rto(now)

    def _send_full_segments(self, now: float) -> None:
        """Right after _send_data sent a full-sized segment of new data: the full-sized segments
        that the next turns of _output's loop would send one by one (as many as the windows and
        the queue allow), with less work each. Nothing their ACK, window or options depend on
        changes between them: the first took the D-SACK report, the quick-ACK count, the RTT
        timing and armed the RTO; the window it offered only repeats (`_window_field`). So
        each is the first's header with its own sequence number, PSH and FIN as _send_data
        would set them (tests.trace_compare: the same traces, byte for byte)."""
        mss = self.send_mss
        count = min(seq.sub(self.fin_seq, self.snd_nxt), self._usable_window()) // mss
        if count <= 0:
            return
        ack = self.rcv_nxt
        window = self._window_field(False)
        options = self._options(ACK, now, mss)
        push_seq = self.push_seq
        fin_seq = self.fin_seq if self.fin_queued else None
        stats = self.stats
        for _ in range(count):
            start = self.snd_nxt
            end = seq.add(start, mss)
            flags = ACK
            if push_seq is not None and seq.ge(end, push_seq):
                flags |= PSH
            if end == fin_seq:
                flags |= FIN
            payload = self.sndq.read(seq.sub(start, self.sndq_seq), mss)
            stats.segs_out += 1
            self._transmit(self, TcpSegment(self.local_port, self.remote_port, start, ack, flags, window,
                                            payload, options), now)
            stats.bytes_sent += mss
            self.snd_nxt = seq.add(end, 1) if flags & FIN else end
            if seq.gt(self.snd_nxt, self.snd_max):
                self.snd_max = self.snd_nxt

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
        self._emit(flags, start, now, self.sndq.read(off, n))
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
        if self.state not in _OUTPUT_STATES:
            return
        if (self.snd_una == self.snd_max and self.snd_nxt == self.snd_una and not self.fin_queued
                and self.persist_at is None and not self.in_recovery
                and seq.sub(self.fin_seq, self.snd_nxt) <= 0 and self.cc.cwnd >= self.mss):
            # Nothing queued, nothing in flight, no timer to stop (a pure receiver's every
            # segment): each step below would do nothing, cwnd validation included (cwnd is
            # not below send_mss, which is at most mss).
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
            if n == seg_size and self.gso_max and not resending and self.snd_up is None:
                # TSO: the train of full-sized segments the windows allow leaves as one
                # super-segment the kernel cuts (sequence space and cwnd still count octets).
                train = min(avail, usable, self.gso_max) // seg_size * seg_size
                if train > seg_size:
                    self._send_data(self.snd_nxt, train, now, gso=seg_size)
                    sent_any = True
                    continue
            if n < seg_size and seq.ge(self.snd_nxt, self.snd_max):
                # A partial segment of new data: Nagle and sender SWS avoidance decide.
                all_queued = n == avail
                if self.config.nagle_minshall:
                    # Minshall's variant (Linux tcp_minshall_check): wait only while a small
                    # segment we sent is unacknowledged, not for any data in flight.
                    idle = not (seq.gt(self.snd_sml, self.snd_una) and seq.le(self.snd_sml, self.snd_nxt))
                else:
                    idle = self.snd_una == self.snd_max  # RFC 896 as RFC 9293 3.7.4 states it
                if not all_queued and n < self.max_snd_wnd // 2:
                    break  # window too small for a worthwhile segment: wait (SWS)
                if all_queued and not (self.nodelay or idle or self.fin_queued):
                    break  # Nagle: wait for the ACK of the outstanding small segment
            self._send_data(self.snd_nxt, n, now)
            sent_any = True
            if n == seg_size and not self.gso_max and not resending and self.snd_up is None:
                self._send_full_segments(now)
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
        self._cwnd_validate(sent_any)

    def _cwnd_validate(self, sent: bool) -> None:
        """After output (Linux tcp_cwnd_validate): cwnd was the limit if less than a full
        segment of it is left (tcp_write_xmit: packets in flight >= cwnd); note it with
        FlightSize, for the ACKs to come (stack.tcp.cwv)."""
        if self.in_recovery and self.sack_ok:
            in_flight = self.scoreboard.pipe(self.snd_una, self.snd_max, self.high_rxt)
        else:
            in_flight = seq.sub(self.snd_nxt, self.snd_una)
        limited = self.cc.cwnd - in_flight < self.send_mss
        if sent or limited:
            self.cwnd_use.on_output(limited, self.flight_size, self.snd_una, self.snd_max)

    # ------------------------------------------------------------------ acknowledgments

    def _on_new_ack(self, seg: TcpSegment, ack: int, acked: int, now: float) -> None:
        """SEG.ACK acknowledges `acked` new octets: sample the RTT, release the send buffer,
        advance SND.UNA, let loss recovery and the congestion controller act, restart the RTO."""
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
            self.sndq.drop(data_acked)
            self.sndq_seq = seq.add(self.sndq_seq, data_acked)
        self.stats.bytes_acked += acked
        self.snd_una = ack
        if seq.lt(self.snd_nxt, ack):
            self.snd_nxt = ack
        self.retries = 0
        self.backoff = 0
        self._recovery_on_ack(seg, ack, acked, flight_before, now)
        self._sndbuf_expand()
        # RFC 6298 5.2/5.3: stop the timer when all is acknowledged, else restart it.
        if self.flight_size == 0:
            self.rto_at = None
        elif not self.in_recovery or self.sack_ok:
            self._arm_rto(now, restart=True)
        self._notify(self)  # send space opened

    def _update_send_window(self, seg: TcpSegment, ack: int, window: int, now: float) -> None:
        """RFC 9293 3.10.7.4 fifth check: take the window if the segment is newer (SND.WL1/WL2)."""
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
                if self.config.zero_window_probe_empty:
                    self._arm_persist(now)  # Linux tcp_ack_probe: the next probe counts from here

    # ------------------------------------------------------------------ persist timer

    def _on_persist(self, now: float) -> None:
        """Zero-window probe (RFC 9293 3.8.6.1): send one octet beyond the window, with backoff."""
        if self.state not in _OUTPUT_STATES:
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
        if self.config.zero_window_probe_empty:
            # Linux (tcp_write_wakeup, tcp_xmit_probe_skb): no octet of data, an old sequence
            # number (SND.UNA - 1) that the receiver must answer with an ACK carrying its window
            # (RFC 9293 3.10.7.4 first check); nothing is sent beyond the window.
            self._emit(ACK, seq.add(self.snd_una, -1), now)
            self.persist_backoff += 1
            self._arm_persist(now)
            return
        # An earlier probe octet that was not acknowledged is resent; else a new one goes.
        probe_seq = self.snd_una if seq.lt(self.snd_una, self.snd_max) else self.snd_nxt
        if seq.lt(probe_seq, self.fin_seq):
            off = seq.sub(probe_seq, self.sndq_seq)
            self._emit(ACK, probe_seq, now, self.sndq.read(off, 1))
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
