"""The send and receive buffers' octets: a FIFO appended at the end, dropped from the front and
read anywhere in between.

A `bytearray` used this way (`buf += data`, `del buf[:n]`) copies its whole content each time it
grows past its headroom, because CPython then moves the data back to the start of a new block:
with a few megabytes queued (an autotuned buffer) every octet was copied eight times, 15 µs per
64 KB appended and taken. Here each append keeps the data as it came (one `bytes` chunk, no copy
when it is `bytes` already) and a read copies the octets it returns once.
"""

from __future__ import annotations

from bisect import bisect_right

# Dropped chunks are forgotten in one go once this many (and half the list) are dead.
_COMPACT_AFTER = 64


class ByteQueue:
    """Octets at positions [0, len) counted from the front; see the module docstring."""

    __slots__ = ("_chunks", "_end", "_first", "_head", "_starts")

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._starts: list[int] = []  # where each chunk's first octet lies (absolute)
        self._first = 0  # index of the first chunk still holding queued octets
        self._head = 0  # absolute position of the first queued octet
        self._end = 0  # absolute position just past the last

    def __len__(self) -> int:
        return self._end - self._head

    def __bool__(self) -> bool:
        return self._end > self._head

    def __bytes__(self) -> bytes:
        return self.read(0, len(self))

    def append(self, data: bytes | bytearray | memoryview) -> None:
        """Queue data at the end (copied unless it is `bytes`, which cannot change under us)."""
        if data:
            self._chunks.append(data if type(data) is bytes else bytes(data))
            self._starts.append(self._end)
            self._end += len(data)

    def read(self, offset: int, n: int) -> bytes:
        """A copy of the (up to) n octets from `offset` on, without dropping them."""
        start = self._head + offset
        stop = min(start + n, self._end)
        if start >= stop:
            return b""
        chunks, starts = self._chunks, self._starts
        i = bisect_right(starts, start, self._first) - 1
        chunk, at = chunks[i], start - starts[i]
        if stop - starts[i] <= len(chunk):  # within one chunk: one slice
            return chunk if at == 0 and stop - start == len(chunk) else chunk[at : stop - starts[i]]
        parts: list[bytes | memoryview] = [memoryview(chunk)[at:]]
        i += 1
        while starts[i] + len(chunks[i]) < stop:
            parts.append(chunks[i])
            i += 1
        parts.append(memoryview(chunks[i])[: stop - starts[i]])
        return b"".join(parts)

    def drop(self, n: int) -> None:
        """Forget the first n octets (all of them if there are fewer)."""
        head = self._head = min(self._head + n, self._end)
        chunks, starts, first = self._chunks, self._starts, self._first
        while first < len(chunks) and starts[first] + len(chunks[first]) <= head:
            chunks[first] = b""  # free the octets now; the slot goes at the next compaction
            first += 1
        if first >= _COMPACT_AFTER and 2 * first >= len(chunks):
            del chunks[:first], starts[:first]
            first = 0
        self._first = first

    def take(self, n: int) -> bytes:
        """Read and drop the (up to) n first octets."""
        data = self.read(0, n)
        self.drop(len(data))
        return data

    def clear(self) -> None:
        self._chunks.clear()
        self._starts.clear()
        self._first = 0
        self._head = self._end
