"""Releasing on time: when the emulator's loop asks to be woken before a release, and how it waits
out the last microseconds once the release's verdicts are ready to send.

Measured on the lab's 2-vCPU machine (cpuidle haltpoll), a select() timeout of T returns late by
35 µs (T = 50 µs) to 100 µs (T = 20 ms) even at SCHED_FIFO, 80 to 210 µs for a normal process
(timer slack); epoll's timeout is in whole milliseconds (Python rounds it up, so 4.3 ms sleeps 5).
Then building the verdicts takes Python 20 to 120 µs, more when other work has cooled the caches.
Sleeping until the release itself made each direction of a link 0.1 to 0.2 ms late, twice per
round trip. So the loop asks select (a microsecond timeout) to wake it `margin` early, `margin`
being what waking and preparing took lately (learned as TCP learns SRTT, RFC 6298), builds the
verdicts, and `hold`s them until the release is due: the last SPIN_LIMIT spun on the clock, any
longer remainder slept. A release then leaves within microseconds of its time, for at most
SPIN_LIMIT of CPU per release and SPIN_SHARE of the time, and no spinning while no release is near.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable, Iterable, Sequence

SPIN_LIMIT = 90e-6  # the longest stretch spun before a release; anything longer is slept
SPIN_SHARE = 0.1  # and at most this share of the time since the last release: a dense train of
# releases (a rate-limited link) would otherwise keep a core spinning
MAX_MARGIN = 1e-3  # a margin cap, so one stall (the host descheduling us) does not teach a spin
MAX_ARRIVAL_LAG = 0.5  # a receive stamp older than this is not trusted (see `arrival`)
LEARN = 0.125  # weight of the newest sample in `margin` (RFC 6298's alpha)

Fds = Sequence[int]
Select = Callable[[Fds, Fds, Fds, float], tuple[list[int], list[int], list[int]]]


class Pacer:
    """The loop's clocks and sleep. They are parameters so that tests can run it on a simulated
    clock whose sleeps come back late."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, select_fn: Select = select.select,
                 wall: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.select = select_fn
        self.wall = wall  # the clock of the kernel's receive stamps (CLOCK_REALTIME)
        self.margin = SPIN_LIMIT  # until measured: wake a little early rather than late
        self.aimed: float | None = None  # when the last sleep was meant to end, if a release ended it
        self.spun = 0.0  # seconds spent spinning, for stats.json
        self.last_hold = 0.0  # when the last release was held to

    def timeout(self, release: float | None, limit: float, now: float) -> float:
        """Seconds to ask of select at `now`: until `margin` before `release` or until `limit`,
        whichever is first; never negative and not rounded (select takes microseconds)."""
        until = limit if release is None else min(limit, release - self.margin)
        return max(0.0, until - now)

    def wait(self, fds: Fds, release: float | None, limit: float) -> list[int]:
        """Sleep until one of `fds` is readable, `limit` comes, or it is `margin` before
        `release`; returns the readable descriptors."""
        now = self.clock()
        timeout = self.timeout(release, limit, now)
        ready = self.select(fds, [], [], timeout)[0]
        for_release = release is not None and release - self.margin <= limit
        self.aimed = now + timeout if for_release and timeout > 0 and not ready else None
        return ready

    def hold(self, release: float) -> None:
        """With the verdicts of `release` ready: learn how long waking and preparing took since the
        wake-up aimed at, then wait until `release`: spin the last SPIN_LIMIT (or SPIN_SHARE of the
        time since the last release, if less), sleep any longer part."""
        now = self.clock()
        if self.aimed is not None:
            took = min(max(now - self.aimed, 0.0), MAX_MARGIN)
            self.margin += LEARN * (took - self.margin)
            self.aimed = None
        spin = min(SPIN_LIMIT, SPIN_SHARE * (now - self.last_hold))
        while release - now > spin:
            self.select([], [], [], release - now - spin)
            now = self.clock()
        start = now
        while now < release:  # bounded by `spin`: a sleep this short would come back late
            now = self.clock()
        self.spun += now - start
        self.last_hold = now


def lateness(samples: Iterable[float]) -> dict[str, float] | None:
    """Median, 90th percentile and maximum of how late releases came, in milliseconds."""
    ordered = sorted(samples)
    if not ordered:
        return None
    n = len(ordered)
    return {"p50": round(ordered[n // 2] * 1e3, 3), "p90": round(ordered[min(n - 1, n * 9 // 10)] * 1e3, 3),
            "max": round(ordered[-1] * 1e3, 3)}


def arrival(timestamp: float | None, realtime_offset: float, now: float) -> float:
    """When the packet reached the interface, on the monotonic clock: its kernel receive stamp
    (NFQA_TIMESTAMP, wall clock) when it has a plausible one, else `now` (when it was read).
    Counting the delay from there, as netem counts from the enqueue, keeps the time this process
    took to wake up out of the emulated delay."""
    if timestamp is not None:
        stamped = timestamp - realtime_offset
        if now - MAX_ARRIVAL_LAG <= stamped <= now:
            return stamped
    return now
