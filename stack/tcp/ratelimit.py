"""Rate limits on what a peer (or an off-path attacker) can make the host send.

- `ChallengeAckLimiter`: RFC 5961 section 7, challenge ACKs per second host-wide. The budget of
  each one-second window is drawn at random between half and one and a half times the limit, as
  Linux does since the fix for CVE-2016-5696: a fixed shared budget let an off-path attacker count
  the challenge ACKs it got and learn whether a guessed 4-tuple and window were live.
- `OutOfWindowLimiter`: per connection, at most one ACK every `interval` in answer to segments
  that are out of window, fail PAWS or carry a bad ACK (Linux's tcp_invalid_ratelimit, 500 ms).
  Two ends that each find the other's ACK unacceptable would otherwise answer each other forever
  (an ACK storm); and a per-connection limit hides the host-wide budget from any one connection.
- `PerSecondLimit`: at most `per_second` in each one-second window from the first (ICMPv6 errors,
  stack.host6).
- `TokenBucket`: RSTs for closed ports and ICMP messages per second (Linux icmp_msgs_per_sec and
  icmp_msgs_burst).
"""

from __future__ import annotations

import random


class ChallengeAckLimiter:
    """Host-wide, randomised per-second budget of challenge ACKs (RFC 5961 section 7)."""

    def __init__(self, per_second: int, rng: random.Random | None = None) -> None:
        self.per_second = per_second
        self._rng = rng or random.Random(0)
        self._window = -1
        self._left = 0

    def allow(self, now: float) -> bool:
        if self.per_second <= 0:
            return False
        window = int(now)
        if window != self._window:
            self._window = window
            half = (self.per_second + 1) >> 1
            self._left = self._rng.randint(half, self.per_second + half - 1)
        if self._left <= 0:
            return False
        self._left -= 1
        return True


class PerSecondLimit:
    """At most `per_second` a window of one second, each window opened by its first message."""

    __slots__ = ("_count", "_window_start", "per_second")

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


class OutOfWindowLimiter:
    """One answer per `interval` seconds to invalid segments of one connection (a few bytes)."""

    __slots__ = ("_last", "interval")

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: float | None = None

    def allow(self, now: float) -> bool:
        if self.interval <= 0:
            return True
        if self._last is not None and now - self._last < self.interval:
            return False
        self._last = now
        return True


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; one token per message."""

    __slots__ = ("_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._tokens = self.burst
        self._stamp: float | None = None

    def allow(self, now: float) -> bool:
        if self.rate <= 0:
            return True  # 0 means unlimited, like Linux's sysctls
        if self._stamp is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
