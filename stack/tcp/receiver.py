"""The receiving half: segment acceptability, PAWS, trimming to the window, reassembly, D-SACK,
the advertised window with receiver-side SWS avoidance, delayed ACKs and the in-order FIN.
(The SACK blocks themselves ride on every segment: see Tcb._options.)
"""

from __future__ import annotations

from stack import seq
from stack.tcp.state import CAN_RECEIVE_TEXT, SYNCHRONIZED, State
from stack.tcp.tcb import Tcb
from stack.tcp.transitions import Event
from stack.wire.tcp import FIN, RST, TcpSegment, flags_str


class Receiver(Tcb):
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

    def _check_sequence(self, seg: TcpSegment, now: float) -> bool:
        """PAWS and the first check (RFC 9293 3.10.7.4). False: the segment is done with."""
        flags = seg.flags
        # RFC 7323 5.3 PAWS: a segment with an older timestamp is an old duplicate.
        ts = seg.timestamps
        if self.ts_ok and ts is not None and not flags & RST:
            if seq.lt(ts.tsval, self.ts_recent) and now - self.ts_recent_age < 24 * 86400:
                self._drop("paws", now)
                self._send_ack(now)
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
            self._send_ack(now)
            return False

        # RFC 7323 4.3: remember the timestamp to echo (segment covers Last.ACK.sent).
        if self.ts_ok and ts is not None and seq.le(seg.seq, self.last_ack_sent):
            self.ts_recent = ts.tsval
            self.ts_recent_age = now
        return True

    # ------------------------------------------------------------------ the advertised window

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

    def _window_update_after_read(self, now: float) -> None:
        """A window update once the right edge can move by the SWS amount (RFC 9293 3.8.6.2.2)."""
        if self.state in SYNCHRONIZED and self.state not in (State.TIME_WAIT,) and not self.fin_received:
            free = self.rcvbuf - len(self.rcvq)
            cur = max(seq.sub(self.rcv_adv, self.rcv_nxt), 0)
            if free - cur >= min(self.rcvbuf // 2, self.mss):
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
                self._on_fin(now, "segment:" + flags_str(seg.flags))
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
            self.unacked_segs += n // self.mss  # a GRO super-segment counts what it stands for
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
        self._send_ack(now)
        self._notify(self)
