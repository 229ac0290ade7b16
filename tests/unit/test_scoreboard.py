"""The RFC 6675 scoreboard: hand-computed examples, the 2**32 wrap, and a per-octet model."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stack import seq
from stack.tcp.scoreboard import Scoreboard

MSS = 1000
BASES = [1000, seq.MOD - 3500, seq.MOD - 1, seq.HALF - 2000]


def seg(base: int, i: int) -> tuple[int, int]:
    """Segment i (1-based) of MSS octets starting at base."""
    return seq.add(base, (i - 1) * MSS), seq.add(base, i * MSS)


def span(base: int, first: int, last: int) -> tuple[int, int]:
    return seg(base, first)[0], seg(base, last)[1]


# -- hand-computed RFC 6675 example: ten segments, SACKs for 3, 5, 6, 7 -----------------------


@pytest.mark.parametrize("base", BASES)
def test_ten_segments_sacks_then_recovery(base: int) -> None:
    una, nxt = base, seq.add(base, 10 * MSS)
    sb = Scoreboard(MSS)
    assert sb.update(una, nxt, [seg(base, 3)]) == MSS
    assert not sb.is_lost(una)  # one block, 1000 octets above
    assert sb.update(una, nxt, [seg(base, 5), seg(base, 3)]) == MSS
    assert not sb.is_lost(una)  # two blocks, 2000 octets: not *more* than 2 * SMSS
    assert sb.pipe(una, nxt, una) == 8 * MSS
    assert sb.update(una, nxt, [span(base, 6, 7), seg(base, 5), seg(base, 3)]) == 2 * MSS
    assert sb.blocks == [seg(base, 3), span(base, 5, 7)]  # 5 and 6-7 merge: two blocks
    assert sb.sacked_bytes == 4 * MSS
    assert sb.highest_sacked == seg(base, 7)[1]
    assert [sb.is_sacked(seg(base, i)[0]) for i in range(1, 11)] == [i in (3, 5, 6, 7) for i in range(1, 11)]
    # Lost: 1, 2 (4000 octets above) and 4 (3000 octets above); 8-10 have nothing SACKed above.
    assert [sb.is_lost(seg(base, i)[0]) for i in (1, 2, 4, 8, 9, 10)] == [True] * 3 + [False] * 3
    assert sb.is_lost(seq.add(seg(base, 4)[1], -1))
    # SetPipe: holes 1-2 and 4 are lost (count 0), 8-10 are not (3000).
    assert sb.pipe(una, nxt, una) == 3 * MSS

    # NextSeg rule (1) walks the lost holes; each retransmission adds to pipe through HighRxt.
    expected_pipe = 3 * MSS
    for i in (1, 2, 4):
        assert sb.next_seg(una, nxt, sb.high_rxt) == seg(base, i)
        sb.mark_retransmitted(*seg(base, i))
        expected_pipe += MSS
        assert sb.high_rxt == seg(base, i)[1]
        assert sb.pipe(una, nxt, sb.high_rxt) == expected_pipe
    assert sb.next_seg(una, nxt, sb.high_rxt) is None  # 8-10 lie above the highest SACK (1.b)
    assert sb.next_seg_unlost(una, nxt, sb.high_rxt) is None
    assert sb.rescue_seg(una, nxt) == seg(base, 10)
    assert sb.retransmitted == [span(base, 1, 2), seg(base, 4)]

    # The retransmissions of 1 and 2 arrive: the cumulative ACK jumps to the start of 3... and
    # past the SACKed 3 to the start of 4.
    una = seg(base, 4)[0]
    assert sb.update(una, nxt, [span(base, 5, 7)]) == 0
    assert sb.una == una
    assert sb.blocks == [span(base, 5, 7)]
    assert sb.retransmitted == [seg(base, 4)]
    assert sb.high_rxt == seg(base, 4)[1]
    # 4: lost and retransmitted (1000); 8-10: not lost (3000).
    assert sb.pipe(una, nxt, sb.high_rxt) == 4 * MSS
    assert sb.is_retransmitted(seg(base, 4)[0]) and not sb.is_retransmitted(seg(base, 8)[0])

    una = seg(base, 8)[0]
    assert sb.update(una, nxt, []) == 0
    assert sb.blocks == [] and sb.highest_sacked is None and sb.sacked_bytes == 0
    assert sb.high_rxt == una and sb.retransmitted == []
    assert sb.pipe(una, nxt, sb.high_rxt) == 3 * MSS


@pytest.mark.parametrize("base", BASES)
def test_next_seg_rule_three_and_segment_limits(base: int) -> None:
    una, nxt = base, seq.add(base, 10 * MSS)
    sb = Scoreboard(MSS)
    sb.update(una, nxt, [seg(base, 4)])
    assert sb.next_seg(una, nxt, una) is None  # 1-3 not lost yet
    assert sb.next_seg_unlost(una, nxt, una) == seg(base, 1)
    assert sb.next_seg_unlost(una, nxt, seq.add(una, 2500)) == (seq.add(una, 2500), seg(base, 3)[1])
    assert sb.next_seg_unlost(una, nxt, seg(base, 4)[0]) is None  # nothing unSACKed below SACK
    # A lost hole shorter than SMSS: the range stops at the SACKed block.
    sb.update(una, nxt, [(seq.add(una, 1500), seg(base, 2)[1]), span(base, 6, 8)])
    assert sb.next_seg(una, nxt, una) == seg(base, 1)
    assert sb.next_seg(una, nxt, seq.add(una, 1200)) == (seq.add(una, 1200), seq.add(una, 1500))
    # Rescue: one SMSS ending at the highest unSACKed octet (segment 10).
    assert sb.rescue_seg(una, nxt) == seg(base, 10)
    sb.update(una, nxt, [span(base, 9, 10)])
    assert sb.rescue_seg(una, nxt) == (seg(base, 5)[0], seg(base, 5)[1])


def test_rescue_seg_none_when_everything_is_sacked() -> None:
    sb = Scoreboard(MSS)
    assert sb.rescue_seg(0, 0) is None
    sb.update(0, 3000, [(0, 3000)])
    assert sb.rescue_seg(0, 3000) is None
    assert sb.pipe(0, 3000, 0) == 0


# -- IsLost thresholds -------------------------------------------------------------------------


def test_is_lost_by_count_of_discontiguous_blocks() -> None:
    sb = Scoreboard(MSS)
    sb.update(0, 10 * MSS, [(3000, 3100), (3200, 3300), (7000, 7100)])  # 300 octets, 3 blocks
    assert sb.is_lost(0) and sb.is_lost(2999)
    assert not sb.is_lost(3000) and not sb.is_lost(3150)  # only two blocks start above
    sb.update(0, 10 * MSS, [(3100, 3200)])  # fills the gap: 3000-3300 is one block now
    assert not sb.is_lost(0)


@pytest.mark.parametrize(("end", "lost"), [(4000, False), (4001, True)])
def test_is_lost_by_octets_strictly_more_than_dupthresh_minus_one_mss(end: int, lost: bool) -> None:
    sb = Scoreboard(MSS)
    sb.update(0, 10 * MSS, [(2000, end)])
    assert sb.is_lost(0) is lost
    assert sb.is_lost(1999) is lost


def test_dupthresh_is_configurable() -> None:
    sb = Scoreboard(MSS, dupthresh=2)
    sb.update(0, 10 * MSS, [(2000, 3001)])
    assert sb.is_lost(0)
    sb = Scoreboard(MSS, dupthresh=2)
    sb.update(0, 10 * MSS, [(2000, 2100), (2500, 2600)])
    assert sb.is_lost(0)


# -- update() validation -----------------------------------------------------------------------


@pytest.mark.parametrize("base", BASES)
def test_update_ignores_invalid_blocks_and_clips_at_una(base: int) -> None:
    una, nxt = seq.add(base, 2000), seq.add(base, 10000)
    sb = Scoreboard(MSS)

    def at(n: int) -> int:
        return seq.add(base, n)

    assert sb.update(una, nxt, [(at(0), at(1000))]) == 0  # D-SACK below SND.UNA
    assert sb.update(una, nxt, [(at(9000), at(10001))]) == 0  # beyond SND.NXT
    assert sb.update(una, nxt, [(at(5000), at(5000)), (at(6000), at(5000))]) == 0  # empty, reversed
    assert sb.blocks == []
    assert sb.update(una, nxt, [(at(1500), at(2500))]) == 500  # straddles SND.UNA: clipped
    assert sb.blocks == [(una, at(2500))]
    assert sb.update(una, nxt, [(at(9000), at(10000))]) == 1000  # up to SND.NXT is fine
    assert sb.update(una, nxt, [(at(9000), at(10000))]) == 0  # nothing new
    assert sb.update(una, nxt, [(at(2400), at(3000)), (at(8500), at(9100))]) == 500 + 500
    assert sb.blocks == [(una, at(3000)), (at(8500), at(10000))]
    # An old ACK does not move the scoreboard back.
    assert sb.update(at(1000), nxt, []) == 0
    assert sb.una == una and sb.sacked_bytes == 2500


def test_adjacent_blocks_merge_and_advancing_trims() -> None:
    sb = Scoreboard(MSS)
    sb.update(0, 9000, [(3000, 4000), (5000, 6000)])
    sb.update(0, 9000, [(4000, 5000)])
    assert sb.blocks == [(3000, 6000)]
    assert sb.update(3500, 9000, []) == 0
    assert sb.blocks == [(3500, 6000)] and sb.sacked_bytes == 2500


def test_reset_forgets_sacks_and_retransmissions() -> None:
    """RFC 6675 5.1 / RFC 2018 8: after an RTO the SACK information is expunged."""
    sb = Scoreboard(MSS)
    sb.update(0, 9000, [(3000, 4000), (5000, 8000)])
    sb.mark_retransmitted(0, 1000)
    sb.reset()
    assert sb.blocks == [] and sb.retransmitted == [] and sb.high_rxt == 0
    assert not sb.is_lost(0)
    assert sb.pipe(0, 9000, sb.high_rxt) == 9000


def test_clear_retransmitted_keeps_sacks() -> None:
    sb = Scoreboard(MSS)
    sb.update(0, 9000, [(3000, 4000)])
    sb.mark_retransmitted(0, 1000)
    sb.mark_retransmitted(500, 400)  # empty: ignored
    sb.clear_retransmitted()
    assert sb.retransmitted == [] and sb.high_rxt == 0 and sb.blocks == [(3000, 4000)]


# -- per-octet model ---------------------------------------------------------------------------


class Naive:
    """RFC 6675 read literally, one octet at a time (offsets from a fixed origin, mod 2**32)."""

    def __init__(self, una: int, mss: int, dupthresh: int) -> None:
        self.una, self.mss, self.dupthresh = una, mss, dupthresh
        self.sacked: set[int] = set()

    def off(self, x: int) -> int:
        return seq.sub(x, self.una)

    def update(self, una: int, nxt: int, blocks: list[tuple[int, int]]) -> int:
        if seq.gt(una, self.una):
            self.una = una
            self.sacked = {x for x in self.sacked if self.off(x) >= 0}
        new = 0
        for left, right in blocks:
            s, e = self.off(left), self.off(right)
            if e <= s or e <= 0 or e > self.off(nxt):
                continue
            for o in range(max(s, 0), e):
                x = seq.add(self.una, o)
                new += x not in self.sacked
                self.sacked.add(x)
        return new

    def is_lost(self, x: int) -> bool:
        above = sorted(o for o in map(self.off, self.sacked) if o > self.off(x))
        runs = sum(1 for i, o in enumerate(above) if i == 0 or above[i - 1] != o - 1)
        # A run that continues from x itself started at or below x: not a block above x.
        if above and above[0] == self.off(x) + 1 and x in self.sacked:
            runs -= 1
        return runs >= self.dupthresh or len(above) > (self.dupthresh - 1) * self.mss

    def window(self, una: int, nxt: int) -> range:
        return range(self.off(una), self.off(nxt))

    def pipe(self, una: int, nxt: int, high_rxt: int) -> int:
        total = 0
        for o in self.window(una, nxt):
            x = seq.add(self.una, o)
            if x in self.sacked:
                continue
            total += not self.is_lost(x)
            total += o < self.off(high_rxt)
        return total

    def next_seg(self, una: int, nxt: int, high_rxt: int, need_lost: bool) -> tuple[int, int] | None:
        if not self.sacked:
            return None
        top = max(map(self.off, self.sacked))
        for o in self.window(una, nxt):
            x = seq.add(self.una, o)
            if o < self.off(high_rxt) or o >= top or x in self.sacked:
                continue
            if need_lost and not self.is_lost(x):
                continue
            end = o
            while end < o + self.mss and end < self.off(nxt) and seq.add(self.una, end) not in self.sacked:
                end += 1
            return x, seq.add(self.una, end)
        return None


block = st.tuples(st.integers(-20, 140), st.integers(-5, 40))


@settings(max_examples=300, deadline=None)
@given(
    origin=st.sampled_from([0, seq.MOD - 60, seq.HALF - 30, 12345]),
    mss=st.integers(1, 12),
    dupthresh=st.integers(1, 4),
    steps=st.lists(
        st.tuples(st.integers(0, 30), st.integers(0, 120), st.lists(block, max_size=4), st.integers(0, 130)),
        min_size=1,
        max_size=8,
    ),
)
def test_matches_per_octet_model(
    origin: int, mss: int, dupthresh: int, steps: list[tuple[int, int, list[tuple[int, int]], int]]
) -> None:
    sb, model = Scoreboard(mss, dupthresh), Naive(origin, mss, dupthresh)
    sb.update(origin, origin, [])
    una = origin
    for advance, window, raw_blocks, rxt in steps:
        una = seq.add(una, advance)
        nxt = seq.add(una, window)
        blocks = [(seq.add(una, s), seq.add(una, s + n)) for s, n in raw_blocks]
        assert sb.update(una, nxt, blocks) == model.update(una, nxt, blocks)
        high_rxt = seq.add(una, min(rxt, window))

        intervals = [(seq.sub(s, una), seq.sub(e, una)) for s, e in sb.blocks]
        assert all(0 <= s < e for s, e in intervals)
        assert all(a[1] < b[0] for a, b in itertools.pairwise(intervals))  # disjoint
        assert {seq.add(una, o) for s, e in intervals for o in range(s, e)} == model.sacked
        assert sb.sacked_bytes == len(model.sacked)
        expected_top = max(map(model.off, model.sacked)) + 1 if model.sacked else None
        assert sb.highest_sacked == (None if expected_top is None else seq.add(una, expected_top))
        for o in range(-3, window + 3):
            x = seq.add(una, o)
            assert sb.is_sacked(x) is (x in model.sacked)
            if 0 <= o < window and x not in model.sacked:
                assert sb.is_lost(x) is model.is_lost(x), o
        assert sb.pipe(una, nxt, high_rxt) == model.pipe(una, nxt, high_rxt)
        assert sb.next_seg(una, nxt, high_rxt) == model.next_seg(una, nxt, high_rxt, True)
        assert sb.next_seg_unlost(una, nxt, high_rxt) == model.next_seg(una, nxt, high_rxt, False)


@settings(max_examples=200, deadline=None)
@given(
    origin=st.sampled_from([0, seq.MOD - 40, 777]),
    marks=st.lists(st.tuples(st.integers(0, 20), st.integers(-5, 60), st.integers(-5, 30)), max_size=8),
)
def test_retransmitted_marks_match_a_set(origin: int, marks: list[tuple[int, int, int]]) -> None:
    sb = Scoreboard(10)
    una, high = origin, 0
    marked: set[int] = set()
    sb.update(una, una, [])
    for advance, s, n in marks:
        una = seq.add(una, advance)
        sb.update(una, seq.add(una, 100), [])
        marked = {x for x in marked if seq.ge(x, una)}
        high = max(high - advance, 0)
        sb.mark_retransmitted(seq.add(una, s), seq.add(una, s + n))
        if n > 0 and s + n > 0:
            marked |= {seq.add(una, o) for o in range(max(s, 0), s + n)}
            high = max(high, s + n)
        assert sb.high_rxt == seq.add(una, high)
        for o in range(-2, 100):
            assert sb.is_retransmitted(seq.add(una, o)) is (seq.add(una, o) in marked)
