"""The daemon's in-memory trace ring and the `trace` op that reads it.

`RingSink` is a `stack.trace` sink holding the last events as the JSON lines the `trace` op answers
with, numbered, taken in batches from a Trace with `hold`; it also writes the lines to the node's
trace file when given it (one encoding for both), and fans new events out to followers. `trace_op`
answers the control protocol's `trace` request from it (a page, the tail, or a live follow with
heartbeats). The pcap is a `stack.trace` sink the daemon opens itself.

Why lines and not the event objects: an event is several objects (and a packet's event holds the
packet), and freeing them 100,000 events later touches memory long gone from the CPU's caches. That
was most of what the trace cost a segment (`python -m tests.bench.trace_cost`); a line is one
object, and a packet's line is only what the op shows of it (kind, time, direction, length).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from typing import IO, Any

from lab.node.control import Emit, TraceArgs
from stack.trace import Event, Held, PacketEvent, SegmentEvent, event_line

RING_SIZE = 100_000
FOLLOW_HEARTBEAT = 1.0

Item = tuple[int, str, str]  # (sequence number, kind, JSON line)


class RingSink:
    """The last `size` trace events, for the `trace` op; followers get every new event on their
    queue. An event's sequence number is its position since the daemon started: the first one the
    ring holds is `next_seq - len(lines)`. With `mirror`, each line (but packets': those are in the
    pcap) is also written there, the node's JSON-lines trace file."""

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int = RING_SIZE,
                 mirror: IO[str] | None = None) -> None:
        self.loop = loop
        self.lines: deque[str] = deque(maxlen=size)
        self.kinds: deque[type[Event]] = deque(maxlen=size)
        self.mirror = mirror
        self.next_seq = 0
        self.followers: set[asyncio.Queue[Item | None]] = set()
        self.follow_drops = 0
        self.takes_records = True  # a tuple handed over is a segment's record (Trace.segment)
        self._loop_thread = threading.get_ident()

    def write(self, event: Event) -> None:
        self.write_batch([event])

    def write_batch(self, events: Sequence[Held]) -> None:
        lines = [event_line(e) for e in events]
        kinds = [SegmentEvent if kind is tuple else kind for kind in map(type, events)]
        first = self.next_seq
        self.next_seq += len(lines)
        self.lines.extend(lines)
        self.kinds.extend(kinds)
        if self.mirror is not None:
            kept = zip(kinds, lines, strict=True)
            self.mirror.write("".join([line for kind, line in kept if kind is not PacketEvent]))
        if self.followers:
            numbered = zip(itertools.count(first), kinds, lines)
            items = [(seq, kind.__name__, line) for seq, kind, line in numbered]
            if threading.get_ident() == self._loop_thread:
                self._fan_out(items)
            else:
                self.loop.call_soon_threadsafe(self._fan_out, items)

    def _fan_out(self, items: list[Item]) -> None:
        for queue in self.followers:
            for item in items:
                try:
                    queue.put_nowait(item)
                except asyncio.QueueFull:
                    self.follow_drops += 1

    def since(self, seq: int, kinds: set[str] | None) -> Iterator[Item]:
        first = self.next_seq - len(self.lines)
        skip = max(seq - first, 0)
        held = zip(itertools.count(first + skip), itertools.islice(self.kinds, skip, None),
                   itertools.islice(self.lines, skip, None))
        for seq, kind, line in held:
            if kinds is None or kind.__name__ in kinds:  # Event.kind
                yield seq, kind.__name__, line

    def close(self) -> None:
        for queue in self.followers:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)


def event_dict(seq: int, line: str) -> dict[str, Any]:
    """What the `trace` op sends of one event: its `to_dict()` and its sequence number."""
    d: dict[str, Any] = json.loads(line)
    d["seq"] = seq
    return d


async def trace_op(ring: RingSink, args: TraceArgs, emit: Emit, stopping: asyncio.Event) -> dict[str, Any]:
    """The `trace` op: the ring's events since `args.since` (or its tail), or with `follow`, the
    backlog and then every new event until the daemon stops or the client goes away."""
    kinds = set(args.kinds) if args.kinds else None
    if not args.follow and args.tail:
        picked = list(ring.since(args.since, kinds))[-args.limit :]
        return {"events": [event_dict(seq, line) for seq, _, line in picked], "next": ring.next_seq}
    if not args.follow:
        events: list[dict[str, Any]] = []
        next_seq = max(args.since, ring.next_seq - len(ring.lines))
        for seq, _, line in ring.since(args.since, kinds):
            if len(events) >= args.limit:
                next_seq = seq
                break
            events.append(event_dict(seq, line))
            next_seq = seq + 1
        else:
            next_seq = ring.next_seq
        return {"events": events, "next": next_seq}
    queue: asyncio.Queue[Item | None] = asyncio.Queue(maxsize=10_000)
    backlog = list(ring.since(args.since, kinds))[-args.limit :]
    ring.followers.add(queue)
    next_seq = ring.next_seq
    try:
        for seq, _, line in backlog:
            await emit("event", event_dict(seq, line))
        while not stopping.is_set():
            try:
                item = await asyncio.wait_for(queue.get(), FOLLOW_HEARTBEAT)
            except TimeoutError:
                await emit("heartbeat", {"next": next_seq})  # notices a client that went away
                continue
            if item is None:
                break
            seq, kind, line = item
            next_seq = seq + 1
            if kinds is None or kind in kinds:
                await emit("event", event_dict(seq, line))
    finally:
        ring.followers.discard(queue)
    return {"events": [], "next": next_seq}
