"""What the trace costs a sending daemon per data segment, in one process and without the stack:
one segment (held as its record, as the daemon's trace holds it) and one PacketEvent, emitted into
the daemon's sinks (the
in-memory ring alone; the ring, JSON lines and pcap, both batched as the daemon batches them,
written to temporary files), and each step apart. Best of several rounds. Needs no root.

    python -m tests.bench.trace_cost [--segments 100000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path

from lab.node.daemon import TRACE_BATCH
from lab.node.ring import RingSink
from stack.trace import PacketEvent, PcapSink, Sink, Trace, segment_event, segment_line
from stack.wire.tcp import ACK, Nop, TcpSegment, Timestamps

CONN = "10.0.0.1:40000>10.0.0.2:5201"
PACKET = bytes(1500)


def _segment(i: int) -> TcpSegment:
    options = (Nop(), Nop(), Timestamps(i, i))
    return TcpSegment(40000, 5201, 1000 + 1448 * i, 5, ACK, 500, PACKET[:1448], options)


def per_segment_us(make_sinks: Callable[[Path], list[Sink]], segments: int, rounds: int) -> float:
    """Microseconds of trace work a segment (building the segments themselves is subtracted)."""
    t0 = time.process_time()
    for i in range(segments):
        _segment(i)
    base = time.process_time() - t0
    best = float("inf")
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            trace = Trace(make_sinks(Path(tmp)), hold=TRACE_BATCH)  # as the daemon holds them
            t0 = time.process_time()
            for i in range(segments):
                now = 1000.0 + i * 1e-5
                trace.segment(now, "out", CONN, _segment(i))
                trace.emit(PacketEvent(now, "out", PACKET))
            trace.close()
            best = min(best, time.process_time() - t0 - base)
    return best / segments * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    loop = asyncio.new_event_loop()

    def ring(_: Path) -> list[Sink]:
        return [RingSink(loop)]

    def files(tmp: Path) -> list[Sink]:
        jsonl = open(tmp / "t.jsonl", "w", buffering=1 << 16)  # noqa: SIM115 (closed with the directory)
        pcap = open(tmp / "t.pcap", "wb")  # noqa: SIM115
        return [RingSink(loop, mirror=jsonl), PcapSink(pcap, batch=TRACE_BATCH)]  # as the daemon has them

    seg = _segment(7)
    packet = PacketEvent(1234.5678, "out", PACKET)
    pcap = PcapSink(io.BytesIO())
    n = 200_000
    steps = {
        "build a SegmentEvent": lambda: segment_event(1.0, "out", CONN, seg),
        "the segment's line (record)": lambda: segment_line(1234.5678, "out", CONN, seg),
        "build the PacketEvent": lambda: PacketEvent(1.0, "out", PACKET),
        "encode its pcap record": lambda: pcap._parts(packet),
    }
    print("trace work per data segment (one segment, held as its record, and one PacketEvent):")
    print(f"  ring only (trace files off)      {per_segment_us(ring, args.segments, args.rounds):6.2f} us")
    print(f"  ring, JSON lines and pcap (on)   {per_segment_us(files, args.segments, args.rounds):6.2f} us")
    for name, step in steps.items():
        print(f"    {name:<28} {timeit.timeit(step, number=n) / n * 1e6:6.2f} us")
    loop.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
