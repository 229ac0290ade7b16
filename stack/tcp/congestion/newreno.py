"""NewReno window growth (RFC 5681 section 3.1) with Appropriate Byte Counting (RFC 3465).

Only the window arithmetic lives here; fast retransmit / fast recovery (RFC 6582, RFC 6675) and
the pipe accounting during recovery belong to the connection.
"""

from __future__ import annotations

from stack.tcp.congestion.base import ABC_LIMIT, CongestionControl, register

__all__ = ["ABC_LIMIT", "NewReno", "loss_ssthresh", "slow_start"]


def slow_start(cc: CongestionControl, acked: int) -> int:
    """Grow `cc.cwnd` for `acked` octets in slow start; return the octets left for avoidance.

    The increase is min(acked, L*SMSS) (RFC 3465 2.2) and stops at ssthresh; the part of the
    increase that would have gone past ssthresh is returned so the caller counts it toward
    congestion avoidance instead of losing it.
    """
    increase = min(acked, cc.abc_limit * cc.mss)
    room = max(cc.ssthresh - cc.cwnd, 0)
    if increase <= room:
        cc.cwnd += increase
        return 0
    cc.cwnd += room
    return increase - room


def loss_ssthresh(flight: int, mss: int) -> int:
    """RFC 5681 eq. (4): ssthresh = max(FlightSize / 2, 2*SMSS)."""
    return max(flight // 2, 2 * mss)


@register
class NewReno(CongestionControl):
    """Slow start doubles cwnd per RTT; congestion avoidance adds exactly one SMSS per RTT.

    Congestion avoidance uses the byte counter of RFC 3465 section 2.1 instead of the per-ACK
    float SMSS*SMSS/cwnd of RFC 5681 eq. (3): `bytes_acked` accumulates acknowledged octets and
    each time it reaches cwnd, cwnd grows by SMSS and cwnd is subtracted. Integer-only, so one
    window's worth of ACKs gives exactly +1 SMSS whatever the ACK pattern.
    """

    name = "newreno"

    def __init__(self, mss: int, initial_window: int, now: float) -> None:
        super().__init__(mss, initial_window, now)
        self.bytes_acked = 0

    def on_ack(self, acked: int, now: float, rtt: float | None, flight: int) -> None:
        if acked <= 0:
            return
        self._rto_pending = False
        if self.in_slow_start:
            acked = slow_start(self, acked)
            if acked == 0:
                return
        # RFC 3465 2.1: at most one SMSS per ACK; any surplus carries over in bytes_acked.
        self.bytes_acked += acked
        if self.bytes_acked >= self.cwnd:
            self.bytes_acked -= self.cwnd
            self.cwnd += self.mss

    def on_congestion(self, now: float, flight: int) -> None:
        # RFC 5681 3.2 step 2 (via RFC 6582 / RFC 6675): cwnd = ssthresh; the connection adds
        # the recovery-time inflation or uses pipe, as its recovery algorithm says.
        self.ssthresh = loss_ssthresh(flight, self.mss)
        self.cwnd = self.ssthresh
        self.bytes_acked = 0

    def on_rto(self, now: float, flight: int) -> None:
        if not self._rto_pending:
            self.ssthresh = loss_ssthresh(flight, self.mss)
        self.cwnd = self.mss  # RFC 5681 3.1: the loss window is one segment
        self.bytes_acked = 0
        self._rto_pending = True
