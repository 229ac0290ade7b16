"""The receiving half: segment acceptability, PAWS, trimming to the window, reassembly, D-SACK,
the advertised window with receiver-side SWS avoidance, delayed ACKs and the in-order FIN.
(The SACK blocks themselves ride on every segment: see Tcb._options.)
"""

from __future__ import annotations

from stack import seq
from stack.compiled import mypyc_attr
from stack.tcp.sender import Sender
from stack.tcp.state import CAN_RECEIVE_TEXT, SYNCHRONIZED, State
from stack.tcp.transitions import Event
from stack.wire.tcp import ACK, FIN, RST, SYN, TcpSegment, flags_str


@mypyc_attr(allow_interpreted_subclasses=True)
class Receiver(Sender):
    def _acceptable(self, seg: TcpSegment) -> bool:
        """The four-case acceptability test of RFC 9293 3.10.7.4."""
        seg_len = seg.seg_len
        rcv_wnd = self._rcv_wnd()
        if seg_len == 0:
            if rcv_wnd == 0:
                return seg.seq == self.rcv_nxt
            return seq.in_window(seg.seq, self.rcv_nxt, rcv_wnd)
        if rcv_wnd == 0:
            return False
        last = seq.add(seg.seq, seg_len - 1)
        return seq.in_window(seg.seq, self.rcv_nxt, rcv_wnd) or seq.in_window(last, self.rcv_nxt, rcv_wnd)

    def _rcv_wnd(self) -> int:
        """RCV.WND: what we advertised (the right edge never moves left); with
        `rcv_wnd_is_free_space`, the free buffer space when larger (FreeBSD's tcp_input), but
        for a passive open's SYN_RECEIVED (FreeBSD's syncache entry knows only what it offered)."""
        wnd = max(seq.sub(self.rcv_adv, self.rcv_nxt), 0)
        syncache = self.state is State.SYN_RECEIVED and self.listener is not None
        if self.config.rcv_wnd_is_free_space and not syncache:
            wnd = max(wnd, self.rcvbuf - len(self.rcvq))
        return wnd

    def _check_sequence(self, seg: TcpSegment, now: float) -> bool:
        """PAWS and the first check (RFC 9293 3.10.7.4). False: the segment is done with."""
        flags = seg.flags
        # RFC 7323 5.3 PAWS: a segment with an older timestamp is an old duplicate.
        ts = seg.timestamps
        if self.ts_ok and ts is not None and not flags & RST:
            if seq.lt(ts.tsval, self.ts_recent) and now - self.ts_recent_age < 24 * 86400:
                self._drop("paws", now)
                self._send_oow_ack(seg, now, "paws")
                return False

        # First: the sequence number.
        if not self._acceptable(seg):
            if flags & RST:
                self._drop("rst_out_of_window", now)
                return False
            # RFC 2883: report a wholly duplicate segment with a D-SACK block.
            if self.sack_ok and seg.payload and seq.le(seq.add(seg.seq, len(seg.payload)), self.rcv_nxt):
                self.dsack = (seg.seq, seq.add(seg.seq, len(seg.payload)))
            if self.state is State.TIME_WAIT and flags & FIN:
                self._restart_time_wait(now)  # a retransmitted FIN: re-ACK, restart 2*MSL
            self._drop("unacceptable_segment", now)
            self._send_oow_ack(seg, now, "unacceptable_segment")
            return False

        return True

    def _send_oow_ack(self, seg: TcpSegment, now: float, why: str) -> None:
        """The ACK answering an out-of-window or PAWS-failed segment (RFC 9293 3.10.7.4), at
        most one per invalid_ratelimit unless the segment occupies sequence space and is no SYN
        (Linux tcp_oow_rate_limited): two ends that each find the other's ACK unacceptable
        must not answer each other forever (an ACK storm)."""
        if (seg.seg_len and not seg.flags & SYN) or self._oow.allow(now):
            self._send_ack(now)
        else:
            self._drop("oow_ack_limited", now, why)

    def _time_wait_answer(self, seg: TcpSegment, now: float) -> bool:
        """TIME-WAIT as FreeBSD's tcp_twcheck (`time_wait_acks_all`), for a segment without RST or
        SYN: one without ACK is dropped, any but an exact duplicate ACK gets an ACK, whatever the
        window; a FIN just left of RCV.NXT restarts 2*MSL. True when done with the segment."""
        flags = seg.flags
        if flags & (RST | SYN):
            return False  # the checks of RFC 9293 3.10.7.4 and RFC 5961 apply
        if not flags & ACK:
            self._drop("no_ack", now)
            return True
        if flags & FIN and seq.add(seg.seq, len(seg.payload) + 1) == self.rcv_nxt:
            self._restart_time_wait(now)
        if flags != ACK or seg.payload or seg.seq != self.rcv_nxt or seg.ack != self.snd_max:
            self._send_ack(now)
        return True

    def _update_ts_recent(self, seg: TcpSegment, now: float) -> None:
        """RFC 7323 4.3: remember the timestamp to echo if the segment covers Last.ACK.sent.
        Called only once the fifth check has accepted the segment's ACK: a segment that is
        discarded (an ACK of unsent data, RFC 5961 5.2; a challenged RST or SYN, RFC 5961 3, 4)
        must not move TS.Recent, or the next valid segment would fail PAWS (a blind in-window
        segment with a far-future TSval would stall the connection)."""
        ts = seg.timestamps
        if self.ts_ok and ts is not None and seq.le(seg.seq, self.last_ack_sent):
            self.ts_recent = ts.tsval
            self.ts_recent_age = now

    # ------------------------------------------------------------------ the advertised window

    def _sws_threshold(self) -> int:
        """RFC 9293 3.8.6.2.2 (MUST-39): the right edge moves by at least min(RCV.BUFF/2, MSS)."""
        return min(self.rcvbuf // 2, self.mss)

    def _advertisable(self) -> int:
        """The largest window the field can say now: free buffer space, capped by what the
        16-bit field holds at our window scale (65535 octets when the peer does not scale)."""
        free = max(self.rcvbuf - len(self.rcvq), 0)
        shift = self.rcv_wscale if self.ws_ok else 0
        return min(free, 0xFFFF << shift)

    def _window_field(self, syn: bool) -> int:
        """The window to advertise: free buffer space with receiver-side SWS avoidance
        (RFC 9293 3.8.6.2.2), or with `advertise_free_space` the free space as it is (FreeBSD);
        either way the right edge never moves left (RFC 9293 3.8.6)."""
        free = max(self.rcvbuf - len(self.rcvq), 0)
        cur = max(seq.sub(self.rcv_adv, self.rcv_nxt), 0)
        if self.config.advertise_free_space:  # FreeBSD's tcp_output
            target = max(free if free >= min(self.rcvbuf // 4, self.mss) else 0, cur)
        else:
            target = free if free - cur >= self._sws_threshold() else cur
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

    def _window_update_after_read(self, now: float) -> None:
        """A read sends a window update only when the advertised right edge would really move
        by the SWS amount (RFC 9293 3.8.6.2.2, MUST-39): one that repeats the last ACK's number
        and window is a duplicate ACK to a sender with data in flight (RFC 5681 section 2).
        With `window_update_doubling` (Linux's tcp_cleanup_rbuf), only when the window at
        least doubles from at most half the largest one we can offer."""
        if self.state not in SYNCHRONIZED or self.state is State.TIME_WAIT or self.fin_received:
            return
        cur = max(seq.sub(self.rcv_adv, self.rcv_nxt), 0)
        avail = self._advertisable()
        if avail - cur < self._sws_threshold():
            return
        if self.config.window_update_doubling:
            shift = self.rcv_wscale if self.ws_ok else 0
            clamp = min(self.rcvbuf, 0xFFFF << shift)
            if 2 * cur > clamp or min(avail, self.rcv_ssthresh) < 2 * cur:
                return
        self._send_ack(now)

    # ------------------------------------------------------------------ text and FIN

    def _process_text_and_fin(self, seg: TcpSegment, now: float, seqno: int) -> None:
        """Seventh and eighth checks (RFC 9293 3.10.7.4)."""
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
        room = self._rcv_wnd() - seq.sub(start, self.rcv_nxt)
        if len(payload) > room:
            payload = payload[: max(room, 0)]
            fin = False  # the FIN lies beyond the window
        end = seq.add(start, len(payload))

        if payload and (self.app_closed or self.read_shut) and self.state in (
                State.FIN_WAIT_1, State.FIN_WAIT_2):
            # Data for an application that has closed (or shut both directions): nobody will
            # read it (RFC 2525 2.17, RFC 1122 4.2.2.13).
            self.abort(now, "segment:data_after_close")
            return

        if payload and self.sack_ok and len(self.ooo) and self.dsack is None:
            # RFC 2883 section 4: data that partly duplicates what is held out of order is
            # reported by a first (D-SACK) block for the duplicate part, then the block holding
            # it; also when the segment starts at RCV.NXT and fills the hole.
            self.dsack = self.ooo.first_overlap(start, end)

        if start == self.rcv_nxt:
            filled_hole = False
            if payload:
                self._queue_in_order(seg, payload, now)
                if len(self.ooo):
                    more = self.ooo.pop_ready(self.rcv_nxt)
                    if more:
                        self.rcvq.append(more)
                        self.rcv_nxt = seq.add(self.rcv_nxt, len(more))
                        self.stats.bytes_received += len(more)
                    filled_hole = True
                self._notify(self)
            if fin or (self.ooo.fin_seq is not None and self.ooo.fin_seq == self.rcv_nxt):
                self._on_fin(now, "segment:" + flags_str(seg.flags))
                return
            if payload:
                # At once for data that fills a hole (RFC 5681 4.2) or carries a D-SACK report
                # (RFC 2883 section 4): the next in-order segment would supersede the report.
                self._ack_data(len(payload), now, immediate=filled_hole or self.dsack is not None)
            return

        # Out of order: keep it (bounded), and ACK at once with SACK blocks (RFC 5681 4.2).
        self.stats.ooo_segments += 1
        if payload:
            # RFC 2883: D-SACK only a true duplicate. A segment refused for lack of room
            # (the receive buffer) was not received: a SACK block for it would make the sender skip it.
            stored = self.ooo.add(start, payload, self.rcv_nxt)
            if not stored and self.sack_ok and self.ooo.covers(start, end):
                self.dsack = (start, end)
        if fin:
            self.ooo.fin_seq = end
        self._send_ack(now)

    def _queue_in_order(self, seg: TcpSegment, payload: bytes, now: float) -> None:
        """Text at RCV.NXT into the receive buffer (both the full path and header prediction);
        with autotuning, the segment also times the round trip as the receiver sees it."""
        self.rcvq.append(payload)
        self.rcv_nxt = seq.add(self.rcv_nxt, len(payload))
        self.stats.bytes_received += len(payload)
        if self.rcvbuf_max is not None:
            self._rcv_rtt_measure(seg, now)

    def _quickack_on_data(self, n: int, now: float) -> bool:
        """Quick-ACK mode, as Linux (tcp_event_data_recv, tcp_incr_quickack): the first data
        and data after a silence longer than the RTO are ACKed at once, up to
        `quickack_segments` ACKs (fewer for a small window), so a sender in slow start is not
        held back; not once the connection is interactive (we answered within the ACK delay:
        the reply carries the ACK). RFC 9293 3.8.6.3 allows an ACK at any time."""
        last, self.data_rcv_time = self.data_rcv_time, now
        if last is None or now - last > self.rtt.rto:
            wnd = max(seq.sub(self.rcv_adv, self.rcv_nxt), 0) + n  # as offered before these n
            want = min(wnd // (2 * self.mss) or 2, self.config.quickack_segments)
            self.quickacks = max(self.quickacks, want)
        return self.quickacks > 0 and not self.pingpong

    def _ack_data(self, n: int, now: float, immediate: bool) -> None:
        """Delayed ACK (RFC 9293 3.8.6.3, RFC 5681 4.2): ACK every second full-sized segment,
        at once for hole-filling data or in quick-ACK mode, else within delack_timeout."""
        self.rcv_ssthresh = min(self.rcv_ssthresh + 2 * self.mss, self.rcvbuf)
        if self.config.quickack_segments and self._quickack_on_data(n, now):
            immediate = True
        if n >= self.mss:
            self.unacked_segs += n // self.mss  # a GRO super-segment counts what it stands for
        elif self.config.delack_any_size:
            self.unacked_segs += 1
        else:
            self.unacked_segs += 1 if n * 2 >= self.mss else 0
        if immediate:
            self._send_ack(now)
        elif self.unacked_segs >= self.config.delack_segments or self.config.delack_timeout <= 0:
            self._ack_in_batch(now)
        elif self.delack_at is None:
            self.delack_at = now + self.config.delack_timeout

    def _on_fin(self, now: float, cause: str) -> None:
        """Eighth check (RFC 9293 3.10.7.4): the FIN is in order; acknowledge it at once."""
        self.fin_received = True
        self.rcv_nxt = seq.add(self.rcv_nxt, 1)
        self.ooo.clear()
        st = self.state
        if st in (State.SYN_RECEIVED, State.ESTABLISHED):
            self._transition(Event.RCV_FIN, cause, now)
        elif st is State.FIN_WAIT_1:
            if self.fin_queued and seq.gt(self.snd_una, self.fin_seq):
                self._enter_time_wait(now, cause, Event.RCV_FIN_ACK_OF_FIN)
            else:
                self._transition(Event.RCV_FIN, cause, now)
        elif st is State.FIN_WAIT_2:
            self._enter_time_wait(now, cause, Event.RCV_FIN)
        if st is State.FIN_WAIT_1 and self.state is State.CLOSING and self.config.closing_ack_resends_fin:
            self._emit(FIN | ACK, self.fin_seq, now)  # FreeBSD's tcp_output: the FIN again, with the ACK
        else:
            self._send_ack(now)
        self._notify(self)
