"""The out-of-order queue as first written, every call a walk of all its ranges: the reference
that tests/tcp/test_reassembly_model.py holds stack.tcp.reassembly to, call for call."""

from __future__ import annotations

from stack import seq
from stack.tcp.reassembly import BLOCK_OVERHEAD


class ReferenceQueue:
    """The queue as first written: one linear walk of every range per call."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.pruned = 0  # ranges dropped or refused for lack of room
        # Disjoint, sorted (start, data) with absolute sequence numbers; few entries in practice.
        self._blocks: list[tuple[int, bytes]] = []
        self.bytes_held = 0
        self.fin_seq: int | None = None  # sequence number of a FIN seen beyond a hole
        self._recent: list[int] = []  # starts of blocks touched most recently first (RFC 2018 4)

    def __len__(self) -> int:
        return len(self._blocks)

    @property
    def charged(self) -> int:
        """Octets this queue counts against the receive buffer (data plus per-range overhead)."""
        return self.bytes_held + BLOCK_OVERHEAD * len(self._blocks)

    def add(self, start: int, data: bytes, rcv_nxt: int) -> bool:
        """Store data at `start` (> rcv_nxt). Returns False if nothing new was stored (a duplicate
        or no room), which the caller reports with a D-SACK (RFC 2883)."""
        end = seq.add(start, len(data))
        # Merge with existing blocks: keep the old bytes where they overlap.
        blocks = self._blocks
        merged_start, merged = start, bytearray(data)
        keep: list[tuple[int, bytes]] = []
        for bstart, bdata in blocks:
            bend = seq.add(bstart, len(bdata))
            if seq.lt(bend, merged_start) or seq.gt(bstart, seq.add(merged_start, len(merged))):
                keep.append((bstart, bdata))
                continue
            # Overlapping or adjacent: build the union.
            mstart = seq.min_seq(bstart, merged_start)
            mend = seq.max_seq(bend, seq.add(merged_start, len(merged)))
            buf = bytearray(seq.sub(mend, mstart))
            off = seq.sub(merged_start, mstart)
            buf[off : off + len(merged)] = merged
            off = seq.sub(bstart, mstart)
            buf[off : off + len(bdata)] = bdata
            merged_start, merged = mstart, buf
        total_before = self.bytes_held
        keep.append((merged_start, bytes(merged)))
        keep.sort(key=lambda b: seq.sub(b[0], rcv_nxt))
        held = sum(len(b[1]) for b in keep)
        new_any = held > total_before
        while held + BLOCK_OVERHEAD * len(keep) > self.limit:
            self.pruned += 1
            if keep[-1][0] == merged_start:
                return False  # the new data is the farthest: refuse it, keep what is held
            held -= len(keep.pop()[1])  # RFC 2018 8 lets a receiver renege on SACKed data
        self._blocks = keep
        self.bytes_held = held
        self._touch(merged_start, start, end)
        return new_any

    def _touch(self, merged_start: int, start: int, end: int) -> None:
        recent = [s for s in self._recent if s != merged_start and self._find(s) is not None]
        # Blocks that were swallowed by the merge are gone; remember the merged one first.
        self._recent = [merged_start, *[s for s in recent if not seq.between(start, s, end)]][:4]

    def _find(self, start: int) -> bytes | None:
        for bstart, bdata in self._blocks:
            if bstart == start:
                return bdata
        return None

    def pop_ready(self, rcv_nxt: int) -> bytes:
        """Remove and return the data that now continues at rcv_nxt (after a hole was filled)."""
        out = bytearray()
        while self._blocks:
            bstart, bdata = self._blocks[0]
            cur = seq.add(rcv_nxt, len(out))
            if seq.gt(bstart, cur):
                break
            self._blocks.pop(0)
            self.bytes_held -= len(bdata)
            skip = seq.sub(cur, bstart)
            if skip < len(bdata):
                out += bdata[skip:]
        self._recent = [s for s in self._recent if self._find(s) is not None]
        return bytes(out)

    def drop_below(self, rcv_nxt: int) -> None:
        """Forget blocks wholly below rcv_nxt (after in-order data overtook them)."""
        self.pop_ready(rcv_nxt)

    def sack_blocks(self, limit: int = 4) -> list[tuple[int, int]]:
        """SACK blocks, the most recently changed first (RFC 2018 section 4)."""
        out: list[tuple[int, int]] = []
        for s in self._recent:
            data = self._find(s)
            if data is not None:
                out.append((s, seq.add(s, len(data))))
        for bstart, bdata in self._blocks:
            if len(out) >= limit:
                break
            block = (bstart, seq.add(bstart, len(bdata)))
            if block not in out:
                out.append(block)
        return out[:limit]

    def first_overlap(self, start: int, end: int) -> tuple[int, int] | None:
        """The lowest part of [start, end) already held, or None: a partly duplicated segment
        reports it as its D-SACK block (RFC 2883 section 4)."""
        for bstart, bdata in self._blocks:
            lo = seq.max_seq(start, bstart)
            hi = seq.min_seq(end, seq.add(bstart, len(bdata)))
            if seq.lt(lo, hi):
                return lo, hi
        return None

    def covers(self, start: int, end: int) -> bool:
        """True if [start, end) is already held (a duplicate, for D-SACK)."""
        for bstart, bdata in self._blocks:
            if seq.le(bstart, start) and seq.le(end, seq.add(bstart, len(bdata))):
                return True
        return False

    def clear(self) -> None:
        self._blocks.clear()
        self._recent.clear()
        self.bytes_held = 0
        self.fin_seq = None
