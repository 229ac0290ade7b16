"""What a connection counts and what the host counts for all of them: `ConnStats`, the counters
an application or `tcplab ss` reads, and `ChallengeAckLimiter`, the host-wide RFC 5961 limit."""

from __future__ import annotations

from dataclasses import dataclass, field


class ChallengeAckLimiter:
    """Host-wide rate limit on RFC 5961 challenge ACKs (section 7): at most `per_second`."""

    def __init__(self, per_second: int) -> None:
        self.per_second = per_second
        self._window_start = -1.0
        self._count = 0

    def allow(self, now: float) -> bool:
        if now - self._window_start >= 1.0:
            self._window_start = now
            self._count = 0
        if self._count >= self.per_second:
            return False
        self._count += 1
        return True


@dataclass
class ConnStats:
    """Counters an application or `tcplab ss` can read (observable, not internal state)."""

    segs_in: int = 0
    segs_out: int = 0
    bytes_sent: int = 0  # new data octets, first transmissions
    bytes_retrans: int = 0
    bytes_acked: int = 0
    bytes_received: int = 0  # in-order octets delivered to the receive buffer
    retransmits: int = 0
    rto_expiries: int = 0
    fast_retransmits: int = 0
    dupacks_in: int = 0
    challenge_acks: int = 0
    dsacks_out: int = 0
    ooo_segments: int = 0
    zero_window_probes: int = 0
    keepalive_probes: int = 0
    drops: dict[str, int] = field(default_factory=dict)
