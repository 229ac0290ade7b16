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


def test_a_deadline_rearmed_unchanged_costs_one_entry() -> None:
    """A host re-arms every connection's deadline after each of its events: an unchanged deadline
    must not add an entry (duplicates are live, compaction cannot drop them, and a busy host would
    then rebuild its whole heap every few pushes)."""
    table = {f"c{i}": Entry(100.0 + i) for i in range(1000)}
    heap: TimerHeap[str, Entry] = TimerHeap(table)
    for _ in range(50):
        for key, entry in table.items():
            heap.push(key, entry.at)  # type: ignore[arg-type]
    assert len(heap) == 1000
    assert heap.due(100.5, 0.0) == [table["c0"]]


def test_a_deadline_that_moves_away_and_back_still_fires() -> None:
    table = {"a": Entry(1.0), **{f"x{i}": Entry(50.0) for i in range(40)}}
    heap: TimerHeap[str, Entry] = TimerHeap(table)
    heap.push("a", 1.0)
    table["a"].at = 2.0  # moved without a push, then the heap compacts: the 1.0 entry is dropped
    for i in range(100):
        heap.push(f"x{i % 40}", 50.0 + i // 40)
        table[f"x{i % 40}"].at = 50.0 + (i + 40) // 40
    table["a"].at = 1.0
    heap.push("a", 1.0)  # back to 1.0: it must be in the heap again
    assert heap.due(1.0, 0.0) == [table["a"]]
