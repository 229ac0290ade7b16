"""The daemon's in-memory trace ring and the `trace` op that reads it.

`RingSink` is a `stack.trace` sink holding the last events with sequence numbers (super-segments cut
to their headers), taken in batches from a Trace with `hold`, and fans new events out to followers;
`trace_op` answers the control protocol's `trace` request from it (a page, the tail, or a live
follow with heartbeats). The trace files
(JSON lines, pcap) are `stack.trace` sinks the daemon opens itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

from lab.node.control import Emit, TraceArgs
from stack.trace import Event, PacketEvent

RING_SIZE = 100_000
RING_SNAPLEN = 128  # octets of a super-segment the ring keeps: the headers, not the payload
RING_WHOLE = 2048  # packets up to this long (every MTU-sized one) are kept whole
FOLLOW_HEARTBEAT = 1.0


class RingSink:
    """The last `size` trace events, for the `trace` op; followers get every new event on their
    queue. An event's sequence number is its position since the daemon started: the ring holds
    events only (no pair per event), and the first one it holds is `next_seq - len(events)`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int = RING_SIZE) -> None:
        self.loop = loop
        self.events: deque[Event] = deque(maxlen=size)
        self.next_seq = 0
        self.followers: set[asyncio.Queue[tuple[int, Event] | None]] = set()
        self.follow_drops = 0
        self._loop_thread = threading.get_ident()

    def write(self, event: Event) -> None:
        self.write_batch([event])

    def write_batch(self, events: list[Event]) -> None:
        kept = [e.truncated(RING_SNAPLEN) if type(e) is PacketEvent and len(e.data) > RING_WHOLE else e
                for e in events]  # 100,000 super-segments would be 6 GB
        first = self.next_seq
        self.next_seq += len(kept)
        self.events.extend(kept)
        if self.followers:
            items = list(enumerate(kept, first))
            if threading.get_ident() == self._loop_thread:
                self._fan_out(items)
            else:
                self.loop.call_soon_threadsafe(self._fan_out, items)

    def _fan_out(self, items: list[tuple[int, Event]]) -> None:
        for queue in self.followers:
            for item in items:
                try:
                    queue.put_nowait(item)
                except asyncio.QueueFull:
                    self.follow_drops += 1

    def since(self, seq: int, kinds: set[str] | None) -> Iterator[tuple[int, Event]]:
        first = self.next_seq - len(self.events)
        skip = max(seq - first, 0)
        for number, event in enumerate(itertools.islice(self.events, skip, None), first + skip):
            if kinds is None or event.kind in kinds:
                yield number, event

    def close(self) -> None:
        for queue in self.followers:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)


def event_dict(seq: int, event: Event) -> dict[str, Any]:
    d = event.to_dict()
    d["seq"] = seq
    return d


async def trace_op(ring: RingSink, args: TraceArgs, emit: Emit, stopping: asyncio.Event) -> dict[str, Any]:
    """The `trace` op: the ring's events since `args.since` (or its tail), or with `follow`, the
    backlog and then every new event until the daemon stops or the client goes away."""
    kinds = set(args.kinds) if args.kinds else None
    if not args.follow and args.tail:
        picked = list(ring.since(args.since, kinds))[-args.limit :]
        return {"events": [event_dict(seq, e) for seq, e in picked], "next": ring.next_seq}
    if not args.follow:
        events: list[dict[str, Any]] = []
        next_seq = max(args.since, ring.next_seq - len(ring.events))
        for seq, event in ring.since(args.since, kinds):
            if len(events) >= args.limit:
                next_seq = seq
                break
            events.append(event_dict(seq, event))
            next_seq = seq + 1
        else:
            next_seq = ring.next_seq
        return {"events": events, "next": next_seq}
    queue: asyncio.Queue[tuple[int, Event] | None] = asyncio.Queue(maxsize=10_000)
    backlog = list(ring.since(args.since, kinds))[-args.limit :]
    ring.followers.add(queue)
    next_seq = ring.next_seq
    try:
        for seq, event in backlog:
            await emit("event", event_dict(seq, event))
        while not stopping.is_set():
            try:
                item = await asyncio.wait_for(queue.get(), FOLLOW_HEARTBEAT)
            except TimeoutError:
                await emit("heartbeat", {"next": next_seq})  # notices a client that went away
                continue
            if item is None:
                break
            seq, event = item
            next_seq = seq + 1
            if kinds is None or event.kind in kinds:
                await emit("event", event_dict(seq, event))
    finally:
        ring.followers.discard(queue)
    return {"events": [], "next": next_seq}
