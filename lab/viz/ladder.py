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

Drawn by lab.viz.ladder_text (one row per segment and state change) and lab.viz.ladder_svg.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

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


def ladder_caption(lad: Ladder) -> str:
    """The note under both diagrams: how the times were found."""
    if lad.both_traced:
        return f"{lad.conn}: both ends traced; times relative to the first event."
    return (
        f"{lad.conn}: one end traced; the far end is inferred (one-way delay {lad.one_way * 1000:.3f} ms),"
        " its states and any losses are not known."
    )
