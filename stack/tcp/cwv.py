"""Congestion window validation: cwnd grows only while the sender is using it.

RFC 5681 grows cwnd on every ACK of new data, but an ACK says the path carried what was in
flight, not that it could carry cwnd. A sender held back by the application, the receive window
or the send buffer would otherwise raise cwnd without limit on a clean path and later send it in
one burst. RFC 7661 (its non-validated phase) and RFC 9438 section 5.8 (CUBIC) say not to
increase cwnd then; this is Linux's rule for it (tcp_cwnd_validate in net/ipv4/tcp_output.c,
tcp_is_cwnd_limited in include/net/tcp.h), counted in octets:

- after each transmission, remember whether cwnd held data back, and the largest FlightSize,
  over the current window of data (until SND.UNA passes what was sent when it began);
- an ACK may grow cwnd if cwnd held data back in that window, or, in slow start, while cwnd is
  below twice the largest FlightSize (slow start then still doubles what was used).
"""

from __future__ import annotations

from stack import seq


class CwndUse:
    """How the sender used the congestion window over the last window of data (octets)."""

    __slots__ = ("limited", "max_flight", "window_end")

    def __init__(self, iss: int) -> None:
        self.limited = False  # cwnd held a transmission back in this window (is_cwnd_limited)
        self.max_flight = 0  # the largest FlightSize seen in this window (max_packets_out)
        self.window_end = iss  # this window ends when SND.UNA reaches it (cwnd_usage_seq)

    def on_output(self, limited: bool, flight: int, snd_una: int, snd_max: int) -> None:
        """After a transmission (or a send cwnd refused): a new window begins once the last one
        is acknowledged, or at once when cwnd is the limit (the strongest signal wins); within
        a window that was not limited, only a larger FlightSize is noted."""
        if (seq.ge(snd_una, self.window_end) or limited
                or (not self.limited and flight > self.max_flight)):
            self.limited = limited
            self.max_flight = flight
            self.window_end = snd_max

    def cwnd_limited(self, cwnd: int, slow_start: bool) -> bool:
        """May an ACK grow cwnd now? (Linux tcp_is_cwnd_limited.)"""
        if self.limited:
            return True
        return slow_start and cwnd < 2 * self.max_flight
