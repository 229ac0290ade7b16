"""lab.viz.load: traces read back into typed records, numbered relative to the ISNs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.viz.load import TraceError, connections, load_connection, load_pair, mirror, read_events
from stack.trace import MemorySink, RttEvent, SegmentEvent, StateChange

A = "10.0.0.1:40000>10.0.0.2:80"
ISN_A, ISN_B = 4_294_967_000, 1000  # the client's ISN wraps around 2**32


def handshake_sink() -> MemorySink:
    sink = MemorySink()
    for e in (
        StateChange(0.0, A, "CLOSED", "SYN_SENT", "call:connect"),
        SegmentEvent(0.0, "out", A, "S", ISN_A, 0, 65535, 0, "mss 1460,wscale 3"),
        SegmentEvent(0.01, "in", A, "S.", ISN_B, ISN_A + 1, 65535, 0, "mss 1460,wscale 7"),
        RttEvent(0.01, A, 0.01, 0.01, 0.005, 0.2),
        StateChange(0.01, A, "SYN_SENT", "ESTABLISHED", "segment:S."),
        SegmentEvent(0.01, "out", A, "P.", ISN_A + 1, ISN_B + 1, 100, 500, ""),
        SegmentEvent(0.02, "in", A, ".", ISN_B + 1, (ISN_A + 501) % (1 << 32), 10, 0,
                     f"sack {(ISN_A + 1001) % (1 << 32)}:{(ISN_A + 2001) % (1 << 32)}"),
    ):
        sink.write(e)
    return sink


def test_relative_numbers_from_the_syns_across_wraparound() -> None:
    c = load_connection(handshake_sink())
    syn, synack, data, ack = c.segments
    assert (syn.seq, syn.ack) == (0, 0)
    assert (synack.seq, synack.ack) == (0, 1)
    assert (data.seq, data.ack, data.len) == (1, 1, 500)
    assert (ack.seq, ack.ack) == (1, 501)
    assert ack.sack == ((1001, 2001),)  # blocks of our data: relative to our ISN
    assert c.isn_local == ISN_A and c.isn_remote == ISN_B


def test_windows_are_scaled_by_the_senders_shift_after_the_handshake() -> None:
    c = load_connection(handshake_sink())
    assert c.segments[0].win == 65535  # never scaled in a SYN
    assert c.segments[2].win == 100 << 3  # ours: wscale 3
    assert c.segments[3].win == 10 << 7  # theirs: wscale 7


def test_labels_read_like_the_textbook() -> None:
    c = load_connection(handshake_sink())
    assert c.segments[0].label() == "SYN seq=0 win=65535"
    assert c.segments[1].label() == "SYN,ACK seq=0 ack=1 win=65535"
    assert c.segments[2].label() == "PSH,ACK seq=1 ack=1 len=500 win=800"


def test_json_lines_round_trip_and_connection_choice(tmp_path: Path) -> None:
    sink = handshake_sink()
    other = "10.0.0.1:40001>10.0.0.2:80"
    sink.write(SegmentEvent(0.5, "out", other, "S", 7, 0, 65535, 0, ""))
    path = tmp_path / "n.trace.jsonl"
    path.write_text("".join(json.dumps(e.to_dict()) + "\n" for e in sink.events)
                    + json.dumps({"kind": "PacketEvent", "time": 0, "direction": "in", "len": 40}) + "\n")
    events = read_events(path.read_text().splitlines())
    assert connections(events) == [A, other]
    assert load_connection(path).conn == A  # the first one by default
    assert load_connection(path, ":40001").conn == other
    assert load_connection(path, mirror(other)).conn == other
    with pytest.raises(TraceError):
        load_connection(path, "10.9.9.9")
    assert load_connection(path).state_names() == ["CLOSED", "SYN_SENT", "ESTABLISHED"]


def test_peer_trace_is_the_mirrored_connection() -> None:
    peer = MemorySink()
    peer.write(SegmentEvent(0.005, "in", mirror(A), "S", ISN_A, 0, 65535, 0, ""))
    _, there = load_pair(handshake_sink(), peer)
    assert there is not None and there.conn == mirror(A)
    assert there.segments[0].seq == 0


def test_retransmission_inferred_from_sequence_numbers() -> None:
    sink = handshake_sink()
    sink.write(SegmentEvent(0.3, "out", A, "P.", ISN_A + 1, ISN_B + 1, 100, 500, ""))
    c = load_connection(sink)
    assert [s.retransmit for s in c.segments if s.direction == "out"] == ["", "", "seq"]
