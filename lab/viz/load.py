"""Reading a stack trace back into typed records, one connection at a time.

A trace is what `stack.trace` emits: a JSON-lines file (one `Event.to_dict()` per line, with a
"kind" key; lab nodes write DIR/NODE.trace.jsonl), a `MemorySink`, or any iterable of events.
`load_connection` picks one connection out of it and numbers its segments the way Wireshark does:
sequence and acknowledgment numbers relative to each side's ISN (taken from the SYNs; without a
SYN in the trace, from the first sequence number seen), SACK blocks likewise, and windows scaled
(the raw field shifted by the sender's window scale once both SYNs carried the option).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

from stack.trace import (
    AppEvent,
    CongestionEvent,
    ConnId,
    Drop,
    Event,
    MemorySink,
    Retransmit,
    RttEvent,
    SegmentEvent,
    StateChange,
    TimerEvent,
    read_jsonl,
)

SEQ_MOD = 1 << 32

EVENT_KINDS: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (StateChange, SegmentEvent, Drop, Retransmit, CongestionEvent, RttEvent, TimerEvent, AppEvent)
}


class TraceError(ValueError):
    """The trace cannot give what was asked (no such connection, no connection at all, bad file)."""


def event_from_dict(d: dict[str, Any]) -> Event | None:
    """The typed event of one trace line; None for kinds without a connection view (PacketEvent)."""
    cls = EVENT_KINDS.get(str(d.get("kind", "")))
    if cls is None:
        return None
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})


def read_events(lines: Iterable[str]) -> list[Event]:
    """Typed events of JSON lines; lines of unknown kinds are skipped."""
    out: list[Event] = []
    for number, d in enumerate(read_jsonl(lines), 1):
        try:
            event = event_from_dict(d)
        except TypeError as exc:
            raise TraceError(f"line {number}: {exc}") from exc
        if event is not None:
            out.append(event)
    return out


def read_trace_file(path: str | Path) -> list[Event]:
    try:
        with open(path, encoding="utf-8") as f:
            return read_events(f)
    except OSError as exc:
        raise TraceError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise TraceError(f"{path}: not a JSON-lines trace ({exc})") from exc


# -- one connection ---------------------------------------------------------------------------


def mirror(conn: ConnId) -> ConnId:
    """The same connection seen from the other end: "a:1>b:2" -> "b:2>a:1"."""
    local, _, remote = conn.partition(">")
    return f"{remote}>{local}"


FLAG_NAMES = {"S": "SYN", "F": "FIN", "R": "RST", "P": "PSH", "U": "URG", "E": "ECE", "W": "CWR", ".": "ACK"}
FLAG_ORDER = ("SYN", "FIN", "RST", "PSH", "URG", "ECE", "CWR", "ACK")


def flag_names(flags: str) -> list[str]:
    """tcpdump-style flags ("S.", "FP.") as names in a fixed order: ["SYN", "ACK"]."""
    names = {FLAG_NAMES[c] for c in flags if c in FLAG_NAMES}
    return [n for n in FLAG_ORDER if n in names]


def option_value(options: str, name: str) -> str | None:
    """The text after `name ` in a tcpdump-style option list ("mss 1460,sackOK,wscale 3")."""
    for part in options.split(","):
        part = part.strip()
        if part == name:
            return ""
        if part.startswith(name + " "):
            return part[len(name) + 1 :]
    return None


def sack_blocks(options: str) -> list[tuple[int, int]]:
    value = option_value(options, "sack")
    blocks: list[tuple[int, int]] = []
    if value:
        for block in value.split():
            left, _, right = block.partition(":")
            if left.isdigit() and right.isdigit():
                blocks.append((int(left), int(right)))
    return blocks


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment in or out of the traced host, numbered relative to the ISNs."""

    index: int  # position among the connection's segments in this trace
    time: float
    direction: str  # "in" | "out" (the traced host's point of view)
    flags: str  # as traced: "S.", "P.", ...
    seq: int  # relative to the sender's ISN
    ack: int  # relative to the receiver's ISN (0 without ACK)
    win: int  # window in octets (scaled once window scaling is in force)
    len: int
    sack: tuple[tuple[int, int], ...]  # relative blocks
    retransmit: str  # "" or why ("rto", "fast", ...; "seq" when inferred from sequence numbers)
    raw: SegmentEvent

    @property
    def names(self) -> list[str]:
        return flag_names(self.flags)

    @property
    def has_ack(self) -> bool:
        return "." in self.flags

    @property
    def seq_space(self) -> int:
        """Sequence numbers the segment occupies (SYN and FIN count one each)."""
        return self.len + ("S" in self.flags) + ("F" in self.flags)

    def label(self, with_sack: bool = True) -> str:
        """'SYN,ACK seq=0 ack=1 win=65535', 'ACK seq=1 ack=1 len=1448 win=32768 sack=...',
        'ACK seq=1 ack=1 len=65160 gso=45x1448 win=...' for a super-segment (offload mode)."""
        parts = [",".join(self.names) or "-", f"seq={self.seq}"]
        if self.has_ack:
            parts.append(f"ack={self.ack}")
        if self.len:
            parts.append(f"len={self.len}")
            if self.raw.gso:  # a TSO/GRO super-segment: drawn as one arrow saying what it stands for
                parts.append(f"gso={-(-self.len // self.raw.gso)}x{self.raw.gso}")
        parts.append(f"win={self.win}")
        if with_sack and self.sack:
            parts.append("sack=" + ",".join(f"{a}-{b}" for a, b in self.sack))
        return " ".join(parts)

    @property
    def match_key(self) -> tuple[str, int, int, int, int, str]:
        """What identifies this segment in the other end's trace (raw numbers, options incl. TS)."""
        r = self.raw
        return (r.flags, r.seq, r.ack, r.win, r.len, r.options)


@dataclass
class Connection:
    """One connection as one host saw it."""

    conn: ConnId  # local>remote
    events: list[Event] = field(default_factory=list)  # all of its events, in trace order
    segments: list[Segment] = field(default_factory=list)
    states: list[StateChange] = field(default_factory=list)
    retransmits: list[Retransmit] = field(default_factory=list)
    congestion: list[CongestionEvent] = field(default_factory=list)
    rtt: list[RttEvent] = field(default_factory=list)
    timers: list[TimerEvent] = field(default_factory=list)
    drops: list[Drop] = field(default_factory=list)
    isn_local: int | None = None
    isn_remote: int | None = None

    @property
    def local(self) -> str:
        return self.conn.partition(">")[0]

    @property
    def remote(self) -> str:
        return self.conn.partition(">")[2]

    @property
    def initial_state(self) -> str | None:
        return self.states[0].old if self.states else None

    def state_names(self) -> list[str]:
        first = self.initial_state
        return ([first] if first is not None else []) + [s.new for s in self.states]

    @property
    def start(self) -> float:
        times = [s.time for s in self.segments] + [s.time for s in self.states]
        return min(times) if times else 0.0

    def rel_local(self, seq: int) -> int:
        return (seq - (self.isn_local or 0)) % SEQ_MOD

    def rel_remote(self, seq: int) -> int:
        return (seq - (self.isn_remote or 0)) % SEQ_MOD


TraceSource: TypeAlias = "str | Path | MemorySink | Iterable[Event] | Connection"


def events_of(source: str | Path | MemorySink | Iterable[Event]) -> list[Event]:
    if isinstance(source, str | Path):
        return read_trace_file(source)
    if isinstance(source, MemorySink):
        return list(source.events)
    return list(source)


def event_conn(event: Event) -> ConnId:
    return str(getattr(event, "conn", ""))


def connections(events: Iterable[Event]) -> list[ConnId]:
    """The connections of a trace, in the order their first segment or state change appears."""
    seen: dict[ConnId, None] = {}
    for e in events:
        if isinstance(e, SegmentEvent | StateChange) and e.conn:
            seen.setdefault(e.conn, None)
    return list(seen)


def pick_connection(events: list[Event], conn: str | None = None) -> ConnId:
    """The connection named `conn` (exactly, seen from the other end, or a unique substring such
    as a port ":40000"); without a name, the first one in the trace."""
    conns = connections(events)
    if not conns:
        raise TraceError("the trace holds no connection (no segment, no state change)")
    if conn is None or conn == "":
        return conns[0]
    for c in conns:
        if conn in (c, mirror(c)):
            return c
    partial = [c for c in conns if conn in c]
    if len(partial) == 1:
        return partial[0]
    which = "several" if partial else "no"
    raise TraceError(f"{which} connection(s) match {conn!r}; the trace has: {', '.join(conns)}")


def _wscale(options: str) -> int | None:
    value = option_value(options, "wscale")
    return int(value) if value and value.isdigit() else None


def build_connection(events: list[Event], conn: ConnId) -> Connection:
    """The connection's records, numbered relative to the ISNs (see the module docstring)."""
    mine = [e for e in events if event_conn(e) == conn]
    c = Connection(conn=conn, events=mine)
    raw_segments = [e for e in mine if isinstance(e, SegmentEvent)]
    shift_out: int | None = None
    shift_in: int | None = None
    for s in raw_segments:
        if "S" in s.flags:
            if s.direction == "out" and c.isn_local is None:
                c.isn_local, shift_out = s.seq, _wscale(s.options)
            elif s.direction == "in" and c.isn_remote is None:
                c.isn_remote, shift_in = s.seq, _wscale(s.options)
    # Without a SYN, number from the first sequence number seen (as Wireshark does).
    for s in raw_segments:
        if c.isn_local is None and s.direction == "out":
            c.isn_local = s.seq
        if c.isn_remote is None and s.direction == "in":
            c.isn_remote = s.seq
    for s in raw_segments:
        if c.isn_local is None and s.direction == "in" and "." in s.flags:
            c.isn_local = s.ack
        if c.isn_remote is None and s.direction == "out" and "." in s.flags:
            c.isn_remote = s.ack
    scaling = shift_out is not None and shift_in is not None

    retx = [e for e in mine if isinstance(e, Retransmit)]
    pending = list(retx)  # Retransmit events follow (or precede) their segment at the same time
    highest_sent = None  # relative end of the highest sequence number sent so far
    for e in mine:
        if isinstance(e, StateChange):
            c.states.append(e)
        elif isinstance(e, CongestionEvent):
            c.congestion.append(e)
        elif isinstance(e, RttEvent):
            c.rtt.append(e)
        elif isinstance(e, TimerEvent):
            c.timers.append(e)
        elif isinstance(e, Drop):
            c.drops.append(e)
    c.retransmits = retx
    for s in raw_segments:
        out = s.direction == "out"
        rel_seq = c.rel_local(s.seq) if out else c.rel_remote(s.seq)
        rel_ack = (c.rel_remote(s.ack) if out else c.rel_local(s.ack)) if "." in s.flags else 0
        rel_sack = tuple(
            (c.rel_remote(a), c.rel_remote(b)) if out else (c.rel_local(a), c.rel_local(b))
            for a, b in sack_blocks(s.options)
        )
        shift = (shift_out if out else shift_in) if scaling and "S" not in s.flags else 0
        why = ""
        if out:
            space = s.len + ("S" in s.flags) + ("F" in s.flags)
            for r in pending:
                if r.seq == s.seq and r.len == s.len and abs(r.time - s.time) < 1e-9:
                    why = r.why
                    pending.remove(r)
                    break
            if not why and space and highest_sent is not None and rel_seq < highest_sent:
                why = "seq"  # this sequence space was sent before: a retransmission
            if space:
                end = rel_seq + space
                highest_sent = end if highest_sent is None else max(highest_sent, end)
        c.segments.append(
            Segment(
                index=len(c.segments),
                time=s.time,
                direction=s.direction,
                flags=s.flags,
                seq=rel_seq,
                ack=rel_ack,
                win=s.win << (shift or 0),
                len=s.len,
                sack=rel_sack,
                retransmit=why,
                raw=s,
            )
        )
    return c


def load_connection(source: TraceSource, conn: str | None = None) -> Connection:
    """One connection of a trace file, sink or event list (the first one without `conn`)."""
    if isinstance(source, Connection):
        return source
    events = events_of(source)
    return build_connection(events, pick_connection(events, conn))


def load_pair(
    source: TraceSource, peer: TraceSource | None = None, conn: str | None = None
) -> tuple[Connection, Connection | None]:
    """A connection from one trace and, when given, the same connection from the other end's."""
    here = load_connection(source, conn)
    if peer is None:
        return here, None
    if isinstance(peer, Connection):
        return here, peer
    events = events_of(peer)
    wanted = mirror(here.conn)
    if wanted not in connections(events):
        raise TraceError(f"the peer trace has no connection {wanted} (the mirror of {here.conn})")
    return here, build_connection(events, wanted)
