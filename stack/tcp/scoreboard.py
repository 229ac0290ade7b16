"""The sender's SACK scoreboard (RFC 6675 sections 2-4) over [SND.UNA, SND.NXT).

Ranges are kept as sorted, disjoint, non-adjacent half-open intervals of offsets relative to the
last cumulative ACK (`una`), so ordinary integer comparisons are valid across the 2**32 wrap; the
public API speaks absolute sequence numbers. Every query works per range, not per octet: within a
hole (a run of unSACKed octets) the SACKed data above is the same for every octet, so IsLost() is
constant over the hole.

High-water marks follow RFC 6675 section 2 but as exclusive right edges: `high_rxt` is one past the
highest retransmitted octet, `highest_sacked` one past the highest SACKed octet.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from stack import seq

Interval = tuple[int, int]


def _insert(intervals: list[Interval], start: int, end: int) -> int:
    """Merge [start, end) into the sorted list in place; return how many octets were new."""
    new = end - start
    merged_start, merged_end = start, end
    keep_before: list[Interval] = []
    keep_after: list[Interval] = []
    for s, e in intervals:
        if e < start:
            keep_before.append((s, e))
        elif s > end:
            keep_after.append((s, e))
        else:  # overlapping or adjacent: absorb it
            new -= max(0, min(e, end) - max(s, start))
            merged_start = min(merged_start, s)
            merged_end = max(merged_end, e)
    intervals[:] = [*keep_before, (merged_start, merged_end), *keep_after]
    return new


def _shift(intervals: list[Interval], d: int) -> list[Interval]:
    """Rebase offsets by d octets (the cumulative ACK moved), dropping what falls below 0."""
    return [(max(s - d, 0), e - d) for s, e in intervals if e - d > 0]


class Scoreboard:
    """RFC 6675 scoreboard: SACKed ranges, retransmitted ranges, IsLost, SetPipe, NextSeg.

    NextSeg() rules covered: (1) `next_seg`, (3) `next_seg_unlost`, and the range of rule (4)
    `rescue_seg`. Rule (2), new data, needs the send buffer and the receive window, and the
    RescueRxt bookkeeping of rule (4) belongs to the recovery episode: both are the connection's.
    """

    def __init__(self, mss: int, dupthresh: int = 3) -> None:
        self.mss = mss
        self.dupthresh = dupthresh
        self._una = 0
        self._sacked: list[Interval] = []
        self._rxt: list[Interval] = []
        self._high_rxt = 0  # offset, exclusive; 0 = nothing above una retransmitted

    # -- updates ------------------------------------------------------------------------------

    def update(self, snd_una: int, snd_nxt: int, blocks: Iterable[Interval]) -> int:
        """Advance to the cumulative ACK `snd_una`, merge SACK blocks; return newly SACKed octets.

        With no state at all the scoreboard re-anchors at snd_una wherever it is; while state
        exists the connection must call update() on every ACK so `una` never lags by 2**31.

        A block is ignored unless it is a valid range ending in (snd_una, snd_nxt]: D-SACKs
        (RFC 2883) and stale blocks lie at or below snd_una, and a block beyond SND.NXT
        acknowledges data never sent (RFC 2018 section 3 is silent; ignoring it is the safe
        reading). A block straddling snd_una is clipped to it. An ACK older than the scoreboard
        (snd_una behind `una`) does not move it back.
        """
        d = seq.sub(snd_una, self._una)
        if not (self._sacked or self._rxt or self._high_rxt):
            self._una = snd_una
        elif d > 0:
            self._sacked = _shift(self._sacked, d)
            self._rxt = _shift(self._rxt, d)
            self._high_rxt = max(self._high_rxt - d, 0)
            self._una = snd_una
        limit = seq.sub(snd_nxt, self._una)
        new = 0
        for left, right in blocks:
            s, e = seq.sub(left, self._una), seq.sub(right, self._una)
            if e <= s or e <= 0 or e > limit:
                continue
            new += _insert(self._sacked, max(s, 0), e)
        return new

    def mark_retransmitted(self, start: int, end: int) -> None:
        """Record that [start, end) was retransmitted; raises high_rxt (RFC 6675 section 5)."""
        s, e = max(seq.sub(start, self._una), 0), seq.sub(end, self._una)
        if e <= s:
            return
        _insert(self._rxt, s, e)
        self._high_rxt = max(self._high_rxt, e)

    def clear_retransmitted(self) -> None:
        """Start a new loss recovery episode: HighRxt = HighACK (RFC 6675 section 5, step 4.1)."""
        self._rxt = []
        self._high_rxt = 0

    def reset(self) -> None:
        """After a retransmission timeout, forget everything (RFC 6675 section 5.1).

        RFC 2018 section 8 says the sender SHOULD expunge SACK information on an RTO, since the
        receiver may have reneged; keeping it is only allowed with a reneging test, which this
        stack does not have. Retransmission marks go too: after the RTO everything is resent.
        """
        self._sacked = []
        self.clear_retransmitted()

    # -- queries ------------------------------------------------------------------------------

    @property
    def una(self) -> int:
        """The cumulative ACK the scoreboard is anchored at (RFC 6675 HighACK)."""
        return self._una

    @property
    def blocks(self) -> list[Interval]:
        """The SACKed ranges, lowest first, as absolute (start, end) sequence numbers."""
        return [(seq.add(self._una, s), seq.add(self._una, e)) for s, e in self._sacked]

    @property
    def retransmitted(self) -> list[Interval]:
        return [(seq.add(self._una, s), seq.add(self._una, e)) for s, e in self._rxt]

    @property
    def sacked_bytes(self) -> int:
        return sum(e - s for s, e in self._sacked)

    @property
    def highest_sacked(self) -> int | None:
        """Right edge (exclusive) of the highest SACKed block, or None (RFC 6675 HighSACK + 1)."""
        return seq.add(self._una, self._sacked[-1][1]) if self._sacked else None

    @property
    def high_rxt(self) -> int:
        """One past the highest retransmitted octet; `una` when nothing above it was resent."""
        return seq.add(self._una, self._high_rxt)

    def is_sacked(self, sn: int) -> bool:
        return _contains(self._sacked, seq.sub(sn, self._una))

    def is_retransmitted(self, sn: int) -> bool:
        return _contains(self._rxt, seq.sub(sn, self._una))

    def is_lost(self, sn: int) -> bool:
        """RFC 6675 IsLost(SeqNum): DupThresh discontiguous SACKed blocks lie above sn, or more
        than (DupThresh - 1) * SMSS SACKed octets do. A block counts when it starts above sn."""
        off = seq.sub(sn, self._una)
        blocks = sum(1 for s, _ in self._sacked if s > off)
        octets = sum(max(0, e - max(s, off + 1)) for s, e in self._sacked)
        return self._lost(blocks, octets)

    def _lost(self, blocks_above: int, octets_above: int) -> bool:
        return blocks_above >= self.dupthresh or octets_above > (self.dupthresh - 1) * self.mss

    def _window(self, snd_una: int, snd_nxt: int) -> tuple[int, int]:
        return max(seq.sub(snd_una, self._una), 0), seq.sub(snd_nxt, self._una)

    def _holes(self, lo: int, hi: int) -> Iterator[tuple[int, int, bool]]:
        """Yield (start, end, lost) offsets for each unSACKed run inside [lo, hi), lowest first."""
        # SACKed blocks and octets strictly above each gap, accumulated from the top.
        above_blocks = len(self._sacked)
        above_octets = sum(e - s for s, e in self._sacked)
        cursor = lo
        for s, e in self._sacked:
            if cursor < min(s, hi):
                yield cursor, min(s, hi), self._lost(above_blocks, above_octets)
            above_blocks -= 1
            above_octets -= e - s
            cursor = max(cursor, e)
            if cursor >= hi:
                return
        if cursor < hi:
            yield cursor, hi, False

    def pipe(self, snd_una: int, snd_nxt: int, high_rxt: int) -> int:
        """RFC 6675 SetPipe(), in octets: over every unSACKed octet S1 in [snd_una, snd_nxt),
        (a) +1 unless IsLost(S1), (b) +1 if S1 was below HighRxt (here: S1 < high_rxt, the
        exclusive edge), computed per hole."""
        lo, hi = self._window(snd_una, snd_nxt)
        hr = seq.sub(high_rxt, self._una)
        total = 0
        for s, e, lost in self._holes(lo, hi):
            if not lost:
                total += e - s
            total += max(0, min(e, hr) - s)
        return total

    def _first_hole(self, snd_una: int, snd_nxt: int, high_rxt: int, need_lost: bool) -> Interval | None:
        if not self._sacked:
            return None
        lo, hi = self._window(snd_una, snd_nxt)
        start = max(lo, seq.sub(high_rxt, self._una))  # (1.a): above HighRxt
        top = self._sacked[-1][1]  # (1.b): below the highest SACKed octet
        # IsLost() only weakens going up (fewer SACKed octets above), so the first hole decides.
        for s, e, lost in self._holes(start, min(hi, top)):
            if need_lost and not lost:
                return None
            return seq.add(self._una, s), seq.add(self._una, min(e, s + self.mss))
        return None

    def next_seg(self, snd_una: int, snd_nxt: int, high_rxt: int) -> Interval | None:
        """RFC 6675 NextSeg() rule (1): the first unSACKed range at or above high_rxt, below the
        highest SACKed octet, for which IsLost() holds; at most one SMSS and never into a SACKed
        block. None when rule (1) does not apply."""
        return self._first_hole(snd_una, snd_nxt, high_rxt, need_lost=True)

    def next_seg_unlost(self, snd_una: int, snd_nxt: int, high_rxt: int) -> Interval | None:
        """RFC 6675 NextSeg() rule (3): as rule (1) without IsLost(); to be used only when no new
        data may be sent (rule (2) failed)."""
        return self._first_hole(snd_una, snd_nxt, high_rxt, need_lost=False)

    def rescue_seg(self, snd_una: int, snd_nxt: int) -> Interval | None:
        """RFC 6675 NextSeg() rule (4): up to one SMSS ending at the highest unSACKed octet.

        The caller sends it at most once per recovery (HighACK > RescueRxt) and must not raise
        HighRxt for it.
        """
        lo, hi = self._window(snd_una, snd_nxt)
        last: tuple[int, int, bool] | None = None
        for hole in self._holes(lo, hi):
            last = hole
        if last is None:
            return None
        s, e, _ = last
        return seq.add(self._una, max(s, e - self.mss)), seq.add(self._una, e)


def _contains(intervals: list[Interval], off: int) -> bool:
    return any(s <= off < e for s, e in intervals)
