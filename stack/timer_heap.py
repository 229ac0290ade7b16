"""The host's timer heap: one entry per deadline a connection asked for, keyed by its 4-tuple.

Keyed rather than holding the connection, so a stale entry (the deadline moved, the connection
went, a TIME_WAIT record took its place) keeps nothing alive: an entry is live while what the
host's table holds for its key still has that deadline. Every move of a deadline leaves a stale
entry behind; they are dropped now and then (amortised O(1) a push), so idle connections do not
each keep several.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable, Mapping
from typing import Generic, Protocol, TypeVar


class Timed(Protocol):
    def deadline(self) -> float | None: ...


K = TypeVar("K", bound=Hashable)
V = TypeVar("V", bound=Timed)


class TimerHeap(Generic[K, V]):
    def __init__(self, table: Mapping[K, V]) -> None:
        self._table = table
        self._heap: list[tuple[float, int, K]] = []
        self._tick = itertools.count()

    def __len__(self) -> int:
        """Entries held, stale ones included (what the heap costs)."""
        return len(self._heap)

    def push(self, key: K, when: float) -> None:
        heap = self._heap
        heapq.heappush(heap, (when, next(self._tick), key))
        if len(heap) > 32 + 3 * len(self._table) // 2:
            heap[:] = [t for t in heap if self._live(t[2], t[0]) is not None]
            heapq.heapify(heap)

    def earliest(self) -> float | None:
        """The earliest live deadline, or None."""
        heap = self._heap
        while heap:
            when, _, key = heap[0]
            if self._live(key, when) is not None:
                return when
            heapq.heappop(heap)  # stale entry
        return None

    def due(self, now: float, slack: float) -> list[V]:
        """Take every entry due by now (+ slack): what the table holds for each, once."""
        heap = self._heap
        due: list[V] = []
        while heap and heap[0][0] <= now + slack:
            when, _, key = heapq.heappop(heap)
            entry = self._live(key, when)
            if entry is not None and entry not in due:
                due.append(entry)
        return due

    def _live(self, key: K, when: float) -> V | None:
        entry = self._table.get(key)
        return entry if entry is not None and entry.deadline() == when else None
