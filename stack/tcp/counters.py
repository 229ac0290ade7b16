"""What a connection counts: `ConnStats`, the counters an application or `tcplab ss` reads. (The
host-wide RFC 5961 challenge-ACK limit is in stack.tcp.ratelimit.)"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class ConnStats:
    """Counters an application or `tcplab ss` can read (observable, not internal state)."""

    segs_in: int = 0
    predicted: int = 0  # segments handled by header prediction (Linux's TCPHPHits)
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
