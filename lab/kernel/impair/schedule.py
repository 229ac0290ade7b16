"""netem's per-packet decisions for the user-space link emulator, without I/O: a seeded RNG and
the profile in, each packet's fate out (drop, release time, duplicate, corruption, reordering).
Pure, so the unit tests replay it exactly; `emulator` does the I/O around it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from lab.model.impairment import Impairment

ETH_HEADER = 14  # netem's rate counts the link-layer frame; a veth frame has a 14-byte header
DEFAULT_LIMIT = 1000  # netem's default queue limit, in packets


@dataclass
class Counters:
    """What the emulator did to the packets it saw; written to stats.json."""

    seen: int = 0
    delivered: int = 0
    lost: int = 0
    limit_dropped: int = 0
    duplicated: int = 0
    corrupted: int = 0
    reordered: int = 0


@dataclass
class Fate:
    """One packet's fate: the release times of the original and of a duplicate, or a drop."""

    drop_reason: str | None = None  # "loss" or "limit"
    release: float = 0.0
    copy_release: float | None = None
    corrupt: bool = False
    reordered: bool = False


@dataclass
class LinkSchedule:
    """netem's per-packet decisions, without I/O: seeded RNG in, release times out.

    Order and meaning follow sch_netem: a duplicate may be drawn, then loss (a lost packet with a
    duplicate still sends one copy); reordered packets (probability `reorder`) skip the delay;
    others leave after delay + uniform jitter; with a rate, a packet also waits for the packets
    before it to be serialised (so jitter cannot reorder a rate-limited link, as in netem);
    `limit` caps the packets held at once, tail-dropping the rest.
    """

    profile: Impairment
    rng: random.Random
    held: int = 0
    last_release: float = 0.0
    counters: Counters = field(default_factory=Counters)

    def admit(self, now: float, size: int) -> Fate:
        p, rng = self.profile, self.rng
        self.counters.seen += 1
        limit = p.limit if p.limit is not None else DEFAULT_LIMIT
        if self.held >= limit:
            self.counters.limit_dropped += 1
            return Fate(drop_reason="limit")
        copies = 1
        if p.duplicate and rng.random() < p.duplicate:
            copies += 1
        if p.loss and rng.random() < p.loss:
            copies -= 1
        if copies == 0:
            self.counters.lost += 1
            return Fate(drop_reason="loss")
        fate = Fate(corrupt=bool(p.corrupt) and rng.random() < p.corrupt)
        fate.release = self._release_time(now, size, fate)
        self.held += not fate.reordered  # a reordered original is accepted at once
        if copies == 2:
            self.counters.duplicated += 1
            fate.copy_release = self._release_time(now, size, Fate())
            self.held += 1  # the copy is always sent from the hold, even when due now
        self.counters.corrupted += fate.corrupt
        return fate

    def released(self) -> None:
        """A held packet (original or copy) has left."""
        self.held -= 1
        self.counters.delivered += 1

    def _release_time(self, now: float, size: int, fate: Fate) -> float:
        p, rng = self.profile, self.rng
        if p.reorder and rng.random() < p.reorder:
            fate.reordered = True
            self.counters.reordered += 1
            return now
        delay = p.delay
        if p.jitter:
            delay = max(0.0, delay + rng.uniform(-p.jitter, p.jitter))
        due = now + delay
        if p.rate is not None:
            due = max(due, self.last_release) + (size + ETH_HEADER) * 8 / p.rate
            self.last_release = due
        return due


def corrupt_packet(payload: bytes, rng: random.Random) -> bytes:
    """Flip one random bit past the IP header, where the transport checksum will catch it (netem
    flips one anywhere in the frame; a broken IP header would only test the kernel's parser)."""
    data = bytearray(payload)
    header = (data[0] & 0x0F) * 4 if data and data[0] >> 4 == 4 else 40
    start = header if len(data) > header else 0
    if not data:
        return payload
    index = rng.randrange(start, len(data))
    data[index] ^= 1 << rng.randrange(8)
    return bytes(data)
