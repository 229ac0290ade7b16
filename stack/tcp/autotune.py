"""Buffer autotuning, as Linux does it (`TcpConfig.rcvbuf_max`, `sndbuf_max`; off by default).

RFC 9293 leaves the buffer sizes to the implementation, and a fixed receive buffer caps a
connection at RCV.BUFF per round trip, whatever the link could carry. The receive buffer grows by
Dynamic Right-Sizing (Fisk and Feng; Linux's tcp_rcv_space_adjust): once per round trip (as the
receiver measures it, from the timestamps its data echoes), if the application read more than in
the round trip measured before, the buffer becomes twice that plus
sixteen segments (and more when the rate rose), so the sender's congestion window, not our
window, sets the pace. The send buffer grows with the congestion window (Linux's
tcp_sndbuf_expand), so the application can keep a full window queued. Neither ever shrinks, nor
passes its maximum, nor grows once the application fixed it with SO_RCVBUF/SO_SNDBUF.
"""

from __future__ import annotations

from stack.compiled import mypyc_attr
from stack.tcp.timers import Timers
from stack.wire.tcp import TcpSegment

INIT_RCVQ_SPACE_SEGMENTS = 10  # the first round trip's yardstick: an initial window (RFC 6928)
DRS_SLACK_SEGMENTS = 16  # Linux's rcvwin = 2 * copied + 16 * advmss


@mypyc_attr(allow_interpreted_subclasses=True)
class Autotune(Timers):
    def _rcv_space_adjust(self, now: float) -> None:
        """After the application read: once a round trip (the receiver's, else SRTT) has passed
        since the measure began, compare what it read in that round trip with the last one and
        grow RCV.BUFF."""
        limit = self.rcvbuf_max
        if limit is None:
            return
        read = self.stats.bytes_received - len(self.rcvq)  # octets the application has taken
        began = self.rcvq_space_time
        if began is None:
            self.rcvq_space = INIT_RCVQ_SPACE_SEGMENTS * self.mss
            self.rcvq_space_mark, self.rcvq_space_time = read, now
            return
        rtt = self.rcv_rtt if self.rcv_rtt is not None else self.rtt.srtt
        if rtt is None or now - began < rtt:
            return
        copied = read - self.rcvq_space_mark
        if copied > self.rcvq_space:
            rcvwin = 2 * copied + DRS_SLACK_SEGMENTS * self.mss
            # The rate rose by (copied - space) / space in a round trip: allow for as much again.
            rcvwin += 2 * rcvwin * (copied - self.rcvq_space) // self.rcvq_space
            if rcvwin > self.rcvbuf:
                self.rcvbuf = min(rcvwin, limit)
                self.ooo.limit = max(self.ooo.limit, self.rcvbuf)  # held within the receive buffer
            self.rcvq_space = copied
        self.rcvq_space_mark, self.rcvq_space_time = read, now

    def _rcv_rtt_measure(self, seg: TcpSegment, now: float) -> None:
        """The round trip as the receiver sees it (Linux's tcp_rcv_rtt_measure_ts): a full-sized
        in-order segment echoes the timestamp of the ACK that let it go, so now minus that
        time is the loaded round trip, queues included, which the handshake's sample (an idle
        path) is not. Smoothed with gain 1/8. Without timestamps the SRTT serves."""
        ts = seg.timestamps
        if self.ts_ok and ts is not None and ts.tsecr and len(seg.payload) >= self.mss:
            sample = now - self._ts_to_time(ts.tsecr, now)
            if sample >= 0:
                rtt = self.rcv_rtt
                self.rcv_rtt = sample if rtt is None else rtt + (sample - rtt) / 8

    def _sndbuf_expand(self) -> None:
        """After the congestion window moved: room for twice it (Linux's tcp_sndbuf_expand
        keeps 2 * cwnd segments), so a round trip of data awaiting its ACK and the next one
        can both be queued."""
        limit = self.sndbuf_max
        if limit is not None:
            want = 2 * self.cc.cwnd
            if want > self.sndbuf:
                self.sndbuf = min(want, limit)
