"""Link: seeded delay, jitter, loss, duplication, reordering, corruption, rate, queue and MTU."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Iterator

import pytest

from stack.sim.link import Link, LinkProfile, flip_bit
from stack.sim.loop import VirtualTimeLoop, close_loop, new_loop


@pytest.fixture
def loop() -> Iterator[VirtualTimeLoop]:
    lp = new_loop()
    yield lp
    close_loop(lp)


class Recorder:
    def __init__(self, loop: VirtualTimeLoop) -> None:
        self.loop = loop
        self.got: list[tuple[float, bytes]] = []
        self.too_big: list[bytes] = []

    def __call__(self, packet: bytes) -> None:
        self.got.append((self.loop.time(), packet))

    @property
    def packets(self) -> list[bytes]:
        return [p for _, p in self.got]

    @property
    def times(self) -> list[float]:
        return [t for t, _ in self.got]


def make(loop: VirtualTimeLoop, profile: LinkProfile, seed: int = 1) -> tuple[Link, Recorder]:
    rec = Recorder(loop)
    link = Link(loop, profile, random.Random(seed), rec, on_too_big=rec.too_big.append)
    return link, rec


def drain(loop: VirtualTimeLoop) -> None:
    loop.run_until_complete(asyncio.sleep(1e6))


def numbered(n: int, size: int = 100) -> list[bytes]:
    return [i.to_bytes(4, "big") + bytes(size - 4) for i in range(n)]


def test_no_impairment_delivers_everything_in_order_at_once(loop: VirtualTimeLoop) -> None:
    link, rec = make(loop, LinkProfile())
    pkts = numbered(50)
    for p in pkts:
        link.send(p)
    drain(loop)
    assert rec.packets == pkts
    assert rec.times == [0.0] * 50
    assert link.stats.sent == link.stats.delivered == 50


def test_delay_is_exact(loop: VirtualTimeLoop) -> None:
    link, rec = make(loop, LinkProfile(delay=0.025))
    link.send(b"a")
    loop.call_at(1.0, link.send, b"b")
    drain(loop)
    assert rec.got == [(0.025, b"a"), (1.0 + 0.025, b"b")]


def test_rate_serialises_back_to_back_packets(loop: VirtualTimeLoop) -> None:
    # 1250 octets at 1 Mbit/s take 10 ms each.
    link, rec = make(loop, LinkProfile(rate=1_000_000))
    for p in numbered(10, 1250):
        link.send(p)
    drain(loop)
    assert rec.times == pytest.approx([0.01 * (i + 1) for i in range(10)], abs=1e-12)


def test_rate_and_delay_add_exactly(loop: VirtualTimeLoop) -> None:
    # 128 octets at 1024 bit/s take exactly 1 s: binary-exact times.
    link, rec = make(loop, LinkProfile(rate=1024, delay=0.5))
    for p in numbered(4, 128):
        link.send(p)
    loop.call_at(10.0, link.send, bytes(128))  # idle link: no queueing
    drain(loop)
    assert rec.times == [1.5, 2.5, 3.5, 4.5, 11.5]


def test_queue_limit_tail_drops(loop: VirtualTimeLoop) -> None:
    link, rec = make(loop, LinkProfile(rate=1024, queue_limit=3))
    pkts = numbered(10, 128)
    for p in pkts:
        link.send(p)
    # One is serialised at once, three wait, six are dropped.
    assert link.stats.queue_dropped == 6
    drain(loop)
    assert rec.packets == pkts[:4]
    assert rec.times == [1.0, 2.0, 3.0, 4.0]
    # Once the queue has drained, packets are accepted again.
    link.send(pkts[4])
    drain(loop)
    assert rec.packets[-1] == pkts[4]
    assert link.stats.queue_dropped == 6


def test_queue_frees_as_serialisation_progresses(loop: VirtualTimeLoop) -> None:
    link, rec = make(loop, LinkProfile(rate=1024, queue_limit=1))
    link.send(bytes(128))  # serialising 0..1
    link.send(bytes(128))  # waits, serialises 1..2
    link.send(bytes(128))  # dropped: queue full
    loop.call_at(1.0, link.send, bytes(128))  # at 1.0 the waiter has started: room again
    drain(loop)
    assert link.stats.queue_dropped == 1
    assert rec.times == [1.0, 2.0, 3.0]


def test_mtu_drops_and_reports_too_big(loop: VirtualTimeLoop) -> None:
    link, rec = make(loop, LinkProfile(mtu=100))
    link.send(bytes(100))
    link.send(bytes(101))
    drain(loop)
    assert rec.packets == [bytes(100)]
    assert rec.too_big == [bytes(101)]
    assert link.stats.too_big == 1


def test_loss_rate_within_binomial_bounds(loop: VirtualTimeLoop) -> None:
    n, p = 20000, 0.1
    link, rec = make(loop, LinkProfile(loss=p), seed=3)
    for _ in range(n):
        link.send(b"x")
    drain(loop)
    sigma = math.sqrt(n * p * (1 - p))
    assert abs(link.stats.lost - n * p) < 4 * sigma
    assert len(rec.got) == n - link.stats.lost == link.stats.delivered


def test_full_loss_and_no_loss(loop: VirtualTimeLoop) -> None:
    link, rec = make(loop, LinkProfile(loss=1.0))
    for _ in range(100):
        link.send(b"x")
    drain(loop)
    assert rec.got == [] and link.stats.lost == 100


def test_duplicate_delivers_second_copy(loop: VirtualTimeLoop) -> None:
    link, rec = make(loop, LinkProfile(duplicate=1.0, delay=0.1))
    link.send(b"one")
    link.send(b"two")
    drain(loop)
    assert rec.got == [(0.1, b"one"), (0.1, b"one"), (0.1, b"two"), (0.1, b"two")]
    assert link.stats.duplicated == 2
    assert link.stats.delivered == 4


def test_duplicate_rate_within_binomial_bounds(loop: VirtualTimeLoop) -> None:
    n, p = 20000, 0.05
    link, rec = make(loop, LinkProfile(duplicate=p), seed=9)
    for _ in range(n):
        link.send(b"x")
    drain(loop)
    assert abs(link.stats.duplicated - n * p) < 4 * math.sqrt(n * p * (1 - p))
    assert len(rec.got) == n + link.stats.duplicated


def test_corrupt_flips_exactly_one_bit(loop: VirtualTimeLoop) -> None:
    link, rec = make(loop, LinkProfile(corrupt=1.0))
    original = bytes(range(256)) * 4
    for _ in range(200):
        link.send(original)
    drain(loop)
    positions = set()
    for got in rec.packets:
        assert len(got) == len(original)
        diff = int.from_bytes(got, "big") ^ int.from_bytes(original, "big")
        assert diff.bit_count() == 1
        positions.add(diff.bit_length())
    assert len(positions) > 150  # positions are spread, not fixed
    assert link.stats.corrupted == 200


def test_flip_bit() -> None:
    assert flip_bit(b"\x00\x00", 0) == b"\x80\x00"
    assert flip_bit(b"\x00\x00", 15) == b"\x00\x01"


def test_jitter_alone_never_reorders(loop: VirtualTimeLoop) -> None:
    link, rec = make(loop, LinkProfile(delay=0.05, jitter=0.04))
    pkts = numbered(500)
    for i, p in enumerate(pkts):
        loop.call_at(i * 0.001, link.send, p)
    drain(loop)
    assert rec.packets == pkts
    assert rec.times == sorted(rec.times)
    # Never earlier than the smallest possible delay (the FIFO floor may only make it later).
    assert all(t - i * 0.001 >= 0.01 - 1e-12 for i, t in enumerate(rec.times))
    assert link.stats.reordered == 0


def test_jitter_spreads_delay_and_clips_at_zero(loop: VirtualTimeLoop) -> None:
    link, rec = make(loop, LinkProfile(delay=0.01, jitter=0.05))
    for i in range(200):
        loop.call_at(float(i), link.send, bytes(1))  # far apart: FIFO floor never binds
    drain(loop)
    delays = [t - i for i, t in enumerate(rec.times)]
    assert all(0.0 <= d <= 0.06 + 1e-9 for d in delays)
    assert any(d == 0.0 for d in delays)  # clipped
    assert len(set(delays)) > 50


def test_reorder_lets_packets_overtake(loop: VirtualTimeLoop) -> None:
    link, rec = make(loop, LinkProfile(delay=0.1, reorder=0.25), seed=5)
    pkts = numbered(400)
    for i, p in enumerate(pkts):
        loop.call_at(i * 0.001, link.send, p)
    drain(loop)
    assert sorted(rec.packets) == pkts
    assert rec.packets != pkts
    assert rec.times == sorted(rec.times)
    n = link.stats.reordered
    assert abs(n - 100) < 4 * math.sqrt(400 * 0.25 * 0.75)
    # A reordered packet arrives at its send time (no delay); the others after exactly 0.1 s.
    for t, p in rec.got:
        sent = int.from_bytes(p[:4], "big") * 0.001
        assert t in (sent, sent + 0.1)


def test_same_seed_same_outcome_different_seed_differs(loop: VirtualTimeLoop) -> None:
    profile = LinkProfile(delay=0.02, jitter=0.01, loss=0.1, duplicate=0.05, reorder=0.1, corrupt=0.05)

    def once(seed: int) -> tuple[list[tuple[float, bytes]], dict[str, int]]:
        lp = new_loop()
        try:
            link, rec = make(lp, profile, seed=seed)
            for i, p in enumerate(numbered(1000)):
                lp.call_at(i * 0.0005, link.send, p)
            drain(lp)
            return rec.got, link.stats.as_dict()
        finally:
            close_loop(lp)

    assert once(42) == once(42)
    assert once(42) != once(43)


def test_zero_probabilities_draw_nothing(loop: VirtualTimeLoop) -> None:
    rng = random.Random(11)
    state = rng.getstate()
    link = Link(loop, LinkProfile(delay=0.1), rng, lambda p: None)
    for _ in range(10):
        link.send(b"x")
    assert rng.getstate() == state


def test_set_profile_applies_to_later_packets(loop: VirtualTimeLoop) -> None:
    link, rec = make(loop, LinkProfile(delay=1.0))
    link.send(b"slow")
    link.set_profile(LinkProfile(delay=0.0, loss=0.0))
    link.send(b"fast")
    drain(loop)
    # The FIFO floor keeps "fast" behind "slow" (no reordering unless configured).
    assert rec.got == [(1.0, b"slow"), (1.0, b"fast")]
    assert link.profile == LinkProfile()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("delay", -1.0),
        ("jitter", -0.1),
        ("delay", math.nan),
        ("loss", 1.5),
        ("duplicate", -0.1),
        ("reorder", 2.0),
        ("corrupt", math.nan),
        ("rate", 0.0),
        ("queue_limit", -1),
        ("mtu", 0),
    ],
)
def test_profile_validation_names_the_field(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        LinkProfile(**{field: value})  # type: ignore[arg-type]
