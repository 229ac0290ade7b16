"""Opening a connection: active and passive OPEN, the SYN and its options, SYN_SENT's segment
processing (RFC 9293 3.10.7.3) and the ACK that completes a SYN_RECEIVED (3.10.7.4 fifth check).
"""

from __future__ import annotations

import dataclasses
import errno

from stack import seq
from stack.compiled import mypyc_attr
from stack.errors import socket_error
from stack.tcp.receiver import Receiver
from stack.tcp.scoreboard import Scoreboard
from stack.tcp.state import State
from stack.tcp.syncookies import wscale_for
from stack.tcp.tcb import MAX_WSCALE
from stack.tcp.transitions import Event
from stack.trace import Retransmit
from stack.wire.tcp import (
    ACK,
    FIN,
    RST,
    SYN,
    Eol,
    Mss,
    Nop,
    SackPermitted,
    TcpOption,
    TcpSegment,
    Timestamps,
    WindowScale,
    flags_str,
)


def _discard(conn: object, seg: TcpSegment, now: float) -> None:
    """The transmit of a connection whose SYN-ACK was sent without it (a SYN cookie's)."""


@mypyc_attr(allow_interpreted_subclasses=True)
class Handshake(Receiver):
    syn_text: bytes = b""  # text of a SYN received in SYN_SENT, held until ESTABLISHED

    def open_active(self, now: float) -> None:
        """Active OPEN (RFC 9293 3.10.1): send SYN, enter SYN_SENT."""
        self.ts_ok = False
        self.rcv_wscale = self._choose_wscale() if self.config.window_scaling else 0
        self._transition(Event.ACTIVE_OPEN, "call:connect", now)
        self._send_syn(now)
        self._arm_rto(now)
        self._update_deadline()

    def open_passive(self, syn: TcpSegment, now: float) -> None:
        """A SYN arrived at a listener (RFC 9293 3.10.7.2): enter SYN_RECEIVED and answer SYN-ACK."""
        self.state = State.LISTEN  # the listener's state, inherited: no event of its own
        self.rcv_wscale = self._choose_wscale() if self.config.window_scaling else 0
        self._take_syn_options(syn, now)
        self.irs = syn.seq
        self.rcv_nxt = seq.add(syn.seq, 1)
        self.rcv_adv = self.rcv_nxt
        self.snd_wnd = syn.window  # never scaled on a SYN
        self.max_snd_wnd = self.snd_wnd
        self.snd_wl1 = syn.seq
        self._transition(Event.RCV_SYN, "segment:S", now)
        self._send_syn(now)
        self._arm_rto(now)
        self._update_deadline()

    def open_by_cookie(self, syn: TcpSegment, now: float) -> None:
        """A valid SYN cookie came back (stack.cookie_open): replay the passive open from the SYN
        the cookie remembers. Its SYN-ACK already went, statelessly, so nothing is sent again.
        retries=1 as after a retransmitted SYN-ACK: when it left is not known, so without
        timestamps the handshake gives no RTT sample (Karn, RFC 6298 3); with them the sample
        is at most 2**TS_BITS ms long (the option bits, stack.tcp.syncookies)."""
        transmit, self._transmit = self._transmit, _discard
        try:
            self.open_passive(syn, now)
        finally:
            self._transmit = transmit
        self.retries = 1

    # ------------------------------------------------------------------ the SYN and its options

    def _choose_wscale(self) -> int:
        """The smallest shift whose scaled 16-bit field covers the buffer (RFC 7323 2.3); with
        `wscale_space`, the buffer Linux would scale for (tcp_select_initial_window: the most
        autotuning may reach, unless SO_RCVBUF fixed the buffer). One rule with the SYN-ACK of a
        SYN cookie, which announces the shift before the connection exists."""
        return wscale_for(self.config)

    def _syn_options(self, flags: int, now: float) -> tuple[TcpOption, ...]:
        cfg = self.config
        syn_ack = bool(flags & ACK)
        use_sack = cfg.sack and (self.sack_ok or not syn_ack)
        use_ts = cfg.timestamps and (self.ts_ok or not syn_ack)
        use_ws = cfg.window_scaling and (self.ws_ok or not syn_ack)
        mss = cfg.mtu - self.ip_overhead  # our MSS option: the MTU less IP and TCP headers
        if cfg.noopt:
            return ()
        if not syn_ack and self._syn_options_dropped():
            return (Mss(mss),)
        ts = Timestamps(self.tsval(now), self.ts_recent if syn_ack else 0) if use_ts else None
        if cfg.syn_option_layout == "bsd":
            return _bsd_layout(mss, self.rcv_wscale if use_ws else None, use_sack, ts)
        # Linux's SYN layout: MSS, SACK-permitted, timestamps, NOP, window scale.
        opts: list[TcpOption] = [Mss(mss)]
        if use_sack and ts is not None:
            opts += [SackPermitted(), ts]
        elif ts is not None:
            opts += [Nop(), Nop(), ts]
        elif use_sack:
            opts += [Nop(), Nop(), SackPermitted()]
        if use_ws:
            opts += [Nop(), WindowScale(self.rcv_wscale)]
        return tuple(opts)

    def _syn_options_dropped(self) -> bool:
        """Our SYN went out with the MSS alone (`syn_drop_options_after`): then no window
        scale, SACK or timestamps, whatever the SYN-ACK says (RFC 7323 2.2, RFC 2018 2)."""
        after = self.config.syn_drop_options_after
        return after > 0 and self.state is State.SYN_SENT and self.retries >= after

    def _send_syn(self, now: float, retransmit: bool = False) -> None:
        flags = SYN | ACK if self.state is State.SYN_RECEIVED else SYN
        if retransmit:
            self.stats.retransmits += 1
            if self.trace.enabled:
                kind = "synack" if flags & ACK else "syn"
                self.trace.emit(Retransmit(now, self.id, self.iss, 0, kind))
        self._emit(flags, self.iss, now)
        self.snd_nxt = self.snd_max = seq.add(self.iss, 1)

    def _take_syn_options(self, syn: TcpSegment, now: float) -> None:
        cfg = self.config
        mss = syn.mss
        self.peer_mss = mss if mss else self.default_peer_mss
        ws = syn.wscale
        bare = cfg.noopt or self._syn_options_dropped()
        if cfg.window_scaling and ws is not None and not bare:
            self.ws_ok = True
            self.snd_wscale = min(ws, MAX_WSCALE)  # RFC 7323 2.3: treat larger as 14
        else:
            self.ws_ok = False
            self.rcv_wscale = 0
        self.sack_ok = cfg.sack and syn.sack_permitted and not bare
        ts = syn.timestamps
        if cfg.timestamps and ts is not None and not bare:
            self.ts_ok = True
            self.ts_recent = ts.tsval
            self.ts_recent_age = now
        else:
            self.ts_ok = False
        if cfg.rcvbuf_round_to_mss:  # FreeBSD's tcp_mss(): the buffer holds whole segments
            self.rcvbuf = -(-self.rcvbuf // self.mss) * self.mss
        self.cc.on_mss_change(self.mss)
        self.cc.set_initial_window(self.config.initial_window_segments * self.mss)
        self.scoreboard = Scoreboard(self.mss, cfg.dupack_threshold)

    def _sample_rtt_syn(self, seg: TcpSegment, now: float) -> None:
        # Karn: only a SYN that was never retransmitted gives a sample (or an unambiguous echo).
        ts = seg.timestamps
        if self.ts_ok and ts is not None and ts.tsecr:
            self._rtt_sample(now - self._ts_to_time(ts.tsecr, now), now)
        elif self.retries == 0:
            self._rtt_sample(now - self.created, now)

    # ------------------------------------------------------------------ SYN_SENT

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
                self._fail(socket_error(errno.ECONNREFUSED), Event.RCV_RST, "segment:R.", now)
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
            self._transition(Event.RCV_SYN_ACK, "segment:" + flags_str(flags), now)
            self._start_keepalive(now)
            if seg.payload or flags & FIN:
                # Data in a SYN-ACK is rare but legal; its first octet follows the SYN's
                # sequence number (RFC 9293 3.3.1: the SYN occupies SEG.SEQ). The ACK that
                # completes the handshake goes at once (RFC 9293 3.10.7.3: "form an ACK
                # segment ... and send it"), not after the delayed-ACK timer.
                self._process_text_and_fin(seg, now, seq.add(seg.seq, 1))
                if self.delack_at is not None:
                    self._send_ack(now)
            else:
                self._send_ack(now)
            self._output(now)
        else:
            # Simultaneous open (RFC 9293 figure 8): SYN_SENT -> SYN_RECEIVED, send SYN-ACK.
            self.snd_wnd = seg.window
            self.max_snd_wnd = self.snd_wnd
            self.snd_wl1 = seg.seq
            self._transition(Event.RCV_SYN, "segment:S", now)
            # RFC 9293 3.10.7.3: text in the SYN is queued for processing once ESTABLISHED
            # (within the window our SYN offered; its FIN is not kept: the peer resends it).
            self.syn_text = seg.payload[: max(seq.sub(self.rcv_adv, self.rcv_nxt), 0)]
            self._emit(SYN | ACK, self.iss, now)
            self._arm_rto(now, restart=True)

    # ------------------------------------------------------------------ SYN_RECEIVED

    def _syn_received_resend(self, seg: TcpSegment, now: float) -> TcpSegment | None:
        """A SYN again in SYN_RECEIVED, before the sequence check. Returns the segment to go on
        with (None: done with it)."""
        flags = seg.flags
        # A retransmitted SYN means our SYN-ACK was lost; answer it again.
        if flags & SYN and not flags & ACK and seg.seq == self.irs:
            self._send_syn(now, retransmit=True)
            return None
        # Simultaneous open (RFC 9293 figure 8, line 5): the peer's SYN-ACK repeats its SYN
        # (SEG.SEQ = IRS) and acknowledges ours. Its SYN is old news; its ACK completes the
        # handshake, so process it as the segment that follows the SYN.
        if self.listener is None and flags & SYN and flags & ACK and seg.seq == self.irs:
            return dataclasses.replace(seg, seq=seq.add(seg.seq, 1), flags=flags & ~SYN)
        return seg

    def _syn_received_ack(self, seg: TcpSegment, now: float) -> bool:
        """Fifth check in SYN_RECEIVED: the ACK of our SYN. Returns False if the segment is done."""
        if not (seq.lt(self.snd_una, seg.ack) and seq.le(seg.ack, self.snd_max)):
            self._emit(RST, seg.ack, now)  # RFC 9293: <SEQ=SEG.ACK><CTL=RST>
            self._drop("syn_received_bad_ack", now)
            return False
        if self.listener is not None and not self.listener.can_accept():
            self._drop("accept_queue_full", now)  # keep SYN_RECEIVED; our SYN-ACK will retry
            self.listener.overflow()  # an accept-queue overflow too (listen(2) backlog)
            return False
        self._update_ts_recent(seg, now)
        self.snd_una = seg.ack
        self.sndq_seq = self.snd_una
        self.snd_wnd = seg.window << self.snd_wscale if self.ws_ok else seg.window
        self.max_snd_wnd = max(self.max_snd_wnd, self.snd_wnd)
        self.snd_wl1, self.snd_wl2 = seg.seq, seg.ack
        self._sample_rtt_syn(seg, now)
        self.retries = 0
        self.backoff = 0
        self.rto_at = None
        self._transition(Event.RCV_ACK_OF_SYN, "segment:" + flags_str(seg.flags), now)
        self._start_keepalive(now)
        if self.syn_text:  # the text of a simultaneous open's SYN, queued until now
            text, self.syn_text = self.syn_text, b""
            queued = dataclasses.replace(seg, seq=self.rcv_nxt, flags=ACK, payload=text)
            self._process_text_and_fin(queued, now, self.rcv_nxt)
        if self.listener is not None:
            self.listener.established(self)
        if self.write_shut:
            self.fin_queued = True
            self._transition(Event.CLOSE, "call:close", now)
            self._output(now)
        return True

    def _back_to_listen(self, now: float, event: Event, cause: str) -> None:
        """A passive open's SYN_RECEIVED returns to LISTEN: the half-open connection is dropped
        and the listener (which never left LISTEN) carries on."""
        self._transition(event, cause, now)
        self._cancel_all_timers()
        self.error = socket_error(errno.ECONNRESET, "half-open connection reset")
        if self.listener is not None:
            self.listener.forget(self)
        self._update_deadline()


def _bsd_layout(mss: int, wscale: int | None, sack: bool, ts: Timestamps | None) -> tuple[TcpOption, ...]:
    """The SYN options as 4.4BSD's tcp_addoptions (FreeBSD) lays them out: MSS; NOPs until the
    length is odd, window scale; NOPs until even, SACK-permitted; NOPs until it is 2 mod 4,
    timestamps; EOLs to a multiple of four octets."""
    opts: list[TcpOption] = [Mss(mss)]
    length = 4
    if wscale is not None:
        opts.append(Nop())
        opts.append(WindowScale(wscale))
        length += 4
    if sack:
        opts.append(SackPermitted())
        length += 2
    if ts is not None:
        while length % 4 != 2:
            opts.append(Nop())
            length += 1
        opts.append(ts)
        length += 10
    opts += [Eol()] * (-length % 4)
    return tuple(opts)
