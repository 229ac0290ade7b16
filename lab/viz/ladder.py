"""The sequence (ladder) diagram of one TCP connection, as text for terminals or as SVG.

The two ends are vertical timelines, time running down; every segment is an arrow from the
sender's line to the receiver's, labelled with its flags, relative seq and ack, length (when not
zero) and window (in octets, scaled), and each end's state is written beside its line where it
changes. The left end is the traced host, the right end its peer.

Where the times come from:

- Both ends' traces (`peer=`, e.g. the two nodes of a lab or the two simulated hosts): a segment
  leaves the sender's line when the sender traced it out and reaches the receiver's line when the
  receiver traced it in; the two are matched by their raw header fields and options (the
  timestamp option makes a retransmission distinct from its original; without it, an arrival is
  matched to the latest copy sent before it). A segment the sender sent and the receiver never
  received was lost: its arrow stops half-way with a cross. A copy received twice is drawn a
  second time, grey and without a label. Both traces must share a clock (the simulated network's
  virtual clock; lab nodes on one machine share CLOCK_MONOTONIC).
- One trace: the far end is inferred. Its arrivals and departures are placed one estimated one-way
  delay (half the smallest RTT sample in the trace, else half the handshake's round trip) after
  or before the traced host's times; its states are not known, and losses cannot be told
  (retransmissions still can, from the trace's Retransmit events and from sequence numbers).

Retransmissions are drawn in orange with the reason ("fast", "rto", ...). The SVG gives every
event (departure, arrival, state change) its own row, so labels never overlap; rows are further
apart when more time passed between them (capped), a long idle gap such as TIME_WAIT is drawn as
a break, and the time of each row is written at the left. The text form has one row per segment
(at its departure: at its arrival at the traced host when the departure is inferred) and one per
state change.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass, field
from statistics import median

from lab.viz import svg
from lab.viz.load import Connection, Segment, TraceSource, load_pair
from stack.trace import SegmentEvent, StateChange

LEFT, RIGHT = 0, 1
TIE = 1e-9


@dataclass(eq=False)
class Arrow:
    """One segment on its way from one end to the other."""

    seg: Segment  # as the sender traced it (as the receiver did when the sender's trace lacks it)
    sender: int  # LEFT | RIGHT
    depart: float
    arrive: float | None  # None: lost
    depart_inferred: bool = False
    arrive_inferred: bool = False
    duplicate: bool = False  # a second arrival of a segment already drawn

    @property
    def lost(self) -> bool:
        return self.arrive is None

    @property
    def retransmit(self) -> str:
        return self.seg.retransmit


@dataclass(eq=False)
class Point:
    """Something that happens on one timeline: a departure, an arrival or a state change."""

    time: float
    side: int
    what: str  # "depart" | "arrive" | "state"
    arrow: Arrow | None = None
    state: StateChange | None = None
    inferred: bool = False


@dataclass
class Ladder:
    """What both diagrams draw."""

    names: tuple[str, str]  # the two ends, "ip:port" (or given names)
    conn: str
    both_traced: bool
    one_way: float  # the one-way delay used to infer the far end (0 with both traces)
    initial: tuple[str | None, str | None]  # each end's state before its first change
    arrows: list[Arrow] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)  # both timelines, merged in time order
    origin: float = 0.0  # times are shown relative to this


# -- building the model -----------------------------------------------------------------------


def estimate_one_way(c: Connection) -> float:
    """Half the smallest RTT the trace shows: RTT samples, else the handshake's round trip."""
    samples = [r.sample for r in c.rtt if r.sample > 0]
    if samples:
        return min(samples) / 2
    syn_out = next((s for s in c.segments if s.direction == "out" and "S" in s.flags), None)
    syn_in = next((s for s in c.segments if s.direction == "in" and "S" in s.flags), None)
    if syn_out and syn_in:
        return abs(syn_in.time - syn_out.time) / 2
    return 0.0


def _match(senders: list[Segment], receivers: list[Segment], sender: int, one_way: float) -> list[Arrow]:
    """Arrows for the segments `senders` sent (out) and `receivers` got (in)."""
    departures: dict[tuple[str, int, int, int, int, str], list[Segment]] = defaultdict(list)
    for s in senders:
        departures[s.match_key].append(s)
    arrived: dict[int, float] = {}  # id(sent segment) -> arrival time
    extra: list[Arrow] = []
    for r in receivers:
        sent = [s for s in departures.get(r.match_key, []) if s.time <= r.time + TIE] or departures.get(
            r.match_key, []
        )
        free = [s for s in sent if id(s) not in arrived]
        if free:
            arrived[id(free[-1])] = r.time  # the latest copy sent before it arrived
        elif sent:
            extra.append(Arrow(sent[-1], sender, sent[-1].time, r.time, duplicate=True))
        else:  # not in the sender's trace (it started later): infer the departure
            extra.append(Arrow(r, sender, r.time - one_way, r.time, depart_inferred=True))
    arrows = [Arrow(s, sender, s.time, arrived.get(id(s))) for s in senders]
    return arrows + extra


def build_ladder(
    source: TraceSource,
    peer: TraceSource | None = None,
    conn: str | None = None,
    names: tuple[str, str] | None = None,
) -> Ladder:
    here, there = load_pair(source, peer, conn)
    out_here = [s for s in here.segments if s.direction == "out"]
    in_here = [s for s in here.segments if s.direction == "in"]
    if there is not None:
        one_way = 0.0
        out_there = [s for s in there.segments if s.direction == "out"]
        in_there = [s for s in there.segments if s.direction == "in"]
        arrows = _match(out_here, in_there, LEFT, estimate_one_way(here))
        arrows += _match(out_there, in_here, RIGHT, estimate_one_way(there))
    else:
        one_way = estimate_one_way(here)
        arrows = [Arrow(s, LEFT, s.time, s.time + one_way, arrive_inferred=True) for s in out_here]
        arrows += [Arrow(s, RIGHT, s.time - one_way, s.time, depart_inferred=True) for s in in_here]
    ladder = Ladder(
        names=names or (here.local, here.remote),
        conn=here.conn,
        both_traced=there is not None,
        one_way=one_way,
        initial=(here.initial_state, there.initial_state if there is not None else None),
        arrows=arrows,
    )
    ladder.points = _timeline_points(here, there, arrows)
    times = [p.time for p in ladder.points]
    ladder.origin = min(times) if times else 0.0
    return ladder


def _side_points(c: Connection | None, side: int, arrows: list[Arrow]) -> list[Point]:
    """One timeline's points: the traced ones in trace order, the inferred ones placed by time.

    A duplicate has no departure point of its own: it left with the copy it duplicates."""
    departs: dict[int, list[Arrow]] = defaultdict(list)  # id(traced out event) -> its arrow
    arrives: dict[tuple[tuple[str, int, int, int, int, str], float], list[Arrow]] = defaultdict(list)
    inferred: list[Point] = []
    for a in arrows:
        if a.sender == side:
            if a.depart_inferred:
                inferred.append(Point(a.depart, side, "depart", a, inferred=True))
            elif not a.duplicate:
                departs[id(a.seg.raw)].append(a)
        elif a.arrive is not None:
            if a.arrive_inferred:
                inferred.append(Point(a.arrive, side, "arrive", a, inferred=True))
            else:
                arrives[(a.seg.match_key, a.arrive)].append(a)
    traced: list[Point] = []
    for e in c.events if c is not None else []:
        if isinstance(e, StateChange):
            traced.append(Point(e.time, side, "state", state=e))
        elif isinstance(e, SegmentEvent) and e.direction == "out":
            traced.extend(Point(a.depart, side, "depart", a) for a in departs.get(id(e), []))
        elif isinstance(e, SegmentEvent):
            waiting = arrives.get(((e.flags, e.seq, e.ack, e.win, e.len, e.options), e.time))
            if waiting:
                traced.append(Point(e.time, side, "arrive", waiting.pop(0)))
    inferred.sort(key=lambda p: p.time)
    points: list[Point] = []
    i = 0
    for p in traced:
        while i < len(inferred) and inferred[i].time < p.time - TIE:
            points.append(inferred[i])
            i += 1
        points.append(p)
    points.extend(inferred[i:])
    return points


def _timeline_points(here: Connection, there: Connection | None, arrows: list[Arrow]) -> list[Point]:
    """Both timelines merged by time; an arrival never comes before its departure."""
    sides = [_side_points(here, LEFT, arrows), _side_points(there, RIGHT, arrows)]
    heads = [0, 0]
    departed: set[int] = set()
    merged: list[Point] = []

    def blocked(p: Point) -> bool:
        return p.what == "arrive" and p.arrow is not None and id(p.arrow) not in departed

    while heads[0] < len(sides[0]) or heads[1] < len(sides[1]):
        live = [i for i in (LEFT, RIGHT) if heads[i] < len(sides[i])]
        pick = live[0]
        if len(live) == 2:
            left, right = sides[LEFT][heads[LEFT]], sides[RIGHT][heads[RIGHT]]
            pick = RIGHT if right.time < left.time - TIE else LEFT  # ties: the left end first
            head, other = (left, right) if pick == LEFT else (right, left)
            if blocked(head) and not blocked(other):
                pick = 1 - pick
        p = sides[pick][heads[pick]]
        heads[pick] += 1
        if p.what == "depart" and p.arrow is not None:
            departed.add(id(p.arrow))
        merged.append(p)
    return merged


# -- text -------------------------------------------------------------------------------------


def _tag(a: Arrow) -> str:
    tags = []
    if a.retransmit:
        tags.append(f"retransmission: {a.retransmit}")
    if a.lost:
        tags.append("LOST")
    return f"  [{', '.join(tags)}]" if tags else ""


@dataclass
class _TextRow:
    time: float
    left: str = ""
    right: str = ""
    arrow: Arrow | None = None


def render_ladder_text(
    source: TraceSource,
    peer: TraceSource | None = None,
    conn: str | None = None,
    names: tuple[str, str] | None = None,
) -> str:
    """The ladder as text: time, left end's states, arrows, right end's states; one row per segment
    (at its departure) or state change. Retransmissions are drawn `====>`, a lost segment stops
    half-way in an X."""
    lad = build_ladder(source, peer, conn, names)
    rows: list[_TextRow] = []
    for p in lad.points:
        if p.state is not None:
            rows.append(_TextRow(p.time, left=p.state.new if p.side == LEFT else "",
                                 right=p.state.new if p.side == RIGHT else ""))
        elif p.arrow is not None and not p.arrow.duplicate:
            a = p.arrow
            # at its departure; at its arrival here when the departure is inferred
            if (p.what == "depart" and not p.inferred) or (p.what == "arrive" and a.depart_inferred):
                rows.append(_TextRow(p.time, arrow=a))
    init_r = lad.initial[1] or ("" if lad.both_traced else "(not traced)")
    state_w = max([len(lad.initial[0] or ""), len(init_r), 8] + [len(r.left) for r in rows])
    mid_w = max([len(r.arrow.seg.label()) + 10 for r in rows if r.arrow] + [40])
    out = [f"{'time (s)':>10}  {lad.names[0]:>{state_w}}  {'':{mid_w}}  {lad.names[1]}".rstrip()]
    out.append(f"{'':>10}  {lad.initial[0] or '':>{state_w}} |{'':{mid_w}}| {init_r}".rstrip())
    for r in rows:
        middle = " " * mid_w
        if r.arrow is not None:
            a = r.arrow
            middle = _text_arrow(a.seg.label(), a.sender, a.lost, bool(a.retransmit), mid_w)
        line = f"{r.time - lad.origin:>10.6f}  {r.left:>{state_w}} |{middle}| {r.right}".rstrip()
        out.append(line + (_tag(r.arrow) if r.arrow is not None else ""))
    out.append("")
    out.append(_caption(lad))
    return "\n".join(out) + "\n"


def _text_arrow(label: str, sender: int, lost: bool, retx: bool, width: int) -> str:
    dash = "=" if retx else "-"
    if sender == LEFT:
        if lost:
            body = f" {label} "
            stop = max(len(body) + 3, width // 2)
            return (body + dash * (stop - len(body) - 1) + "X").ljust(width)
        return f" {label} ".ljust(width - 1, dash) + ">"
    if lost:
        body = f" {label} "
        stop = max(len(body) + 3, width // 2)
        return ("X" + dash * (stop - len(body) - 1) + body).rjust(width)
    return "<" + f" {label} ".rjust(width - 1, dash)


def _caption(lad: Ladder) -> str:
    if lad.both_traced:
        return f"{lad.conn}: both ends traced; times relative to the first event."
    return (
        f"{lad.conn}: one end traced; the far end is inferred (one-way delay {lad.one_way * 1000:.3f} ms),"
        " its states and any losses are not known."
    )


# -- SVG --------------------------------------------------------------------------------------

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
    caption = _caption(lad).split(": ", 1)[1]
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
