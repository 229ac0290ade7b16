"""The ladder diagram of one TCP connection as SVG (the model: lab.viz.ladder).

Retransmissions are drawn in orange with the reason ("fast", "rto", ...). The SVG gives every
event (departure, arrival, state change) its own row, so labels never overlap; rows are further
apart when more time passed between them (capped), a long idle gap such as TIME_WAIT is drawn as
a break, and the time of each row is written at the left.
"""

from __future__ import annotations

from bisect import bisect_right
from statistics import median

from lab.viz import svg
from lab.viz.ladder import LEFT, RIGHT, TIE, Arrow, Ladder, build_ladder, ladder_caption
from lab.viz.load import TraceSource

FONT_SIZE = 11.0
ROW = 18.0  # smallest distance between two rows: one line of text and some air
MAX_EXTRA = 2 * ROW  # at most this much more for the time that passed
BREAK = 34.0  # height of a break (a long idle gap)
COLORS = {
    "left": "#1c5d99",
    "right": "#2b7a3d",
    "retx": "#e8590c",
    "lost": "#c92a2a",
    "dup": "#999999",
}
STYLE = f"""
text {{ font-family: {svg.FONT}; font-size: {FONT_SIZE:g}px; fill: #222; }}
.time {{ fill: #666; }}
.state {{ font-weight: bold; fill: #5f3dc4; }}
.head {{ font-weight: bold; font-size: 13px; }}
.title {{ font-size: 13px; font-weight: bold; }}
.note {{ fill: #555; }}
.label.retx text {{ fill: {COLORS["retx"]}; font-weight: bold; }}
.label.lost text {{ fill: {COLORS["lost"]}; }}
"""


def _row_positions(lad: Ladder, top: float) -> tuple[list[float], list[tuple[float, float]]]:
    """The y of every point, and the breaks (y, seconds) drawn for long idle gaps."""
    rtt = 2 * lad.one_way if lad.one_way > 0 else 0.0
    if rtt == 0.0:
        gaps = sorted(
            a.arrive - a.depart for a in lad.arrows if a.arrive is not None and a.arrive > a.depart
        )
        rtt = 2 * gaps[0] if gaps else 0.01
    long_gap = max(1.0, 20 * rtt)
    ys: list[float] = []
    breaks: list[tuple[float, float]] = []
    y = top
    prev: float | None = None
    for p in lad.points:
        if prev is not None:
            dt = max(0.0, p.time - prev)
            if dt > long_gap:
                breaks.append((y + ROW / 2 + BREAK / 2, dt))
                y += ROW + BREAK
            else:
                y += ROW + min(MAX_EXTRA, ROW * dt / rtt)
        ys.append(y)
        prev = p.time
    return ys, breaks


def render_ladder_svg(
    source: TraceSource,
    peer: TraceSource | None = None,
    conn: str | None = None,
    names: tuple[str, str] | None = None,
) -> str:
    """The ladder as an SVG document (see the module docstring for how it is laid out)."""
    lad = build_ladder(source, peer, conn, names)
    fs = FONT_SIZE
    labels = {id(a): a.seg.label() + (f"  ({a.retransmit} retransmission)" if a.retransmit else "")
              + ("  LOST" if a.lost else "") for a in lad.arrows}
    label_w = max([svg.text_width(t, fs) for t in labels.values()] + [200.0])
    states = [p.state.new for p in lad.points if p.state is not None] + [s for s in lad.initial if s]
    state_w = max([svg.text_width(s, fs) for s in states] + [svg.text_width("(not traced)", fs)])
    time_w = svg.text_width("00.000000", fs) + 10
    x_left = 10 + time_w + state_w + 20
    gap_w = max(460.0, label_w + 140)
    x_right = x_left + gap_w
    name_w = max(svg.text_width(n, 13) for n in lad.names)
    caption = ladder_caption(lad).split(": ", 1)[1]
    width = max(x_right + max(state_w, name_w / 2) + 30, svg.text_width(caption, fs) + 30)
    top = 104.0
    ys, breaks = _row_positions(lad, top)
    bottom = (ys[-1] if ys else top) + 30
    xs = (x_left, x_right)

    # The y of each arrow's ends (a duplicate leaves with the copy it duplicates).
    y_of: dict[tuple[int, str], float] = {}
    left_at: dict[int, float] = {}  # id(traced out event) -> y of its departure
    for p, y in zip(lad.points, ys, strict=True):
        if p.arrow is not None:
            y_of.setdefault((id(p.arrow), p.what), y)
            if p.what == "depart":
                left_at.setdefault(id(p.arrow.seg.raw), y)
    for a in lad.arrows:
        if a.duplicate and id(a.seg.raw) in left_at:
            y_of[(id(a), "depart")] = left_at[id(a.seg.raw)]
    # Where a lost segment would have arrived: one typical trip (the sender's median) later.
    trip: dict[int, float] = {}
    for side in (LEFT, RIGHT):
        trips = [a.arrive - a.depart for a in lad.arrows
                 if a.sender == side and a.arrive is not None and not a.duplicate]
        trip[side] = median(trips) if trips else lad.one_way
    point_times = [p.time for p in lad.points]

    def y_lost_end(a: Arrow, y1: float) -> float:
        i = bisect_right(point_times, a.depart + trip[a.sender] + TIE)
        return max(y1 + ROW, ys[i - 1] if i > 0 else y1)

    body: list[str] = []
    title = f"TCP {lad.conn}"
    body.append(svg.text(10, 22, title, class_="title"))
    body.append(svg.text(10, 40, caption, class_="note"))
    for side in (LEFT, RIGHT):
        body.append(svg.text(xs[side], 66, lad.names[side], class_="head", text_anchor="middle"))
    body.append(svg.text(10, 66, "time (s)", class_="time"))
    # timelines, broken where time was skipped
    for x in xs:
        y0 = top - ROW
        for by, _ in breaks:
            body.append(svg.line(x, y0, x, by - BREAK / 2 + 4, stroke="#444", stroke_width=1.5))
            body.append(svg.line(x, by - BREAK / 2 + 4, x, by + BREAK / 2 - 4, stroke="#444",
                                 stroke_width=1.5, stroke_dasharray="2 4"))
            y0 = by + BREAK / 2 - 4
        body.append(svg.line(x, y0, x, bottom, stroke="#444", stroke_width=1.5))
    for by, dt in breaks:
        body.append(svg.text(10, by + 4, f"... {dt:.3f} s ...", class_="note"))
    # initial states
    init_r = lad.initial[1] or ("" if lad.both_traced else "(not traced)")
    y_init = top - ROW
    if lad.initial[0]:
        body.append(svg.element("circle", cx=x_left, cy=y_init, r=3.5, fill="#5f3dc4"))
        body.append(svg.text(x_left - 8, y_init + 4, lad.initial[0], class_="state", text_anchor="end"))
    if lad.initial[1]:
        body.append(svg.element("circle", cx=x_right, cy=y_init, r=3.5, fill="#5f3dc4"))
    if init_r:
        body.append(svg.text(x_right + 8, y_init + 4, init_r, class_="state" if lad.initial[1] else "note"))

    # times at the left, once per distinct time
    last_time: float | None = None
    for p, y in zip(lad.points, ys, strict=True):
        if last_time is None or abs(p.time - last_time) > TIE:
            body.append(svg.text(10, y + 4, f"{p.time - lad.origin:.6f}", class_="time"))
            last_time = p.time
    # states beside their timelines
    for p, y in zip(lad.points, ys, strict=True):
        if p.state is None:
            continue
        x = xs[p.side]
        body.append(svg.element("circle", cx=x, cy=y, r=3.5, fill="#5f3dc4"))
        if p.side == LEFT:
            body.append(svg.text(x - 8, y + 4, p.state.new, class_="state", text_anchor="end"))
        else:
            body.append(svg.text(x + 8, y + 4, p.state.new, class_="state"))
    # arrows, then their labels on top of every line
    labels_layer: list[str] = []
    for a in lad.arrows:
        y1 = y_of.get((id(a), "depart"))
        if y1 is None:
            continue
        x1 = xs[a.sender]
        x2 = xs[1 - a.sender]
        direction = 1 if a.sender == LEFT else -1
        kind = "dup" if a.duplicate else "lost" if a.lost else "retx" if a.retransmit else (
            "left" if a.sender == LEFT else "right")
        color = COLORS[kind]
        classes = ["segment", "out" if a.sender == LEFT else "in"]
        if a.retransmit:
            classes.append("retx")
        if a.lost:
            classes.append("lost")
        if a.duplicate:
            classes.append("duplicate")
        parts: list[str] = []
        stroke_w = 2.0 if a.retransmit else 1.3
        dash = "4 3" if (a.arrive_inferred or a.depart_inferred) else None
        if a.lost:
            xm = (x1 + x2) / 2
            ym = (y1 + y_lost_end(a, y1)) / 2
            parts.append(svg.line(x1, y1, xm, ym, stroke=color, stroke_width=stroke_w))
            s = 5.0
            for dy in (s, -s):
                parts.append(svg.line(xm - s, ym - dy, xm + s, ym + dy, stroke=color, stroke_width=2.5,
                                      class_="cross"))
        else:
            y2 = y_of.get((id(a), "arrive"), y_lost_end(a, y1))
            parts.append(svg.line(x1, y1, x2 - direction * 1.5, y2, stroke=color, stroke_width=stroke_w,
                                  stroke_dasharray=dash, marker_end=f"url(#head-{kind})"))
        body.append(svg.group(parts, class_=" ".join(classes), data_seq=a.seg.seq, data_len=a.seg.len))
        if not a.duplicate:
            text = labels[id(a)]
            w = svg.text_width(text, fs)
            lx = x1 + direction * 8
            rx = lx - 2 if a.sender == LEFT else lx - w - 2
            # an opaque back keeps the label readable where other arrows cross it
            labels_layer.append(svg.group([
                svg.element("rect", x=rx, y=y1 - 4 - fs + 1, width=w + 4, height=fs + 3, fill="#fff",
                            fill_opacity=0.88),
                svg.text(lx, y1 - 4, text, text_anchor="start" if a.sender == LEFT else "end"),
            ], class_="label " + " ".join(classes[2:])))
    body.extend(labels_layer)
    # legend
    ly = bottom + 14
    legend = [("left", "segment"), ("retx", "retransmission"), ("lost", "lost (X)"), ("dup", "duplicate")]
    if not lad.both_traced:
        legend = [("left", "segment (dashed: far end's time inferred)"), ("retx", "retransmission")]
    lx = 10.0
    for kind, what in legend:
        body.append(svg.line(lx, ly, lx + 30, ly, stroke=COLORS[kind], stroke_width=1.5,
                             stroke_dasharray=None if lad.both_traced else "4 3",
                             marker_end=f"url(#head-{kind})"))
        body.append(svg.text(lx + 38, ly + 4, what, class_="note"))
        lx += 38 + svg.text_width(what, fs) + 24
    markers = "".join(
        f'<marker id="head-{k}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="9" markerHeight="9" '
        f'markerUnits="userSpaceOnUse" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{c}"/></marker>'
        for k, c in COLORS.items()
    )
    body.insert(0, f"<defs>{markers}</defs>")
    body.insert(0, svg.element("rect", x=0, y=0, width=width, height=ly + 16, fill="#fff"))
    return svg.document(width, ly + 16, body, STYLE)
