"""lab.viz.ladder: the sequence diagram, as text and SVG, of the sim demo and of a lossy exchange."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from functools import cache

from lab.viz import DemoTraces, demo_traces
from lab.viz.ladder import build_ladder
from lab.viz.ladder_svg import render_ladder_svg
from lab.viz.ladder_text import render_ladder_text
from lab.viz.load import load_connection
from stack.trace import MemorySink, SegmentEvent, StateChange

SVG = "{http://www.w3.org/2000/svg}"
CLIENT_STATES = ["CLOSED", "SYN_SENT", "ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2", "TIME_WAIT", "CLOSED"]
SERVER_STATES = ["LISTEN", "SYN_RECEIVED", "ESTABLISHED", "CLOSE_WAIT", "LAST_ACK", "CLOSED"]


@cache
def demo() -> DemoTraces:
    return demo_traces()


def in_order(lines: list[str], wanted: list[str], column: slice) -> bool:
    cells = [line[column].strip() for line in lines]
    i = 0
    for cell in cells:
        if i < len(wanted) and cell == wanted[i]:
            i += 1
    return i == len(wanted)


def test_text_ladder_of_the_demo_has_the_handshake_and_both_state_columns() -> None:
    client, server = demo()
    text = render_ladder_text(client, server)
    lines = text.splitlines()
    handshake = [line for line in lines if line.count("|") == 2 and "SYN" in line.split("|")[1]]
    assert "SYN seq=0 win=65535 ---" in handshake[0] and handshake[0].split("|")[1].rstrip().endswith(">")
    assert "<---" in handshake[1] and "SYN,ACK seq=0 ack=1 win=65535" in handshake[1]
    third = lines[lines.index(handshake[1]) + 2]  # ESTABLISHED, then the ACK
    assert "ACK seq=1 ack=1" in third and third.split("|")[1].rstrip().endswith(">")
    assert any("FIN,ACK" in line and "--->" in line for line in lines)
    assert any("FIN,ACK" in line and "<---" in line for line in lines)
    left = [line.split("|")[0] for line in lines[1:] if "|" in line]
    right = [line.split("|")[2] for line in lines[1:] if "|" in line]
    assert in_order(left, CLIENT_STATES, slice(10, None))
    assert in_order(right, SERVER_STATES, slice(None))
    assert "LOST" not in text  # no loss on the demo's link


def test_one_trace_infers_the_far_end() -> None:
    client, _ = demo()
    text = render_ladder_text(client)
    assert "(not traced)" in text and "inferred" in text
    lad = build_ladder(client)
    assert not lad.both_traced and abs(lad.one_way - 0.005) < 1e-9
    assert all(a.arrive is not None for a in lad.arrows)


def parse(doc: str) -> ET.Element:
    return ET.fromstring(doc)


def segment_groups(root: ET.Element) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if "segment" in (g.get("class") or "").split()]


def test_svg_is_well_formed_with_one_arrow_per_segment_and_the_states() -> None:
    client, server = demo()
    root = parse(render_ladder_svg(client, server))
    segments = len(load_connection(client).segments) + len(load_connection(server).segments)
    # every segment is traced twice (out at one end, in at the other) and drawn once
    groups = segment_groups(root)
    assert len(groups) == segments // 2
    assert all(g.find(f"{SVG}line") is not None for g in groups)
    states = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "state"]
    for name in set(CLIENT_STATES + SERVER_STATES):
        assert name in states
    assert states.count("ESTABLISHED") == 2 and states.count("CLOSED") == 3


def test_state_sits_at_the_height_of_its_change() -> None:
    client, server = demo()
    root = parse(render_ladder_svg(client, server))
    ys = {t.text: float(t.get("y", "0")) for t in root.iter(f"{SVG}text") if t.get("class") == "state"}
    assert ys["SYN_SENT"] < ys["SYN_RECEIVED"] < ys["FIN_WAIT_1"] < ys["CLOSE_WAIT"] < ys["TIME_WAIT"]
    syn = next(g for g in segment_groups(root) if g.get("data-seq") == "0")
    line = syn.find(f"{SVG}line")
    assert line is not None
    # the SYN leaves after SYN_SENT is written and arrives before SYN_RECEIVED
    assert ys["SYN_SENT"] < float(line.get("y1", "0")) < float(line.get("y2", "0")) < ys["SYN_RECEIVED"]


C = "10.0.0.1:40000>10.0.0.2:80"
S = "10.0.0.2:80>10.0.0.1:40000"


def lossy_pair() -> tuple[MemorySink, MemorySink]:
    """Client sends two data segments; the first never reaches the server and is resent."""
    client, server = MemorySink(), MemorySink()
    for sink, e in [
        (client, StateChange(0.0, C, "CLOSED", "SYN_SENT", "call:connect")),
        (client, SegmentEvent(0.0, "out", C, "S", 100, 0, 65535, 0, "TS val 1")),
        (server, SegmentEvent(0.005, "in", S, "S", 100, 0, 65535, 0, "TS val 1")),
        (server, StateChange(0.005, S, "LISTEN", "SYN_RECEIVED", "segment:S")),
        (server, SegmentEvent(0.005, "out", S, "S.", 900, 101, 65535, 0, "TS val 2")),
        (client, SegmentEvent(0.01, "in", C, "S.", 900, 101, 65535, 0, "TS val 2")),
        (client, StateChange(0.01, C, "SYN_SENT", "ESTABLISHED", "segment:S.")),
        (client, SegmentEvent(0.01, "out", C, ".", 101, 901, 65535, 100, "TS val 3")),
        (client, SegmentEvent(0.01, "out", C, ".", 201, 901, 65535, 100, "TS val 3")),
        (server, SegmentEvent(0.015, "in", S, ".", 201, 901, 65535, 100, "TS val 3")),
        (server, StateChange(0.015, S, "SYN_RECEIVED", "ESTABLISHED", "segment:.")),
        (server, SegmentEvent(0.015, "out", S, ".", 901, 101, 65535, 0, "TS val 4,sack 201:301")),
        (client, SegmentEvent(0.02, "in", C, ".", 901, 101, 65535, 0, "TS val 4,sack 201:301")),
        (client, SegmentEvent(0.02, "out", C, ".", 101, 901, 65535, 100, "TS val 5")),
        (server, SegmentEvent(0.025, "in", S, ".", 101, 901, 65535, 100, "TS val 5")),
    ]:
        sink.write(e)
    return client, server


def test_a_lost_segment_is_drawn_lost_and_its_retransmission_highlighted() -> None:
    client, server = lossy_pair()
    lad = build_ladder(client, server)
    lost = [a for a in lad.arrows if a.lost]
    assert [(a.seg.seq, a.seg.len) for a in lost] == [(1, 100)]
    retx = [a for a in lad.arrows if a.retransmit]
    assert [(a.seg.seq, a.arrive) for a in retx] == [(1, 0.025)]

    text = render_ladder_text(client, server)
    lost_line = next(line for line in text.splitlines() if "LOST" in line)
    assert "seq=1 " in lost_line and "X" in lost_line and ">" not in lost_line.split("|")[1]
    assert any("====>" in line and "retransmission" in line for line in text.splitlines())

    root = parse(render_ladder_svg(client, server))
    groups = segment_groups(root)
    assert len(groups) == 6
    lost_groups = [g for g in groups if "lost" in (g.get("class") or "").split()]
    assert len(lost_groups) == 1 and lost_groups[0].get("data-seq") == "1"
    lines = lost_groups[0].findall(f"{SVG}line")
    assert len(lines) == 3  # the stub and the two strokes of the cross
    stub = lines[0]
    assert all(line.get("marker-end") is None for line in lines)  # no arrowhead: it never arrived
    xs = sorted(float(line.get(k, "0")) for line in [stub] for k in ("x1", "x2"))
    full = next(g for g in groups if g.get("data-seq") == "101").find(f"{SVG}line")
    assert full is not None
    assert xs[1] - xs[0] < abs(float(full.get("x2", "0")) - float(full.get("x1", "0"))) * 0.6
    retx_groups = [g for g in groups if "retx" in (g.get("class") or "").split()]
    assert len(retx_groups) == 1 and retx_groups[0].get("data-seq") == "1"


def test_sim_loss_shows_lost_segments_and_retransmissions() -> None:
    client, server = demo_traces(seed=3, body_bytes=30_000, loss=0.05)
    lad = build_ladder(server, client)
    assert any(a.lost for a in lad.arrows)
    assert any(a.retransmit for a in lad.arrows)
    root = parse(render_ladder_svg(server, client))
    assert any("lost" in (g.get("class") or "") for g in segment_groups(root))


def test_a_copy_received_twice_is_one_segment_and_one_duplicate() -> None:
    client, server = lossy_pair()
    server.write(SegmentEvent(0.026, "in", S, ".", 101, 901, 65535, 100, "TS val 5"))
    lad = build_ladder(client, server)
    dups = [a for a in lad.arrows if a.duplicate]
    assert [(a.seg.seq, a.arrive) for a in dups] == [(1, 0.026)]
    root = parse(render_ladder_svg(client, server))
    assert sum("duplicate" in (g.get("class") or "") for g in segment_groups(root)) == 1
    assert render_ladder_text(client, server).count("seq=1 ack=1 len=100") == 2  # original + resend
