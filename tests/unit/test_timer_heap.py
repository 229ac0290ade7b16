"""The host's timer heap (stack.timer_heap): keyed entries, stale ones skipped and compacted."""

from __future__ import annotations

from stack.timer_heap import TimerHeap


class Entry:
    def __init__(self, at: float | None) -> None:
        self.at = at

    def deadline(self) -> float | None:
        return self.at


def test_only_entries_whose_deadline_still_stands_come_due() -> None:
    table = {"a": Entry(2.0), "b": Entry(1.0)}
    heap: TimerHeap[str, Entry] = TimerHeap(table)
    heap.push("a", 2.0)
    heap.push("b", 1.0)
    table["b"].at = 3.0  # moved: its 1.0 entry is stale
    heap.push("b", 3.0)
    assert heap.earliest() == 2.0
    assert heap.due(2.5, 0.0) == [table["a"]]
    del table["b"]  # gone: its entry keeps nothing alive and never fires
    assert heap.earliest() is None
    assert heap.due(10.0, 0.0) == []


def test_an_entry_due_twice_fires_once() -> None:
    table = {"a": Entry(1.0)}
    heap: TimerHeap[str, Entry] = TimerHeap(table)
    heap.push("a", 1.0)
    heap.push("a", 1.0)
    assert heap.due(1.0, 1e-6) == [table["a"]]


def test_stale_entries_are_compacted_as_deadlines_move() -> None:
    table = {"a": Entry(0.0)}
    heap: TimerHeap[str, Entry] = TimerHeap(table)
    for i in range(10_000):
        table["a"].at = float(i)
        heap.push("a", float(i))
    assert len(heap) < 64  # bounded, not one entry per move
    assert heap.earliest() == 9999.0
