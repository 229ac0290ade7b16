"""One TCP connection: the event processing of RFC 9293 section 3.10, without I/O.

Three ways in: `on_segment` (a segment arrived), `on_timer` (the deadline came), and the
application calls (`send`, `recv`, `shutdown`, `close`, `abort`). One way out: the `transmit`
callable the host passes in receives every segment at the moment it is sent. One deadline:
`deadline()`. The host reschedules its timer heap through `sched` when the deadline moves and hears
of application-visible changes (data readable, space writable, state, error) through `notify`.

This module holds the three ways in and the steps of RFC 9293 3.10.7.4 in their order; the parts
they call live beside it, one role each, over the shared variables of stack.tcp.tcb:
stack.tcp.handshake, .receiver, .sender, .recovery and .timers. Every state change goes through
the table of stack.tcp.transitions.
"""

from __future__ import annotations

import errno

from stack import seq
from stack.errors import socket_error
from stack.inet import endpoint
from stack.tcp import congestion
from stack.tcp.counters import ConnStats
from stack.tcp.handshake import Handshake
from stack.tcp.ratelimit import ChallengeAckLimiter
from stack.tcp.state import CAN_RECEIVE_TEXT, CAN_SEND, SYNCHRONIZED, State
from stack.tcp.tcb import ListenerLink
from stack.tcp.transitions import Event
from stack.trace import TimerEvent
from stack.wire.icmp import ADMIN_PROHIBITED, DEST_UNREACH, PORT_UNREACH, PROTO_UNREACH, TIME_EXCEEDED
from stack.wire.tcp import ACK, FIN, PSH, RST, SYN, URG, TcpSegment, flags_str

__all__ = ["ChallengeAckLimiter", "ConnStats", "ListenerLink", "TcpConnection"]


class TcpConnection(Handshake):
    # ------------------------------------------------------------------ way in 1: a segment

    def on_segment(self, seg: TcpSegment, now: float) -> None:
        self.stats.segs_in += 1
        st = self.state
        if st is State.SYN_SENT:
            self._on_syn_sent(seg, now)
        elif st is not State.CLOSED:
            self._on_synchronized(seg, now)
        self._update_deadline()

    def _on_synchronized(self, seg: TcpSegment, now: float) -> None:
        """RFC 9293 3.10.7.4 for SYN_RECEIVED and the synchronized states, step by step."""
        st = self.state
        self.last_recv_time = now
        self.keepalive_probes = 0
        if self.keepalive and st in (State.ESTABLISHED, State.CLOSE_WAIT):
            self.keepalive_at = now + self.config.keepalive_idle
        if st is State.ESTABLISHED and self.config.header_prediction and self._predicted(seg, now):
            self.stats.predicted += 1
            return
        if st is State.SYN_RECEIVED:
            again = self._syn_received_resend(seg, now)
            if again is None:
                return
            seg = again
        elif st is State.TIME_WAIT and self.config.time_wait_acks_all and self._time_wait_answer(seg, now):
            return
        flags = seg.flags

        # First: the sequence number (and PAWS, RFC 7323 5.3).
        if not self._check_sequence(seg, now):
            return

        # Second: RST (RFC 5961 section 3.2: only an exact match resets).
        if flags & RST:
            if seg.seq != self.rcv_nxt and self.config.rfc5961_rst:
                self._send_challenge_ack(now, "rst_in_window")
                return
            self._on_reset(now)
            return

        # Third (security) does not apply. Fourth: SYN in a synchronized state (RFC 5961 4.2).
        if flags & SYN:
            if st is State.SYN_RECEIVED and self.listener is not None:
                self._back_to_listen(now, Event.RCV_SYN, "segment:S")
                return
            if not self.config.rfc5961_syn:  # in the window: an error, reset (RFC 793)
                self._emit(RST | ACK, self._ack_seq(), now)
                self._fail(socket_error(errno.ECONNRESET, "SYN in window"), Event.ABORT,
                           "segment:" + flags_str(flags), now)
                self._cancel_all_timers()
                return
            self._send_challenge_ack(now, "syn_in_window")
            return

        # Fifth: the ACK field.
        if not flags & ACK:
            self._drop("no_ack", now)
            return
        if st is State.SYN_RECEIVED:
            if not self._syn_received_ack(seg, now):
                return
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

    def _predicted(self, seg: TcpSegment, now: float) -> bool:
        """Header prediction (Jacobson's, as BSD's tcp_input and Linux's fast path have it): in
        ESTABLISHED and out of loss recovery, a segment with only ACK (and PSH), the next expected
        sequence number, no SACK, urgent or out-of-order state, an acknowledgment in SND.UNA..SND.NXT,
        and in-order data that fits the window, or an ACK of new data without data (a duplicate
        ACK or a bare window update takes the full path, which counts it). For such a segment every
        check of RFC 9293 3.10.7.4 passes and does only what is done here, in the same order (the
        window update included); anything else returns False and takes the full path."""
        if seg.flags & ~PSH != ACK or seg.seq != self.rcv_nxt or self.fin_queued or len(self.ooo):
            return False
        if self.dsack is not None or self.ooo.fin_seq is not None or self.in_recovery:
            return False
        if self.sack_ok and seg.sack_blocks:
            return False
        ack, payload = seg.ack, seg.payload
        acked = seq.sub(ack, self.snd_una)
        if acked < 0 or seq.gt(ack, self.snd_max) or (payload and len(payload) > self._rcv_wnd()):
            return False
        if not payload and not acked:
            return False
        if self.ts_ok:  # PAWS (RFC 7323 5.3) would pass
            ts = seg.timestamps
            if ts is None or seq.lt(ts.tsval, self.ts_recent):
                return False
        self._update_ts_recent(seg, now)
        if acked:
            self._on_new_ack(seg, ack, acked, now)
        self._update_send_window(seg, ack, seg.window << self.snd_wscale if self.ws_ok else seg.window, now)
        if self.state is State.CLOSED:
            return True
        if payload:
            self._queue_in_order(seg, payload, now)
            self._notify(self)
            self._ack_data(len(payload), now, immediate=False)
        self._output(now)
        return True

    def _on_reset(self, now: float) -> None:
        """An acceptable RST (RFC 9293 3.10.7.4 second check)."""
        st = self.state
        if st is State.SYN_RECEIVED and self.listener is not None:
            self._back_to_listen(now, Event.RCV_RST, "segment:R")
            return
        self.sndq.clear()
        self.rcvq.clear()
        if st is State.SYN_RECEIVED:
            refused = socket_error(errno.ECONNREFUSED)
            self._fail(refused, Event.RCV_RST_ACTIVE_OPEN, "segment:R", now)
        elif st is State.TIME_WAIT or (
                st in (State.CLOSING, State.LAST_ACK) and not self.config.rst_error_when_closing):
            self._transition(Event.RCV_RST, "segment:R", now)
        else:
            self._fail(socket_error(errno.ECONNRESET), Event.RCV_RST, "segment:R", now)

    def _process_ack(self, seg: TcpSegment, now: float) -> bool:
        """Fifth check for the synchronized states. Returns False if the segment is done with."""
        ack = seg.ack
        st = self.state
        # RFC 5961 5.2: acceptable if SND.UNA - MAX.SND.WND <= SEG.ACK <= SND.NXT.
        # Outside it the segment is discarded (blind data injection) and answered with a
        # challenge ACK, rate limited like the others (RFC 5961 sections 5.2 and 7).
        if seq.gt(ack, self.snd_max):
            self._drop("ack_of_unsent_data", now)
            self._send_challenge_ack(now, "ack_of_unsent_data")
            return False
        if seq.lt(ack, seq.add(self.snd_una, -max(self.max_snd_wnd, 1))):
            self._drop("ack_too_old", now)
            self._send_challenge_ack(now, "ack_too_old")
            return False
        self._update_ts_recent(seg, now)

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
        self._update_send_window(seg, ack, window, now)
        if is_dup:
            self._on_dupack(now)

        # State-specific ACK processing: the ACK of our FIN.
        fin_acked = self.fin_queued and seq.gt(self.snd_una, self.fin_seq)
        # A FIN+ACK of our FIN whose FIN is next in order goes straight to TIME_WAIT in the
        # eighth check (RFC 9293 figure 5, FIN_WAIT_1 "rcv FIN, ACK of FIN"): no FIN_WAIT_2 stop.
        fin_next = bool(seg.flags & FIN) and seq.le(seg.seq, self.rcv_nxt) and seq.le(
            seq.add(seg.seq, len(seg.payload)), self.rcv_adv)
        if st is State.FIN_WAIT_1 and fin_acked and fin_next:
            pass
        elif st is State.FIN_WAIT_1 and fin_acked:
            self._transition(Event.RCV_ACK_OF_FIN, "segment:" + flags_str(seg.flags), now)
            if self.app_closed and self.config.fin_wait_2_timeout is not None:
                self.fin_wait_2_at = now + self.config.fin_wait_2_timeout
        elif st is State.CLOSING and fin_acked:
            self._enter_time_wait(now, "segment:" + flags_str(seg.flags), Event.RCV_ACK_OF_FIN)
            return False
        elif st is State.LAST_ACK and fin_acked:
            self._transition(Event.RCV_ACK_OF_FIN, "segment:" + flags_str(seg.flags), now)
            return False
        elif st is State.TIME_WAIT:
            if seg.flags & FIN:
                self._send_ack(now)
                self._restart_time_wait(now)
            return False
        return True

    # ------------------------------------------------------------------ way in 3: the application

    def send(self, data: bytes | bytearray | memoryview, now: float, urgent: bool = False) -> int:
        """Queue data (RFC 9293 3.10.2). Returns the number of octets accepted (0 when full)."""
        if self.error is not None:
            raise self._reraise()
        if self.write_shut or self.state not in CAN_SEND:
            raise socket_error(errno.EPIPE, "closed for sending")
        n = min(len(data), self.send_space)
        if n:
            self.sndq.append(data if n == len(data) else data[:n])  # (copied there unless bytes)
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
        data = self.rcvq.take(limit)
        if self.urgent_mark is not None:
            self.urgent_mark = max(self.urgent_mark - len(data), 0) or None
        self._rcv_space_adjust(now)
        self._window_update_after_read(now)
        self._update_deadline()
        return data

    def shutdown(self, now: float) -> None:
        """Close the sending side (RFC 9293 3.10.4 CLOSE, as SHUT_WR): queue a FIN after the data."""
        if self.write_shut:
            return
        self.write_shut = True
        st = self.state
        if st is State.SYN_SENT:
            self._transition(Event.CLOSE, "call:close", now)
        elif st in (State.SYN_RECEIVED, State.ESTABLISHED):
            self.fin_queued = True
            if st is State.ESTABLISHED:
                self._transition(Event.CLOSE, "call:close", now)
                self._output(now)
            # In SYN_RECEIVED the FIN goes once the handshake completes (RFC 9293 3.10.4).
        elif st is State.CLOSE_WAIT:
            self.fin_queued = True
            self._transition(Event.CLOSE, "call:close", now)
            self._output(now)
        self._update_deadline()

    def shutdown_read(self, now: float) -> None:
        """shutdown(SHUT_RD). RFC 9293 has no such call; as Linux does: reads return what is
        queued, then 0 at once instead of blocking; data that arrives later is still ACKed and
        queued (readable) while the peer may send, but once our FIN is out (FIN_WAIT_1/2) new
        data resets the connection (RFC 1122 4.2.2.13, Linux tcp_rcv_state_process)."""
        if not self.read_shut:
            self.read_shut = True
            self._notify(self)

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
        self._fail(socket_error(errno.ECONNABORTED), Event.ABORT, cause, now)
        if self.listener is not None:
            self.listener.forget(self)

    def end_time_wait(self, event: Event, cause: str, now: float) -> None:
        """The host's TIME_WAIT record (stack.tcp.time_wait) that stood in for this connection
        saw its end (2*MSL, an exact RST, an abort): take the same edge out of TIME_WAIT."""
        if self.state is State.TIME_WAIT:
            self._transition(event, cause, now)
            self._update_deadline()

    def _reraise(self) -> BaseException:
        err = self.error
        assert err is not None
        return type(err)(*err.args)

    def flush_ack(self, now: float) -> None:
        """The host's batch of received packets is done: send the ACK deferred in it, if no
        segment has carried it since (see Tcb._ack_in_batch)."""
        if self.ack_pending:
            self.ack_pending = False
            if self.state in SYNCHRONIZED:
                self._send_ack(now)
                self._update_deadline()

    def output(self, now: float) -> None:
        """Send what may go now (after a socket option such as TCP_NODELAY changed)."""
        self._output(now)

    def set_congestion_control(self, name: str, now: float) -> None:
        """TCP_CONGESTION: another controller takes over with the same cwnd and ssthresh."""
        self.cc = congestion.switch(self.cc, name, self.mss, now)
        self.config = self.config.with_(congestion_control=name)

    def accepted_by_application(self) -> None:
        """accept() took this connection from its listener's queue: it no longer reports there."""
        self.listener = None
        self.accepted = True

    def detach_listener(self) -> None:
        """The listener is closing: it resets this connection itself and wants no more reports."""
        self.listener = None

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

    def on_icmp_error(self, icmp_type: int, code: int, now: float, cause: str = "") -> None:
        """An ICMP error about a segment we sent (the host checked its quoted sequence number),
        as ICMPv4 type and code (an ICMPv6 error comes translated, stack.wire.icmpv6.as_icmpv4).
        A hard error aborts a connection in SYN_SENT (RFC 1122 4.2.3.9, RFC 5461 section 4):
        protocol or port unreachable; with `icmp_prohibited_ttl_hard`, also administratively
        prohibited and TTL exceeded in transit (FreeBSD's icmp_may_rst). The others, and every
        error in a synchronized state, are soft (RFC 5461 section 4): nothing changes. `cause`
        names the message in the trace (default: the ICMPv4 type and code)."""
        if self.state is not State.SYN_SENT or not self.config.icmp_hard_errors:
            return
        error: OSError
        if icmp_type == DEST_UNREACH and code in (PROTO_UNREACH, PORT_UNREACH):
            error = socket_error(errno.ECONNREFUSED, "ICMP unreachable")
        elif not self.config.icmp_prohibited_ttl_hard:
            return
        elif icmp_type == DEST_UNREACH and code in ADMIN_PROHIBITED:
            error = socket_error(errno.ECONNREFUSED, "ICMP administratively prohibited")
        elif icmp_type == TIME_EXCEEDED and code == 0:
            error = socket_error(errno.EHOSTUNREACH, "ICMP TTL exceeded")
        else:
            return
        self._fail(error, Event.ABORT, cause or f"icmp:{icmp_type}/{code}", now)
        self._cancel_all_timers()
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
