"""Round-trip time estimation and the retransmission timeout (RFC 6298)."""

from __future__ import annotations


class RttEstimator:
    """SRTT/RTTVAR per RFC 6298 section 2, clamped to [minimum, maximum].

    Backoff is not kept here: the connection doubles the timeout it arms (RFC 6298 5.5) and
    resets its backoff when a new sample arrives.
    """

    ALPHA = 1 / 8
    BETA = 1 / 4
    K = 4

    def __init__(
        self, initial: float = 1.0, minimum: float = 0.2, maximum: float = 120.0, granularity: float = 0.001,
        min_in_variance: bool = False,
    ) -> None:
        self.minimum = minimum
        # Linux (tcp_rtt_estimator, __tcp_set_rto): RTO = SRTT + max(4*RTTVAR, rto_min), the
        # minimum taking the variance term's place instead of bounding the sum (RFC 6298 2.4
        # allows either): the RTO then always exceeds SRTT by rto_min, so a peer's 200 ms
        # delayed ACK does not race it.
        self.min_in_variance = min_in_variance
        self.maximum = maximum
        self.granularity = granularity
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.latest: float | None = None
        self.min_rtt: float | None = None
        self._rto = min(max(initial, minimum), maximum)

    @property
    def rto(self) -> float:
        return self._rto

    def sample(self, r: float) -> None:
        r = max(r, 0.0)
        self.latest = r
        self.min_rtt = r if self.min_rtt is None else min(self.min_rtt, r)
        if self.srtt is None:  # RFC 6298 2.2: the first measurement
            self.srtt = r
            self.rttvar = r / 2
        else:  # RFC 6298 2.3: RTTVAR first, with the old SRTT
            self.rttvar = (1 - self.BETA) * self.rttvar + self.BETA * abs(self.srtt - r)
            self.srtt = (1 - self.ALPHA) * self.srtt + self.ALPHA * r
        if self.min_in_variance:
            rto = self.srtt + max(self.K * self.rttvar, self.minimum)
        else:
            rto = self.srtt + max(self.granularity, self.K * self.rttvar)
        self._rto = min(max(rto, self.minimum), self.maximum)  # RFC 6298 2.4, 2.5
