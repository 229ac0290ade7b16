"""The host's timer heap: one entry per deadline a connection asked for, keyed by its 4-tuple.

Keyed rather than holding the connection, so a stale entry (the deadline moved, the connection
went, a TIME_WAIT record took its place) keeps nothing alive: an entry is live while what the
host's table holds for its key still has that deadline. Every move of a deadline leaves a stale
entry behind; they are dropped now and then (amortised O(1) a push), so idle connections do not
each keep several. A key's deadline pushed again unchanged (the host re-arms after every event)
is not pushed twice: such duplicates are live, no compaction could drop them, and a busy host
would compact its whole heap every few pushes.
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
        self._pushed: dict[K, float] = {}  # key -> a deadline it has an entry for

    def __len__(self) -> int:
        """Entries held, stale ones included (what the heap costs)."""
        return len(self._heap)

    def push(self, key: K, when: float) -> None:
        if self._pushed.get(key) == when:
            return
        self._pushed[key] = when
        heap = self._heap
        heapq.heappush(heap, (when, next(self._tick), key))
        if len(heap) > 32 + 3 * len(self._table) // 2:
            self._compact()

    def _compact(self) -> None:
        """Keep the live entries, the first pushed of each key (so the firing order stays)."""
        first: dict[K, tuple[float, int, K]] = {}
        for t in self._heap:
            if self._live(t[2], t[0]) is not None and (t[2] not in first or t[1] < first[t[2]][1]):
                first[t[2]] = t
        self._heap = list(first.values())
        heapq.heapify(self._heap)
        self._pushed = {key: t[0] for key, t in first.items()}

    def _popped(self, key: K, when: float) -> None:
        if self._pushed.get(key) == when:
            del self._pushed[key]

    def earliest(self) -> float | None:
        """The earliest live deadline, or None."""
        heap = self._heap
        while heap:
            when, _, key = heap[0]
            if self._live(key, when) is not None:
                return when
            heapq.heappop(heap)  # stale entry
            self._popped(key, when)
        return None

    def due(self, now: float, slack: float) -> list[V]:
        """Take every entry due by now (+ slack): what the table holds for each, once."""
        heap = self._heap
        due: list[V] = []
        while heap and heap[0][0] <= now + slack:
            when, _, key = heapq.heappop(heap)
            self._popped(key, when)
            entry = self._live(key, when)
            if entry is not None and entry not in due:
                due.append(entry)
        return due

    def _live(self, key: K, when: float) -> V | None:
        entry = self._table.get(key)
        return entry if entry is not None and entry.deadline() == when else None
