"""The small interface every congestion controller implements, and the registry by name.

The connection owns loss detection and recovery (RFC 5681, RFC 6675, RFC 6582); a controller only
says how big the window may be: it grows `cwnd` on ACKs and sets `ssthresh`/`cwnd` when the
connection reports congestion or a retransmission timeout. All sizes are octets.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import ClassVar

INFINITE_SSTHRESH = 0x7FFFFFFF
# RFC 3465 section 2.2: in slow start, grow by at most L*SMSS per ACK (`abc_limit`, this by
# default). L = 2 lets one delayed ACK (RFC 9293 3.8.6.3: at most every second full segment)
# open the window by both segments it covers, so slow start doubles cwnd per RTT with or without
# delayed ACKs.
ABC_LIMIT = 2


class CongestionControl(abc.ABC):
    name: ClassVar[str]

    def __init__(self, mss: int, initial_window: int, now: float) -> None:
        """initial_window is in octets (RFC 6928: 10 segments unless configured otherwise)."""
        self.mss = mss
        self.cwnd = initial_window
        self.ssthresh = INFINITE_SSTHRESH
        self.abc_limit = ABC_LIMIT  # a TSO sender raises it (see Tcb)
        # Set by on_rto, cleared by the next ACK of new data: a second timeout before any ACK is
        # the same segment timing out again, and RFC 5681 section 3.1 (note after eq. 4) holds
        # ssthresh constant then instead of shrinking it from the collapsed window.
        self._rto_pending = False

    @property
    def in_slow_start(self) -> bool:
        return self.cwnd < self.ssthresh

    @abc.abstractmethod
    def on_ack(self, acked: int, now: float, rtt: float | None, flight: int) -> None:
        """`acked` new octets were cumulatively acknowledged outside loss recovery, while the
        sender was using the window (else on_app_limited is called instead).

        `rtt` is the latest RTT estimate (SRTT) or None; `flight` is FlightSize before the ACK.
        """

    def on_app_limited(self, now: float) -> None:
        """New data was acknowledged while the sender was not using the window (application,
        receive window or send buffer limited, or nothing left in flight): cwnd holds (RFC 7661,
        RFC 9438 5.8; the connection decides, stack.tcp.cwv). A controller whose growth counts
        time stops that clock until on_ack is called again."""
        self._rto_pending = False

    @abc.abstractmethod
    def on_congestion(self, now: float, flight: int) -> None:
        """Loss detected by duplicate ACKs or SACK: set ssthresh (and cwnd) for fast recovery.

        Called once per loss episode, when recovery starts.
        """

    def on_recovery_exit(self, now: float) -> None:
        """Fast recovery ended (the recovery point was acknowledged): deflate cwnd to ssthresh."""
        self.cwnd = max(self.ssthresh, self.mss)

    @abc.abstractmethod
    def on_rto(self, now: float, flight: int) -> None:
        """A retransmission timeout: RFC 5681 eq. (4) ssthresh, cwnd to one segment (loss window)."""

    def on_mss_change(self, mss: int) -> None:
        self.mss = mss

    # Window settings the connection's loss recovery (stack/tcp/recovery.py) asks for: the
    # numbers are RFC 5681/6582 rules, kept here so that only a controller writes cwnd/ssthresh.

    def set_initial_window(self, octets: int) -> None:
        """The initial window once the handshake fixed the MSS (RFC 5681 3.1, RFC 6928)."""
        self.cwnd = octets

    def set_window(self, octets: int) -> None:
        """cwnd = octets: ssthresh + 3*SMSS entering NewReno recovery (RFC 6582 3.2 step 2),
        or the loss window of one segment."""
        self.cwnd = octets

    def inflate(self, octets: int) -> None:
        """NewReno: a duplicate ACK during recovery inflates cwnd by SMSS (RFC 6582 3.2 step 4)."""
        self.cwnd += octets

    def deflate_partial_ack(self, acked: int, mss: int) -> None:
        """NewReno partial ACK: deflate by the octets acknowledged, add back SMSS (RFC 6582 3.2
        step 3), never below one segment."""
        self.cwnd = max(self.cwnd - acked + mss, mss)

    def keep_ssthresh(self, ssthresh: int) -> None:
        """An RTO within a fast-recovery episode keeps that episode's ssthresh (one reduction
        per episode, RFC 6582 "recover")."""
        self.ssthresh = ssthresh


_REGISTRY: dict[str, type[CongestionControl]] = {}


def register(cls: type[CongestionControl]) -> type[CongestionControl]:
    _REGISTRY[cls.name] = cls
    return cls


def create(name: str, mss: int, initial_window: int, now: float) -> CongestionControl:
    try:
        factory: Callable[[int, int, float], CongestionControl] = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown congestion control {name!r}; known: {sorted(_REGISTRY)}") from None
    return factory(mss, initial_window, now)


def switch(old: CongestionControl, name: str, mss: int, now: float) -> CongestionControl:
    """A controller `name` taking over from `old` mid-connection (TCP_CONGESTION): same window."""
    new = create(name, mss, old.cwnd, now)
    new.ssthresh = old.ssthresh
    new.abc_limit = old.abc_limit
    return new


def available() -> list[str]:
    return sorted(_REGISTRY)
