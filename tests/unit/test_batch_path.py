"""The per-batch path: one ACK for in-order data read in one batch, and trace sinks that encode
events in batches with exactly the bytes they would have written one at a time."""

from __future__ import annotations

import asyncio
import io
import json

from hypothesis import given
from hypothesis import strategies as st

from lab.node.ring import RingSink, event_dict
from stack.host import Host
from stack.trace import (
    JsonLinesSink,
    MemorySink,
    PacketEvent,
    PcapSink,
    SegmentEvent,
    StateChange,
    Trace,
    event_line,
    segment_event,
    segment_line,
)
from stack.wire.tcp import ACK, Mss, Nop, Sack, TcpSegment, Timestamps

A, B = "10.0.0.1", "10.0.0.2"


def _pair() -> tuple[Host, Host, MemorySink, object]:
    """A connected to B's port 80, handshake done; B's trace in the sink; A's connection."""
    sink = MemorySink()
    a, b = Host(A), Host(B, trace=Trace([sink]))
    b.listen(80)
    conn = a.connect(B, 80, 0.0)
    for _ in range(3):
        for packet in a.take_packets():
            b.receive(packet, 0.0)
        for packet in b.take_packets():
            a.receive(packet, 0.0)
    sink.clear()
    return a, b, sink, conn


def _data_from_a(a: Host, conn: object, n: int) -> list[bytes]:
    conn.nodelay = True  # type: ignore[attr-defined]
    conn.send(bytes(1448 * n), 0.0)  # type: ignore[attr-defined]
    return a.take_packets()


def _pure_acks(sink: MemorySink) -> list[SegmentEvent]:
    return [e for e in sink.segments("out") if e.flags == "." and e.len == 0]


def test_one_ack_for_a_batch_of_in_order_segments() -> None:
    a, b, sink, conn = _pair()
    packets = _data_from_a(a, conn, 6)
    assert len(packets) == 6
    b.receive_batch(packets, 0.001)
    acks = _pure_acks(sink)
    assert len(acks) == 1
    (server,) = b.listeners[80].accept_queue
    assert acks[0].ack == server.rcv_nxt  # it covers all six


def test_packets_received_one_by_one_are_acked_every_second_segment() -> None:
    a, b, sink, conn = _pair()
    for packet in _data_from_a(a, conn, 6):
        b.receive(packet, 0.001)
    assert len(_pure_acks(sink)) == 3


def test_out_of_order_data_in_a_batch_is_still_acked_at_once() -> None:
    """Duplicate ACKs drive fast retransmit: they are never folded into one."""
    a, b, sink, conn = _pair()
    packets = _data_from_a(a, conn, 5)
    b.receive_batch(packets[1:], 0.001)  # the first is lost
    assert len(_pure_acks(sink)) == 4


def _events() -> list[object]:
    return [
        StateChange(0.5, "c", "CLOSED", "SYN_SENT", "call:connect"),
        SegmentEvent(0.5, "out", "c", "S", 1, 0, 65535, 0, "mss 1460"),
        PacketEvent(0.5, "out", bytes(60)),
        SegmentEvent(0.75, "in", "c", ".", 2, 2, 100, 40000, "", gso=1000),
    ]


def test_batched_json_lines_are_the_same_bytes() -> None:
    one, many = io.StringIO(), io.StringIO()
    direct, batched = JsonLinesSink(one), JsonLinesSink(many, batch=3)
    for event in _events():
        direct.write(event)  # type: ignore[arg-type]
        batched.write(event)  # type: ignore[arg-type]
    assert many.getvalue() == "".join(one.getvalue().splitlines(keepends=True)[:3])
    Trace([batched]).flush()
    assert many.getvalue() == one.getvalue()
    assert '"gso":1000' in one.getvalue().splitlines()[-1]


def test_a_json_lines_sink_skips_the_types_it_is_told_to() -> None:
    out = io.StringIO()
    sink = JsonLinesSink(out, batch=2, skip=(PacketEvent,))
    for event in _events():
        sink.write(event)  # type: ignore[arg-type]
    sink.flush()
    kinds = [json.loads(line)["kind"] for line in out.getvalue().splitlines()]
    assert kinds == ["StateChange", "SegmentEvent", "SegmentEvent"]


def test_batched_pcap_is_the_same_bytes_and_keeps_orig_len() -> None:
    one, many = io.BytesIO(), io.BytesIO()
    direct, batched = PcapSink(one), PcapSink(many, batch=10)
    events = [PacketEvent(1.0, "out", bytes(range(40))), PacketEvent(2.0, "in", bytes(100)).truncated(30)]
    for event in events:
        direct.write(event)
        batched.write(event)
    assert len(many.getvalue()) == 24  # only the file header so far
    batched.close()
    assert many.getvalue() == one.getvalue()
    record = one.getvalue()[24 + 16 + 40 :]
    assert int.from_bytes(record[8:12], "little") == 30 and int.from_bytes(record[12:16], "little") == 100


class _Writes(io.BytesIO):
    """A binary stream that notes the size of each write."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def write(self, data: object) -> int:
        self.sizes.append(len(data))  # type: ignore[arg-type]
        return super().write(data)  # type: ignore[arg-type]


def test_a_batched_pcap_writes_tens_of_kilobytes_at_a_time_not_the_whole_batch() -> None:
    """One join of a whole batch (hundreds of KB) was freed and faulted in again every batch."""
    one, many = io.BytesIO(), _Writes()
    direct, batched = PcapSink(one), PcapSink(many, batch=256)
    events = [PacketEvent(float(i), "out", bytes(1500)) for i in range(256)]
    for event in events:
        direct.write(event)
    batched.write_batch(events)
    assert many.getvalue() == one.getvalue()
    assert len(many.sizes) == 1 + 256 * 2 // PcapSink.WRITE_PARTS  # the file header, then the records
    assert max(many.sizes) <= PcapSink.WRITE_PARTS // 2 * (16 + 1500) <= 64 * 1024


def test_the_daemon_ring_keeps_what_the_op_shows_of_a_packet_never_its_octets() -> None:
    loop = asyncio.new_event_loop()
    try:
        ring = RingSink(loop, size=10)
        ring.write(PacketEvent(0.0, "in", bytes(65000), gso=1448))
        ((seq, kind, line),) = list(ring.since(0, None))
        assert (seq, kind) == (0, "PacketEvent") and len(line) < 100
        assert event_dict(seq, line) == {"kind": "PacketEvent", "time": 0.0, "direction": "in", "len": 65000,
                                         "gso": 1448, "seq": 0}
    finally:
        loop.close()


def test_the_ring_writes_the_trace_file_as_a_json_lines_sink_would() -> None:
    """The daemon's ring encodes each event once, for itself and for the node's trace file."""
    loop = asyncio.new_event_loop()
    try:
        mirrored, alone = io.StringIO(), io.StringIO()
        ring = RingSink(loop, mirror=mirrored)
        jsonl = JsonLinesSink(alone, skip=(PacketEvent,))
        for event in _events():
            ring.write(event)  # type: ignore[arg-type]
            jsonl.write(event)  # type: ignore[arg-type]
        assert mirrored.getvalue() == alone.getvalue() and alone.getvalue().count("\n") == 3
        assert [event_dict(seq, line) for seq, _, line in ring.since(0, None)] == [
            {**e.to_dict(), "seq": i} for i, e in enumerate(_events())]  # type: ignore[attr-defined]
    finally:
        loop.close()


def test_segment_lines_are_the_encoders_bytes_even_for_odd_strings() -> None:
    out = io.StringIO()
    sink = JsonLinesSink(out)
    cases = [
        SegmentEvent(1234.5678, "out", "10.0.0.1:4>10.0.0.2:80", ".", 1, 2, 512, 1448, "nop,TS val 1 ecr 2"),
        SegmentEvent(0.0, "in", "a", "S.", 0, 0, 0, 0, "", gso=1448),
        SegmentEvent(1e-7, "in", 'q"uote', "S", 1, 2, 3, 4, "back\\slash"),
        SegmentEvent(5.0, "in", "\u00e9", "S", 1, 2, 3, 4, "\x01"),
        SegmentEvent(1e20, "in", "c", "S", 1, 2, 3, 4, ""),
    ]
    for event in cases:
        sink.write(event)
    expected = "".join(json.dumps(e.to_dict(), separators=(",", ":")) + "\n" for e in cases)
    assert out.getvalue() == expected


def test_packet_lines_are_the_encoders_bytes_too() -> None:
    cases = [
        PacketEvent(1234.5678, "out", bytes(60)),
        PacketEvent(0.0, "in", bytes(64000), gso=1448),
        PacketEvent(1e-7, "in", bytes(100)).truncated(30),
        PacketEvent(2.5, 'o"dd', bytes(1)),
        PacketEvent(1e20, "\u00e9", b""),
    ]
    for event in cases:
        assert event_line(event) == json.dumps(event.to_dict(), separators=(",", ":")) + "\n"


def test_a_packet_line_is_made_anew_when_any_member_changes() -> None:
    """Lines of packets that share a time, direction and length are one line again; a change in
    any of them (or in gso, or a new time of the same value) gives that packet's own line."""
    t1, t2 = 1.5, 2.5
    same_value = float("1.5")
    data = bytes(1500)
    events = [PacketEvent(t1, "in", data), PacketEvent(t1, "in", data), PacketEvent(t1, "in", bytes(52)),
              PacketEvent(t1, "out", bytes(52)), PacketEvent(t1, "out", bytes(52), gso=1448),
              PacketEvent(t2, "out", bytes(52), gso=1448), PacketEvent(same_value, "out", bytes(52)),
              PacketEvent(t1, "in", bytes(60000)).truncated(1500), PacketEvent(t1, "in", data)]
    for event in events:
        assert event_line(event) == json.dumps(event.to_dict(), separators=(",", ":")) + "\n"


class _Recorder:
    """A sink that notes every event it is handed (it has no `accepts`: it takes every type)."""

    def __init__(self) -> None:
        self.got: list[str] = []

    def write(self, event: object) -> None:
        self.got.append(type(event).__name__)

    def close(self) -> None:
        pass


class _PacketRecorder(_Recorder):
    def accepts(self, kind: type) -> bool:
        return issubclass(kind, PacketEvent)


def test_each_event_reaches_exactly_the_sinks_that_accept_its_type() -> None:
    packets_only, everything = _PacketRecorder(), _Recorder()
    trace = Trace([packets_only, everything])
    segment = SegmentEvent(0.0, "out", "c", ".", 1, 1, 10, 0, "")
    for event in (segment, PacketEvent(0.0, "out", bytes(40)), segment):
        trace.emit(event)
    assert packets_only.got == ["PacketEvent"]
    assert everything.got == ["SegmentEvent", "PacketEvent", "SegmentEvent"]
    # A sink added once routes exist gets what follows; a removed one gets nothing more.
    late = _Recorder()
    trace.add(late)
    trace.remove(everything)
    trace.emit(segment)
    assert late.got == ["SegmentEvent"] and everything.got[-1] == "SegmentEvent" and len(everything.got) == 3


def test_the_daemons_sinks_accept_what_they_write() -> None:
    assert not PcapSink(io.BytesIO()).accepts(SegmentEvent) and PcapSink(io.BytesIO()).accepts(PacketEvent)
    jsonl = JsonLinesSink(io.StringIO(), skip=(PacketEvent,))
    assert jsonl.accepts(SegmentEvent) and not jsonl.accepts(PacketEvent)


Held = tuple[Trace, MemorySink, RingSink, io.StringIO, io.BytesIO, asyncio.AbstractEventLoop]


def _held_trace(wake: list[int]) -> Held:
    """A trace holding up to 10 events for a ring, JSON lines and pcap, with a MemorySink beside."""
    loop = asyncio.new_event_loop()
    memory, ring, text, binary = MemorySink(), RingSink(loop, size=3), io.StringIO(), io.BytesIO()
    sinks = [memory, ring, JsonLinesSink(text, skip=(PacketEvent,)), PcapSink(binary)]
    trace = Trace(sinks, hold=10)  # type: ignore[arg-type]
    trace.wake = lambda: wake.append(len(memory.events))
    return trace, memory, ring, text, binary, loop


def test_a_holding_trace_hands_events_over_in_batches_and_in_order() -> None:
    wakes: list[int] = []
    trace, memory, ring, text, binary, loop = _held_trace(wakes)
    try:
        events = _events()
        for event in events:
            trace.emit(event)  # type: ignore[arg-type]
        assert memory.events == events  # a sink without write_batch gets each event at once
        assert ring.next_seq == 0 and text.getvalue() == "" and len(binary.getvalue()) == 24
        assert wakes == [1]  # asked once, when the first event was held
        trace.drain()
        assert ring.next_seq == 4
        assert [json.loads(line)["kind"] for line in text.getvalue().splitlines()] == [
            "StateChange", "SegmentEvent", "SegmentEvent"]
        assert len(binary.getvalue()) == 24 + 16 + 60  # the one packet
        trace.emit(events[0])  # type: ignore[arg-type]
        assert wakes == [1, 5]  # held again: asked again
    finally:
        loop.close()


def test_a_holding_trace_drains_when_full_and_on_flush() -> None:
    wakes: list[int] = []
    trace, _, ring, text, _, loop = _held_trace(wakes)
    try:
        event = _events()[0]
        for _ in range(10):
            trace.emit(event)  # type: ignore[arg-type]
        assert ring.next_seq == 10 and len(text.getvalue().splitlines()) == 10  # the tenth drained all
        trace.emit(event)  # type: ignore[arg-type]
        trace.flush()
        assert ring.next_seq == 11 and len(text.getvalue().splitlines()) == 11
    finally:
        loop.close()


def test_the_ring_numbers_events_past_what_it_still_holds() -> None:
    loop = asyncio.new_event_loop()
    try:
        ring = RingSink(loop, size=3)
        events = [StateChange(float(i), "c", "A", "B", "x") for i in range(5)]
        ring.write_batch(events[:2])
        ring.write_batch(events[2:])
        assert ring.next_seq == 5
        lines = [event_line(e) for e in events]
        kind = "StateChange"
        assert list(ring.since(0, None)) == [(2, kind, lines[2]), (3, kind, lines[3]), (4, kind, lines[4])]
        assert list(ring.since(4, None)) == [(4, kind, lines[4])]
        assert list(ring.since(9, None)) == []
        assert list(ring.since(0, {"SegmentEvent"})) == []
    finally:
        loop.close()


def test_ring_followers_get_each_event_with_its_number() -> None:
    loop = asyncio.new_event_loop()
    try:
        ring = RingSink(loop, size=2)
        queue: asyncio.Queue[tuple[int, object] | None] = asyncio.Queue()
        ring.followers.add(queue)  # type: ignore[arg-type]
        events = [StateChange(float(i), "c", "A", "B", "x") for i in range(3)]
        ring.write(events[0])
        ring.write_batch(events[1:])
        expected = [(i, "StateChange", event_line(e)) for i, e in enumerate(events)]
        assert [queue.get_nowait() for _ in range(3)] == expected
    finally:
        loop.close()


def test_a_type_no_sink_takes_is_not_held() -> None:
    wakes: list[int] = []
    trace = Trace([PcapSink(io.BytesIO())], hold=10)
    trace.wake = lambda: wakes.append(1)
    trace.emit(SegmentEvent(0.0, "out", "c", ".", 1, 1, 10, 0, ""))
    trace.segment(0.0, "out", "c", TcpSegment(1, 2, 3, 4, ACK, 5))  # nor a segment handed over whole
    assert wakes == []
    trace.emit(PacketEvent(0.0, "out", bytes(40)))
    assert wakes == [1]


def test_events_sharing_a_time_and_then_not_encode_as_the_encoder_does() -> None:
    """The encoder and the pcap sink spell each time once per step; a new time is spelled anew."""
    t1, t2 = 1000.000001, 1000.25
    events = [SegmentEvent(t1, "out", "c", ".", 1, 1, 10, 1448, ""), PacketEvent(t1, "out", bytes(60)),
              SegmentEvent(t2, "out", "c", ".", 2, 1, 10, 1448, ""), PacketEvent(t2, "out", bytes(60)),
              PacketEvent(t1, "in", bytes(60))]
    for event in events:
        assert event_line(event) == json.dumps(event.to_dict(), separators=(",", ":")) + "\n"
    out = io.BytesIO()
    sink = PcapSink(out, time_offset=0.5)
    for event in events:
        sink.write(event)
    data, records, offset = out.getvalue(), [], 24
    while offset < len(data):
        sec, usec, caplen = (int.from_bytes(data[offset + i : offset + i + 4], "little") for i in (0, 4, 8))
        records.append((sec, usec))
        offset += 16 + caplen
    assert records == [(1000, 500001), (1000, 750000), (1000, 500001)]


def test_pcap_records_of_one_time_carry_each_packets_own_lengths() -> None:
    """Packets of one step share a record header only while their lengths do too."""
    t = 7.25
    events = [PacketEvent(t, "in", bytes(1500)), PacketEvent(t, "in", bytes(1500)),
              PacketEvent(t, "in", bytes(52)), PacketEvent(t, "in", bytes(3000)).truncated(1500),
              PacketEvent(t, "in", bytes(1500))]
    one, many = io.BytesIO(), io.BytesIO()
    direct, batched = PcapSink(one), PcapSink(many, batch=100)
    for event in events:
        direct.write(event)
    batched.write_batch(events)
    batched.flush()
    assert many.getvalue() == one.getvalue()
    data, lengths, offset = one.getvalue(), [], 24
    while offset < len(data):
        caplen, length = (int.from_bytes(data[offset + i : offset + i + 4], "little") for i in (8, 12))
        lengths.append((caplen, length))
        offset += 16 + caplen
    assert lengths == [(1500, 1500), (1500, 1500), (52, 52), (1500, 3000), (1500, 1500)]


# -- segments held as records (Trace.segment) -----------------------------------------------------

u32 = st.integers(0, 0xFFFFFFFF)
_timestamps = st.builds(Timestamps, u32, u32)
_options = st.one_of(
    _timestamps.map(lambda ts: (Nop(), Nop(), ts)),  # the usual layout, formatted directly
    st.tuples(_timestamps, st.just(Nop()), st.just(Nop())),  # three options, but not that layout
    st.just(()),
    st.tuples(st.builds(Mss, st.integers(0, 0xFFFF)), st.just(Nop()), _timestamps),
    st.builds(lambda ts, blocks: (Nop(), Nop(), ts, Nop(), Nop(), Sack(blocks)), _timestamps,
              st.lists(st.tuples(u32, u32), min_size=1, max_size=3).map(tuple)),
)
_segments = st.builds(TcpSegment, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), u32, u32,
                      st.integers(0, 0x1FF), st.integers(0, 0xFFFF), st.binary(max_size=64), _options)
_times = st.one_of(st.floats(0, 1e22, allow_nan=False), st.sampled_from([0.0, 1e-7, 1234.5678, 1e20]),
                   st.integers(0, 10**6))
_odd_text = st.sampled_from(["in", "out", "10.0.0.1:4>10.0.0.2:80", "[fd00::1]:4>[fd00::2]:80",
                             'q"uote', "back\\slash", "\u00e9", "\x01", ""])


@given(_times, _odd_text, _odd_text, _segments, st.sampled_from([0, 1448, 65000]))
def test_a_segments_line_from_its_record_is_its_events_line(now: float, direction: str, cid: str,
                                                             seg: TcpSegment, gso: int) -> None:
    event = segment_event(now, direction, cid, seg, gso)
    assert segment_line(now, direction, cid, seg, gso) == event_line(event)
    assert event_line((now, direction, cid, seg, gso)) == event_line(event)
    assert event_line(event) == json.dumps(event.to_dict(), separators=(",", ":")) + "\n"


def _data_segment(i: int) -> TcpSegment:
    return TcpSegment(40000, 80, 1000 + 1448 * i, 7, ACK, 512, bytes(1448), (Nop(), Nop(), Timestamps(i, 5)))


def _daemon_sinks(loop: asyncio.AbstractEventLoop) -> tuple[RingSink, io.StringIO, io.BytesIO, list[object]]:
    """The daemon's sinks: the ring mirroring to a JSON-lines file, and a pcap."""
    text, binary = io.StringIO(), io.BytesIO()
    ring = RingSink(loop, mirror=text)
    return ring, text, binary, [ring, PcapSink(binary, batch=4)]


def test_held_segment_records_write_what_their_events_would() -> None:
    """The daemon's trace holds segments as records; the ring, its file and the pcap come out
    the same as from events, interleaved with other events in their order."""
    loop = asyncio.new_event_loop()
    try:
        outputs = []
        for as_records in (True, False):
            ring, text, binary, sinks = _daemon_sinks(loop)
            trace = Trace(sinks, hold=5)  # type: ignore[arg-type]
            assert trace.segment_records
            for i in range(12):
                seg = _data_segment(i)
                if as_records:
                    trace.segment(float(i), "out", "c", seg)
                else:
                    trace.emit(segment_event(float(i), "out", "c", seg))
                trace.emit(PacketEvent(float(i), "out", bytes(60)))
                if i == 6:
                    trace.emit(StateChange(float(i), "c", "ESTABLISHED", "FIN_WAIT_1", "call:close"))
            trace.close()
            outputs.append((list(ring.since(0, None)), text.getvalue(), binary.getvalue()))
        assert outputs[0] == outputs[1]
        items, lines, _ = outputs[0]
        assert [kind for _, kind, _ in items][:3] == ["SegmentEvent", "PacketEvent", "SegmentEvent"]
        assert lines.count("SegmentEvent") == 12 and "StateChange" in lines.splitlines()[7]
    finally:
        loop.close()


def test_a_sink_that_wants_events_gets_segments_as_events() -> None:
    """Beside a MemorySink (a sink without records) segments are built as events, for every sink."""
    loop = asyncio.new_event_loop()
    try:
        memory = MemorySink()
        _, text, _, sinks = _daemon_sinks(loop)
        trace = Trace([*sinks, memory], hold=5)  # type: ignore[list-item]
        assert not trace.segment_records
        trace.segment(1.0, "in", "c", _data_segment(0), 0)
        trace.close()
        assert memory.segments() == [segment_event(1.0, "in", "c", _data_segment(0))]
        assert text.getvalue() == event_line(memory.events[0])
        filtered = Trace([JsonLinesSink(io.StringIO(), kinds=lambda e: True, batch=5)], hold=5)
        assert not filtered.segment_records  # its filter reads events
        trace.remove(memory)
        assert trace.segment_records
    finally:
        loop.close()
