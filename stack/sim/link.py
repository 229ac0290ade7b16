"""A one-way simulated link with a seeded impairment model, close to Linux netem where simple.

What happens to a packet handed to `Link.send`, in this order (each random draw is made only when
its probability is non-zero, so adding a zero field never changes a seeded run):

1. mtu: a packet longer than `mtu` is not sent; it is counted `too_big` and passed to
   `on_too_big` (the network answers with ICMP "fragmentation needed" when DF is set).
2. loss: with probability `loss` the packet is dropped (`lost`).
3. duplicate: with probability `duplicate` a second copy is sent right behind the first
   (`duplicated`). Each copy goes through steps 4-6 on its own.
4. corrupt: with probability `corrupt` one bit at a uniformly random position is flipped.
5. rate: with `rate` (bits/s) the copy waits for the transmitter, then takes len*8/rate seconds
   to serialise; copies queue behind each other in FIFO order. At most `queue_limit` copies may
   wait (the one being serialised does not count); beyond that the copy is tail-dropped
   (`queue_dropped`). Without `rate`, serialisation is instant and nothing waits.
6. delay: the copy arrives delay + U(-jitter, +jitter) seconds (clipped at 0) after its
   serialisation ends. Jitter alone never reorders: an arrival is never earlier than the previous
   one (netem's default queue re-sorts by arrival time, so there jitter does reorder; this is
   netem behind a FIFO, the behaviour people usually mean by "jitter").
   With probability `reorder` the copy skips the delay and arrives when serialised (`reordered`),
   so it overtakes copies still in flight, as netem's reorder sends some packets immediately.

Arrivals at the same time are delivered in send order. `set_profile` applies to packets sent
after the call; packets already in flight keep their arrival times.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class LinkProfile:
    delay: float = 0.0  # seconds
    jitter: float = 0.0  # seconds, uniform in [-jitter, +jitter] around delay
    loss: float = 0.0  # probabilities, 0..1
    duplicate: float = 0.0
    reorder: float = 0.0
    corrupt: float = 0.0
    rate: float | None = None  # bits per second; None: infinitely fast
    queue_limit: int | None = None  # packets waiting for serialisation; None: unbounded
    mtu: int | None = None  # largest packet carried, in octets; None: any size

    def __post_init__(self) -> None:
        for name in ("delay", "jitter"):
            value = getattr(self, name)
            if not value >= 0.0:  # also refuses NaN
                raise ValueError(f"LinkProfile.{name} must be >= 0 seconds, got {value!r}")
        for name in ("loss", "duplicate", "reorder", "corrupt"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"LinkProfile.{name} must be a probability in [0, 1], got {value!r}")
        if self.rate is not None and not self.rate > 0.0:
            raise ValueError(f"LinkProfile.rate must be > 0 bits/s or None, got {self.rate!r}")
        if self.queue_limit is not None and self.queue_limit < 0:
            raise ValueError(f"LinkProfile.queue_limit must be >= 0 or None, got {self.queue_limit!r}")
        if self.mtu is not None and self.mtu < 1:
            raise ValueError(f"LinkProfile.mtu must be >= 1 octet or None, got {self.mtu!r}")


@dataclass(slots=True)
class LinkStats:
    sent: int = 0  # packets handed to send()
    delivered: int = 0  # copies handed to deliver (duplicates included)
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    corrupted: int = 0
    queue_dropped: int = 0
    too_big: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class Link:
    """Carries packets one way from a sender to `deliver`, on `loop`'s clock (see module doc)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        profile: LinkProfile,
        rng: random.Random,
        deliver: Callable[[bytes], None],
        on_too_big: Callable[[bytes], None] | None = None,
    ) -> None:
        self.loop = loop
        self.profile = profile
        self.rng = rng
        self.deliver = deliver
        self.on_too_big = on_too_big
        self.stats = LinkStats()
        self._tx_free_at = 0.0  # when the transmitter finishes what it already serialises
        self._waiting: deque[float] = deque()  # serialisation start times of queued copies
        self._last_arrival = 0.0  # FIFO floor for arrivals that did not skip the delay
        # Own arrival queue, so equal arrival times keep send order on any event loop.
        self._in_flight: list[tuple[float, int, bytes]] = []
        self._seq = itertools.count()

    def set_profile(self, profile: LinkProfile) -> None:
        self.profile = profile

    def send(self, packet: bytes) -> None:
        p = self.profile
        rng = self.rng
        self.stats.sent += 1
        if p.mtu is not None and len(packet) > p.mtu:
            self.stats.too_big += 1
            if self.on_too_big is not None:
                self.on_too_big(packet)
            return
        if p.loss and rng.random() < p.loss:
            self.stats.lost += 1
            return
        copies = 1
        if p.duplicate and rng.random() < p.duplicate:
            self.stats.duplicated += 1
            copies = 2
        for _ in range(copies):
            self._send_copy(packet, p, rng)

    def _send_copy(self, packet: bytes, p: LinkProfile, rng: random.Random) -> None:
        now = self.loop.time()
        if p.corrupt and packet and rng.random() < p.corrupt:
            packet = flip_bit(packet, rng.randrange(len(packet) * 8))
            self.stats.corrupted += 1
        sent_at = now
        if p.rate is not None:
            waiting = self._waiting
            while waiting and waiting[0] <= now:
                waiting.popleft()
            start = max(now, self._tx_free_at)
            if start > now:
                if p.queue_limit is not None and len(waiting) >= p.queue_limit:
                    self.stats.queue_dropped += 1
                    return
                waiting.append(start)
            sent_at = start + len(packet) * 8 / p.rate
            self._tx_free_at = sent_at
        if p.reorder and rng.random() < p.reorder:
            self.stats.reordered += 1
            arrival = sent_at
        else:
            delay = p.delay
            if p.jitter:
                delay = max(0.0, delay + rng.uniform(-p.jitter, p.jitter))
            arrival = max(sent_at + delay, self._last_arrival)
            self._last_arrival = arrival
        heapq.heappush(self._in_flight, (arrival, next(self._seq), packet))
        self.loop.call_at(arrival, self._arrive)

    def _arrive(self) -> None:
        # One timer per copy; each pops the earliest copy, so ties go out in send order.
        _, _, packet = heapq.heappop(self._in_flight)
        self.stats.delivered += 1
        self.deliver(packet)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)


def flip_bit(packet: bytes, bit: int) -> bytes:
    """packet with bit number `bit` (0 = most significant bit of the first octet) inverted."""
    out = bytearray(packet)
    out[bit >> 3] ^= 0x80 >> (bit & 7)
    return bytes(out)
