"""CUBIC window growth (RFC 9438).

Windows inside the cubic formulas are in segments (floats), time in seconds; `cwnd` and
`ssthresh` stay in octets like every controller. Slow start is the NewReno one (RFC 9438 4.10
allows standard slow start; HyStart++ is not implemented). Time comes only from the `now`
arguments, never from a clock.
"""

from __future__ import annotations

import math

from stack.tcp.congestion.base import CongestionControl, register
from stack.tcp.congestion.newreno import slow_start

C = 0.4  # RFC 9438 4.1, in segments / s**3
BETA = 0.7  # RFC 9438 4.1, beta_cubic
ALPHA = 3 * (1 - BETA) / (1 + BETA)  # RFC 9438 4.3, alpha_cubic: Reno-equal average rate
# Used for W_cubic(t + RTT) before any RTT sample exists (RFC 6298's 1 s initial RTO would
# overshoot; 100 ms is a typical Internet path). Only the look-ahead uses it.
FALLBACK_RTT = 0.1


def cubic_k(w_max: float, cwnd_epoch: float) -> float:
    """RFC 9438 eq. (2): the time for W_cubic to climb from cwnd_epoch back to W_max."""
    return math.cbrt((w_max - cwnd_epoch) / C)


def w_cubic(t: float, k: float, w_max: float) -> float:
    """RFC 9438 eq. (1): W_cubic(t) = C*(t - K)**3 + W_max, in segments."""
    return C * (t - k) ** 3 + w_max


@register
class Cubic(CongestionControl):
    name = "cubic"

    def __init__(self, mss: int, initial_window: int, now: float) -> None:
        super().__init__(mss, initial_window, now)
        self.w_max = 0.0  # segments; 0 until the first congestion event
        self.cwnd_prior = 0.0  # segments, cwnd when ssthresh was last set (RFC 9438 4.3)
        self.k = 0.0
        # RFC 9438 4.2: t counts from the start of the current congestion avoidance stage, which
        # begins at the first ACK processed in avoidance after an epoch reset.
        self.epoch_start: float | None = None
        self.w_est = 0.0  # segments, RFC 9438 4.3 Reno-friendly estimate
        self._after_rto = False
        # RFC 9438 4.2/5.8: t must not count time the window went unused, or W_cubic(t) would
        # be far above cwnd when growth resumes. When that began (None: the window is in use).
        self._unused_since: float | None = None
        # cwnd in octets as a float: per-ACK increases are fractions of an octet.
        self._cwnd_exact = float(initial_window)

    def _sync(self) -> None:
        """Take over a cwnd written from outside (e.g. base on_recovery_exit)."""
        if int(self._cwnd_exact) != self.cwnd:
            self._cwnd_exact = float(self.cwnd)

    def _set_cwnd(self, octets: float) -> None:
        self._cwnd_exact = octets
        self.cwnd = int(octets)

    def _start_epoch(self, now: float) -> None:
        cwnd_epoch = self.cwnd / self.mss
        self.epoch_start = now
        self.w_est = cwnd_epoch  # RFC 9438 4.3
        if self._after_rto or self.w_max <= cwnd_epoch:
            # RFC 9438 4.8 after a timeout, and a first avoidance stage with no loss yet (or one
            # that begins above W_max): K = 0 and W_max = the window at the start of the stage.
            self.w_max = cwnd_epoch
            self.k = 0.0
        else:
            self.k = cubic_k(self.w_max, cwnd_epoch)
        if self.cwnd_prior == 0.0:
            self.cwnd_prior = cwnd_epoch
        self._after_rto = False

    def on_app_limited(self, now: float) -> None:
        super().on_app_limited(now)
        if self._unused_since is None:
            self._unused_since = now

    def on_ack(self, acked: int, now: float, rtt: float | None, flight: int) -> None:
        if acked <= 0:
            return
        self._rto_pending = False
        if self._unused_since is not None:
            # The window is used again: shift the epoch by the time it was not, so the curve
            # goes on from where it stopped (Linux bictcp_cwnd_event does so after idle).
            if self.epoch_start is not None:
                self.epoch_start += now - self._unused_since
            self._unused_since = None
        self._sync()
        if self.in_slow_start:
            acked = slow_start(self, acked)
            self._cwnd_exact = float(self.cwnd)
            if acked == 0:
                return
        if self.epoch_start is None:
            self._start_epoch(now)
            assert self.epoch_start is not None
        mss = self.mss
        w = self._cwnd_exact / mss
        segments = acked / mss
        t = now - self.epoch_start
        # RFC 9438 4.3: W_est grows by alpha per window of ACKs; alpha becomes 1 once W_est
        # has reached the window before the last reduction.
        alpha = 1.0 if self.w_est >= self.cwnd_prior else ALPHA
        self.w_est += alpha * segments / w
        if w_cubic(t, self.k, self.w_max) < self.w_est:
            # Reno-friendly region: cwnd = W_est (never shrunk on an ACK).
            self._set_cwnd(max(self._cwnd_exact, self.w_est * mss))
            return
        # RFC 9438 4.4/4.5: aim at W_cubic one RTT ahead, within [cwnd, 1.5*cwnd], and close
        # (target - cwnd)/cwnd segments of the gap per segment acknowledged.
        target = w_cubic(t + (rtt if rtt is not None else FALLBACK_RTT), self.k, self.w_max)
        target = min(max(target, w), 1.5 * w)
        self._set_cwnd(self._cwnd_exact + (target - w) / w * segments * mss)

    def _reduce(self) -> None:
        """RFC 9438 4.6 and 4.7: remember W_max (with fast convergence), cut ssthresh by beta."""
        w = self.cwnd / self.mss
        # 4.7 fast convergence: a loss below the previous W_max means competition; release
        # some bandwidth by lowering the plateau further.
        self.w_max = w * (1 + BETA) / 2 if w < self.w_max else w
        self.cwnd_prior = w
        self.ssthresh = max(int(self.cwnd * BETA), 2 * self.mss)
        self.epoch_start = None

    def on_congestion(self, now: float, flight: int) -> None:
        # RFC 9438 4.6 applies beta to cwnd, not FlightSize (robust when application-limited).
        self._reduce()
        self._set_cwnd(self.ssthresh)

    def on_rto(self, now: float, flight: int) -> None:
        # RFC 9438 4.8: Reno's loss window, ssthresh from beta_cubic as on congestion.
        if not self._rto_pending:
            self._reduce()
        self.epoch_start = None
        self._after_rto = True
        self._rto_pending = True
        self._set_cwnd(self.mss)
