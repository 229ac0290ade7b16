"""The receiver's out-of-order queue and the SACK blocks it reports (RFC 9293 3.10.7.4, RFC 2018).

Segments that arrive beyond RCV.NXT are kept as disjoint ranges with absolute sequence numbers
(ordered by their distance from RCV.NXT, so sequence wrap never matters inside).

Memory is bounded by `limit` (the receive buffer): each range is charged its octets plus
BLOCK_OVERHEAD, the cost of keeping one more range, as Linux charges an skb's truesize. A peer
sending one-octet segments with holes between them would otherwise make the host keep thousands
of tiny ranges (and walk them for every segment) within an ordinary window. When the charge
would pass the limit, the ranges farthest from RCV.NXT are dropped first if the new data lies
before them (Linux's tcp_prune_ofo_queue), else the new data is refused; `pruned` counts both.

The ranges are a sorted list of starts and a dict of their data: a segment finds its place by
bisection and touches only the ranges it overlaps, so a queue of a thousand ranges (what a peer
sending one-octet segments with holes can make us hold) costs a segment no more than a short one
(Linux keeps an rb-tree for the same reason).
"""

from __future__ import annotations

import bisect

from stack import seq

BLOCK_OVERHEAD = 256  # octets charged per kept range (Python objects, Linux's skb overhead)


class OutOfOrderQueue:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.pruned = 0  # ranges dropped or refused for lack of room
        # Disjoint, non-adjacent ranges: their starts (absolute sequence numbers) in the order of
        # their distance from RCV.NXT, and the data at each start.
        self._starts: list[int] = []
        self._data: dict[int, bytes] = {}
        self.bytes_held = 0
        self.fin_seq: int | None = None  # sequence number of a FIN seen beyond a hole
        self._recent: list[int] = []  # starts of blocks touched most recently first (RFC 2018 4)

    def __len__(self) -> int:
        return len(self._starts)

    @property
    def charged(self) -> int:
        """Octets this queue counts against the receive buffer (data plus per-range overhead)."""
        return self.bytes_held + BLOCK_OVERHEAD * len(self._starts)

    def _end(self, start: int) -> int:
        return seq.add(start, len(self._data[start]))

    def _index(self, x: int, origin: int | None = None, right: bool = False) -> int:
        """Where sequence number x goes among the starts (bisect_left, or bisect_right), ordered
        by distance from `origin` (RCV.NXT; by default the first start: every range lies within
        a window of either, so the distances order them)."""
        starts = self._starts
        if not starts:
            return 0
        base = starts[0] if origin is None else origin

        def key(s: int) -> int:
            return seq.sub(s, base)

        find = bisect.bisect_right if right else bisect.bisect_left
        return find(starts, key(x), key=key)

    def add(self, start: int, data: bytes, rcv_nxt: int) -> bool:
        """Store data at `start` (> rcv_nxt). Returns False if nothing new was stored (a duplicate
        or no room), which the caller reports with a D-SACK (RFC 2883)."""
        end = seq.add(start, len(data))
        starts = self._starts
        # The ranges the new data overlaps or touches: at most one that starts before it, then
        # those starting inside it or right at its end.
        lo = hi = self._index(start, rcv_nxt)
        if lo > 0 and not seq.lt(self._end(starts[lo - 1]), start):
            lo -= 1
        while hi < len(starts) and not seq.gt(starts[hi], end):
            hi += 1
        # Their union with the new data, keeping the old bytes where they overlap.
        merged_start = start if lo == hi else seq.min_seq(start, starts[lo])
        merged_end = end if lo == hi else seq.max_seq(end, self._end(starts[hi - 1]))
        merged = bytearray(seq.sub(merged_end, merged_start))
        off = seq.sub(start, merged_start)
        merged[off : off + len(data)] = data
        swallowed = 0
        for s in starts[lo:hi]:
            old = self._data[s]
            off = seq.sub(s, merged_start)
            merged[off : off + len(old)] = old
            swallowed += len(old)
        held = self.bytes_held - swallowed + len(merged)
        new_any = held > self.bytes_held
        # Over the limit: the farthest ranges go first; the new data itself is refused rather.
        count = len(starts) - (hi - lo) + 1
        tail = len(starts)
        while held + BLOCK_OVERHEAD * count > self.limit:
            self.pruned += 1
            if tail == hi:
                return False  # the new data is the farthest: refuse it, keep what is held
            tail -= 1
            held -= len(self._data[starts[tail]])  # RFC 2018 8 lets a receiver renege on SACKed data
            count -= 1
        for s in starts[lo:hi] + starts[tail:]:
            del self._data[s]
        starts[lo:] = [merged_start, *starts[hi:tail]]
        self._data[merged_start] = bytes(merged)
        self.bytes_held = held
        self._touch(merged_start, start, end)
        return new_any

    def _touch(self, merged_start: int, start: int, end: int) -> None:
        recent = [s for s in self._recent if s != merged_start and s in self._data]
        # Blocks that were swallowed by the merge are gone; remember the merged one first.
        self._recent = [merged_start, *[s for s in recent if not seq.between(start, s, end)]][:4]

    def pop_ready(self, rcv_nxt: int) -> bytes:
        """Remove and return the data that now continues at rcv_nxt (after a hole was filled)."""
        out = bytearray()
        starts = self._starts
        taken = 0
        for bstart in starts:
            cur = seq.add(rcv_nxt, len(out))
            if seq.gt(bstart, cur):
                break
            bdata = self._data.pop(bstart)
            self.bytes_held -= len(bdata)
            skip = seq.sub(cur, bstart)
            if skip < len(bdata):
                out += bdata[skip:]
            taken += 1
        del starts[:taken]
        self._recent = [s for s in self._recent if s in self._data]
        return bytes(out)

    def drop_below(self, rcv_nxt: int) -> None:
        """Forget blocks wholly below rcv_nxt (after in-order data overtook them)."""
        self.pop_ready(rcv_nxt)

    def sack_blocks(self, limit: int = 4) -> list[tuple[int, int]]:
        """SACK blocks, the most recently changed first (RFC 2018 section 4)."""
        out = [(s, self._end(s)) for s in self._recent if s in self._data]
        for bstart in self._starts:
            if len(out) >= limit:
                break
            block = (bstart, self._end(bstart))
            if block not in out:
                out.append(block)
        return out[:limit]

    def first_overlap(self, start: int, end: int) -> tuple[int, int] | None:
        """The lowest part of [start, end) already held, or None: a partly duplicated segment
        reports it as its D-SACK block (RFC 2883 section 4)."""
        i = self._index(start)
        for bstart in self._starts[max(i - 1, 0) : i + 1]:  # the range holding start, or the next
            lo = seq.max_seq(start, bstart)
            hi = seq.min_seq(end, self._end(bstart))
            if seq.lt(lo, hi):
                return lo, hi
        return None

    def covers(self, start: int, end: int) -> bool:
        """True if [start, end) is already held (a duplicate, for D-SACK)."""
        i = self._index(start, right=True)  # the last range starting at or before start
        if i == 0:
            return False
        bstart = self._starts[i - 1]
        return seq.le(bstart, start) and seq.le(end, self._end(bstart))

    def clear(self) -> None:
        self._starts.clear()
        self._data.clear()
        self._recent.clear()
        self.bytes_held = 0
        self.fin_seq = None
