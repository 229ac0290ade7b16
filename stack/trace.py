"""Structured trace of what the stack did: the evidence tests and the lab assert on.

Every state transition, every segment in and out, every drop with its reason, retransmissions,
congestion-window and RTT changes are events. A `Trace` with no sink is disabled and costs one
attribute test per would-be event (`if trace.enabled:`), so callers build events only when needed.

Sinks: `MemorySink` (tests), `JsonLinesSink` (the lab's run directory), `PcapSink` (Wireshark).
"""

from __future__ import annotations

import functools
import json
import re
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import IO, Any, Protocol

from stack.inet import endpoint, split_endpoint
from stack.wire.tcp import FLAG_SPELLINGS, Nop, TcpSegment, Timestamps, flags_str, format_options
from stack.wire.vnet import complete_checksum

ConnId = str  # "10.0.0.1:40000>10.0.0.2:80" or "[fd00::1]:40000>[fd00::2]:80" (local>remote)


def conn_id(local_ip: str, local_port: int, remote_ip: str, remote_port: int) -> ConnId:
    """IPv6 addresses in brackets (RFC 3986 3.2.2), so the port after the last colon is the port."""
    return f"{endpoint(local_ip, local_port)}>{endpoint(remote_ip, remote_port)}"


def split_conn_id(cid: ConnId) -> tuple[tuple[str, int], tuple[str, int]]:
    """The inverse of conn_id: ((local ip, port), (remote ip, port))."""
    local, _, remote = cid.partition(">")
    return split_endpoint(local), split_endpoint(remote)


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


@dataclass(slots=True)
class Event:
    """What happened at `time`. Events are values, never changed once emitted (sinks hold them,
    tests compare them); not `frozen=True`, which costs 0.6 µs per event to build (see
    `stack.wire.tcp`), several events per segment."""

    time: float

    @property
    def kind(self) -> str:
        return type(self).__name__

    def to_dict(self) -> dict[str, Any]:
        # The fields in declaration order, then "kind" (what dataclasses.asdict gave, without its
        # deep copy: this runs once per event written to a JSON-lines file).
        d = {name: getattr(self, name) for name in _field_names(type(self))}
        d["kind"] = self.kind
        return d


@dataclass(slots=True)
class StateChange(Event):
    conn: ConnId
    old: str
    new: str
    cause: str  # "segment:S.", "timer:time_wait", "call:close", ...


@dataclass(slots=True)
class SegmentEvent(Event):
    direction: str  # "in" | "out"
    conn: ConnId  # from this host's point of view (local>remote)
    flags: str
    seq: int
    ack: int
    win: int  # raw window field
    len: int  # payload octets
    options: str = ""
    gso: int = 0  # a TSO/GRO super-segment: the payload octets of each segment it stands for

    def to_dict(self) -> dict[str, Any]:
        d = Event.to_dict(self)
        if not self.gso:
            del d["gso"]  # per-segment traces read exactly as before offloads existed
        return d


def segment_event(now: float, direction: str, cid: ConnId, seg: TcpSegment, gso: int = 0) -> SegmentEvent:
    """The event of one segment in or out of a host."""
    return SegmentEvent(now, direction, cid, flags_str(seg.flags), seg.seq, seg.ack, seg.window,
                        len(seg.payload), format_options(seg.options), gso)


@dataclass(slots=True)
class PacketEvent(Event):
    """A whole IP packet in or out of the host (what the pcap sink writes)."""

    direction: str
    data: bytes | memoryview  # the packet (a read-only view of the frame it came in)
    gso: int = 0  # a super-segment (see SegmentEvent.gso)
    csum_partial: bool = False  # the TCP checksum is partial (offload): complete it to show it
    orig_len: int = 0  # data is the first octets of a packet this long (0: data is all of it)

    @property
    def length(self) -> int:
        return self.orig_len or len(self.data)

    def truncated(self, snaplen: int) -> PacketEvent:
        """This event keeping only the first snaplen octets of its packet (pcap's caplen)."""
        if len(self.data) <= snaplen:
            return self
        head = bytes(self.data[:snaplen])
        return PacketEvent(self.time, self.direction, head, self.gso, False, self.length)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "time": self.time, "direction": self.direction,
                             "len": self.length}
        if self.gso:
            d["gso"] = self.gso
        return d


@dataclass(slots=True)
class Drop(Event):
    reason: str
    detail: str = ""
    conn: ConnId = ""


@dataclass(slots=True)
class Retransmit(Event):
    conn: ConnId
    seq: int
    len: int
    why: str  # "rto", "fast", "sack", "syn", "synack", "probe"


@dataclass(slots=True)
class CongestionEvent(Event):
    conn: ConnId
    cwnd: int
    ssthresh: int
    why: str  # "ack", "loss", "rto", "recovery_exit", "init", ...
    flight: int = 0


@dataclass(slots=True)
class RttEvent(Event):
    conn: ConnId
    sample: float
    srtt: float
    rttvar: float
    rto: float


@dataclass(slots=True)
class TimerEvent(Event):
    conn: ConnId
    timer: str  # "rto", "persist", "keepalive", "delack", "time_wait", ...
    action: str  # "fired", ...


@dataclass(slots=True)
class SynCookieEvent(Event):
    """A listener answered a SYN with a cookie, or an ACK brought one back (RFC 4987 3.6)."""

    conn: ConnId
    action: str  # "sent", "accepted", "failed"


@dataclass(slots=True)
class AppEvent(Event):
    """Something an application did or was told, e.g. ("connect", "refused")."""

    conn: ConnId
    what: str
    detail: str = ""


class Sink(Protocol):
    """Where events go. A sink may also have `accepts(kind) -> bool`: False for an event type it
    never writes, so that the trace does not call it for those (`PcapSink` takes only packets);
    `write_batch(events)`, which a Trace made with `hold` calls instead of `write` (see Trace);
    and `takes_records`, True if `write_batch` also takes a segment's SegmentRecord in place of
    its event (see `Trace.segment`)."""

    def write(self, event: Event) -> None: ...

    def close(self) -> None: ...


# A segment event not built yet: segment_event's arguments (now, direction, cid, seg, gso). Segments
# are values the stack never changes once sent or parsed, so it reads the same when encoded later.
SegmentRecord = tuple[float, str, ConnId, TcpSegment, int]
Held = Event | SegmentRecord  # what a holding Trace hands over
Writer = Callable[[Event], None]
Route = tuple[tuple[Writer, ...], bool]  # the writers an event type goes to, and whether it is held


class Trace:
    """Fans events out to sinks. `enabled` is False while there is no sink.

    Each event type is routed once to the sinks that accept it: a segment is not offered to the
    pcap sink nor a packet to a trace file that skips packets (one call fewer per event).

    With `hold` > 0, sinks that have `write_batch` get events in lists instead of one call each:
    the trace holds up to `hold` events and hands them over on `drain()`, which `flush()`,
    `close()` and a full hold call, and which `wake` (set by the driver, e.g. to schedule a drain at
    the end of the loop's step) is told to arrange when the first event is held. Per event that is
    one list append instead of a call per sink (the daemon's ring, JSON lines and pcap).

    `segment_records` is True when every sink that takes segments is a held one and all held sinks
    take records (the daemon's): `segment()` then holds a SegmentRecord, and the sinks encode its
    line straight from the segment when they drain; its event is never built."""

    __slots__ = ("_held", "_routes", "_segments_taken", "enabled", "hold", "segment_records", "sinks", "wake")

    def __init__(self, sinks: Iterable[Sink] = (), *, hold: int = 0) -> None:
        self.sinks: list[Sink] = list(sinks)
        self.hold = hold
        self.wake: Callable[[], object] | None = None
        self._held: list[Held] = []
        self._routes: dict[type[Event], Route] = {}
        self._reroute()

    def add(self, sink: Sink) -> Sink:
        self.drain()
        self.sinks.append(sink)
        self._reroute()
        return sink

    def remove(self, sink: Sink) -> None:
        self.drain()
        self.sinks.remove(sink)
        self._reroute()

    def _reroute(self) -> None:
        self.enabled = bool(self.sinks)
        self._routes.clear()
        writers, held_too = self._route(SegmentEvent)
        self._segments_taken = bool(writers) or held_too
        batched = [sink for sink in self.sinks if self._batched(sink)]
        self.segment_records = (held_too and not writers
                                and all(getattr(sink, "takes_records", False) for sink in batched))

    def segment(self, now: float, direction: str, cid: ConnId, seg: TcpSegment, gso: int = 0) -> None:
        """Emit `segment_event(now, direction, cid, seg, gso)`, or with `segment_records` hold its
        record: a tuple now, the line later in a tight loop, half the cost of event then line."""
        if not self.segment_records:
            if self._segments_taken:  # (a pcap alone takes none: no event to build)
                self.emit(segment_event(now, direction, cid, seg, gso))
            return
        held = self._held  # as emit holds an event (inline: this runs for every segment)
        held.append((now, direction, cid, seg, gso))
        if len(held) >= self.hold:
            self.drain()
        elif len(held) == 1 and self.wake is not None:
            self.wake()

    def emit(self, event: Event) -> None:
        route = self._routes.get(type(event))
        if route is None:
            route = self._route(type(event))
        writers, held_too = route
        for write in writers:
            write(event)
        if held_too:  # for the batched sinks (all of the daemon's)
            held = self._held
            held.append(event)
            if len(held) >= self.hold:
                self.drain()
            elif len(held) == 1 and self.wake is not None:
                self.wake()

    def _route(self, kind: type[Event]) -> Route:
        """The sinks that take `kind` one event at a time, and whether batched sinks take it."""
        writers: list[Writer] = []
        held_too = False
        for sink in self.sinks:
            accepts = getattr(sink, "accepts", None)
            if accepts is None or accepts(kind):
                if self._batched(sink):
                    held_too = True
                else:
                    writers.append(sink.write)
        self._routes[kind] = route = (tuple(writers), held_too)
        return route

    def _batched(self, sink: Sink) -> bool:
        return self.hold > 0 and callable(getattr(sink, "write_batch", None))

    def drain(self) -> None:
        """Hand the held events to the batched sinks (each sink picks the types it takes)."""
        if not self._held:
            return
        events, self._held = self._held, []
        for sink in self.sinks:
            if self._batched(sink):
                sink.write_batch(events)  # type: ignore[attr-defined]

    def flush(self) -> None:
        """Let batching sinks write what they hold (JsonLinesSink, PcapSink with batch > 1)."""
        self.drain()
        for sink in self.sinks:
            flush = getattr(sink, "flush", None)
            if flush is not None:
                flush()

    def close(self) -> None:
        self.drain()
        for sink in self.sinks:
            sink.close()


@dataclass
class MemorySink:
    """Keeps events in a list; helpers filter them the way tests ask."""

    events: list[Event] = field(default_factory=list)

    def write(self, event: Event) -> None:
        self.events.append(event)

    def close(self) -> None:
        pass

    def of(self, kind: type[Event]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def transitions(self, conn: ConnId | None = None) -> list[str]:
        """The state names a connection went through: ["CLOSED", "SYN_SENT", ...].

        With conn=None there must be exactly one connection in the trace.
        """
        changes: list[StateChange] = self.of(StateChange)
        if conn is None:
            conns = list(dict.fromkeys(c.conn for c in changes))
            if len(conns) != 1:
                raise ValueError(f"trace has {len(conns)} connections; name one of {conns}")
            conn = conns[0]
        picked = [c for c in changes if c.conn == conn]
        return ([picked[0].old] if picked else []) + [c.new for c in picked]

    def segments(self, direction: str | None = None, conn: ConnId | None = None) -> list[SegmentEvent]:
        return [
            e
            for e in self.events
            if isinstance(e, SegmentEvent)
            and (direction is None or e.direction == direction)
            and (conn is None or e.conn == conn)
        ]

    def drops(self, reason: str | None = None) -> list[Drop]:
        return [e for e in self.events if isinstance(e, Drop) and (reason is None or e.reason == reason)]

    def clear(self) -> None:
        self.events.clear()


class JsonLinesSink:
    """One JSON object per line; PacketEvents are written as their length only.

    `kinds` keeps the events it says yes to; `skip` drops events of these types (checked without
    a call per event: a trace file beside a pcap skips PacketEvent). With batch > 1 events are
    held (events are never changed once emitted) and serialized `batch` at a time, or when
    `flush()` or `close()` is called: the encoding then runs in one go after the packets of the
    moment have left, off the per-segment path."""

    def __init__(self, out: IO[str], kinds: Callable[[Event], bool] | None = None, batch: int = 1,
                 skip: tuple[type[Event], ...] = ()) -> None:
        self.out = out
        self.keep = kinds
        self.skip = frozenset(skip)
        self.batch = batch
        self._held: list[Held] = []
        self.takes_records = kinds is None  # a segment's record is kept or skipped by its type alone

    def accepts(self, kind: type[Event]) -> bool:
        return kind not in self.skip

    def _keeps(self, event: Held) -> bool:
        if isinstance(event, tuple):
            return SegmentEvent not in self.skip
        return type(event) not in self.skip and (self.keep is None or self.keep(event))

    def write(self, event: Event) -> None:
        if self.batch <= 1:
            if self._keeps(event):
                self.out.write(event_line(event))
            return
        held = self._held
        held.append(event)  # filtered when encoded, as write_batch's
        if len(held) >= self.batch:
            self._write_held()

    def write_batch(self, events: Sequence[Held]) -> None:
        """Events as a Trace with `hold` hands them over (filtered when they are encoded)."""
        held = self._held
        held += events
        if len(held) >= self.batch:
            self._write_held()

    def _write_held(self) -> None:
        held, self._held = self._held, []
        keeps = self._keeps
        self.out.write("".join([event_line(e) for e in held if keeps(e)]))

    def flush(self) -> None:
        if self._held:
            self._write_held()
        self.out.flush()

    def close(self) -> None:
        self.flush()


PCAP_GLOBAL = struct.Struct("<IHHiIII")
PCAP_RECORD = struct.Struct("<IIII")
LINKTYPE_RAW = 101  # raw IP, no link-layer header: the version nibble tells IPv4 from IPv6
LINKTYPE_IPV4 = 228  # raw IPv4 only (what this sink wrote before it carried IPv6)


class PcapSink:
    """Writes every PacketEvent to a classic pcap file (microsecond timestamps, raw IP of both
    versions: LINKTYPE_RAW, which tcpdump, tshark and scapy read as IPv4 or IPv6 per packet).
    With batch > 1, records are written `batch` at a time (see JsonLinesSink)."""

    WRITE_PARTS = 64  # record headers and packets joined per write: 32 packets of 1500 octets, 48 KB

    def __init__(
        self, out: IO[bytes], snaplen: int = 65535, time_offset: float = 0.0, batch: int = 1
    ) -> None:
        self.out = out
        self.time_offset = time_offset
        self.batch = batch
        self._held: list[Held] = []
        self.takes_records = True  # it skips them, as every event but packets
        self._last_time: tuple[float | None, int, int] = (None, 0, 0)  # time, its seconds and micros
        self._last_record: tuple[float | None, int, int, bytes] = (None, 0, 0, b"")  # time, lengths, header
        out.write(PCAP_GLOBAL.pack(0xA1B2C3D4, 2, 4, 0, 0, snaplen, LINKTYPE_RAW))

    def accepts(self, kind: type[Event]) -> bool:
        return issubclass(kind, PacketEvent)

    def write(self, event: Event) -> None:
        if isinstance(event, PacketEvent):
            if self.batch <= 1:
                self.out.write(self._record(event))
                return
            self._held.append(event)
            if len(self._held) >= self.batch:
                self._write_held()

    def _record(self, event: PacketEvent) -> bytes:
        return b"".join(self._parts(event))

    def _parts(self, event: PacketEvent) -> tuple[bytes, bytes | memoryview]:
        """The record header and the packet (joined once a batch: no copy of a packet per record).
        The packets of one step of the loop share one time object, and full-sized ones a length:
        such a packet's header is the one before it again."""
        data = complete_checksum(event.data) if event.csum_partial else event.data
        caplen = len(data)
        length = event.orig_len or caplen
        record = self._last_record
        if event.time is record[0] and caplen == record[1] and length == record[2]:
            return record[3], data
        last = self._last_time
        if event.time is not last[0]:
            t = event.time + self.time_offset
            sec = int(t)
            usec = round((t - sec) * 1_000_000)
            if usec >= 1_000_000:
                sec, usec = sec + 1, usec - 1_000_000
            self._last_time = last = (event.time, sec, usec)
        header = PCAP_RECORD.pack(last[1], last[2], caplen, length)
        self._last_record = (event.time, caplen, length, header)
        return header, data

    def write_batch(self, events: Sequence[Held]) -> None:
        """Events as a Trace with `hold` hands them over (the packets are picked when written)."""
        held = self._held
        held += events
        if len(held) >= self.batch:
            self._write_held()

    def _write_held(self) -> None:
        held, self._held = self._held, []
        parts = self._parts
        records = [part for event in held if isinstance(event, PacketEvent) for part in parts(event)]
        # A write per WRITE_PARTS parts (tens of KB), not one join of the whole batch: a buffer of
        # hundreds of KB, freed at the top of the heap, went back to the kernel and was faulted
        # in again next batch (116-164 page faults a MB received, 16 this way).
        for start in range(0, len(records), self.WRITE_PARTS):
            self.out.write(b"".join(records[start : start + self.WRITE_PARTS]))

    def flush(self) -> None:
        if self._held:
            self._write_held()
        self.out.flush()

    def close(self) -> None:
        self.flush()


# One encoder for every line: json.dumps with separators builds a new JSONEncoder per call, which
# costs more than the encoding itself. The output is the same bytes.
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode


# Strings that JSON writes as they are: no quote, backslash, control or non-ASCII character.
_PLAIN = re.compile(r'[^"\\\x00-\x1f\x7f-\U0010ffff]*')


@functools.lru_cache(maxsize=4096)
def _plain(text: str) -> bool:
    """_PLAIN for the strings that repeat (connection ids, flags, directions): checked once each."""
    return _PLAIN.fullmatch(text) is not None


def event_line(event: Held) -> str:
    """The event's JSON line (its `to_dict()`, encoded): what JsonLinesSink writes and the daemon's
    ring keeps. The two most frequent events are formatted directly, to the same bytes, a segment
    also from its record (Trace.segment)."""
    if isinstance(event, tuple):
        return segment_line(*event)
    if type(event) is SegmentEvent:
        return _segment_line(event)
    if type(event) is PacketEvent:
        return _packet_line(event)
    return _ENCODE(event.to_dict()) + "\n"


# The last time encoded and its text (one pair, replaced whole): the events of one step of the
# loop share one time object.
_last_time: list[tuple[float | None, str]] = [(None, "")]


def _time_text(t: float) -> str:
    """repr(t), the encoder's spelling of a float (a quarter of a segment line's cost), once per time."""
    last = _last_time[0]
    if t is last[0]:
        return last[1]
    text = repr(t)
    _last_time[0] = (t, text)
    return text


@functools.lru_cache(maxsize=4096)
def _segment_middle(direction: str, conn: str, flags: str) -> str | None:
    """The part of a segment line from the direction to the flags (None if one of them is not a
    plain string): they repeat, so they are checked and joined once each."""
    if not (_plain(direction) and _plain(conn) and _plain(flags)):
        return None
    return f'"direction":"{direction}","conn":"{conn}","flags":"{flags}"'


def _segment_line(e: SegmentEvent) -> str:
    """The JSON line of the most frequent event, formatted directly: the same bytes as the
    encoder gives (keys in field order, repr of numbers, ASCII strings as they are), in a
    fraction of the time. Anything unusual goes through the encoder."""
    middle = _segment_middle(e.direction, e.conn, e.flags)
    if middle is None or type(e.time) is not float or not _PLAIN.fullmatch(e.options):
        return _ENCODE(e.to_dict()) + "\n"
    gso = f',"gso":{e.gso}' if e.gso else ""
    return (f'{{"time":{_time_text(e.time)},{middle},"seq":{e.seq},"ack":{e.ack},"win":{e.win},'
            f'"len":{e.len},"options":"{e.options}"{gso},"kind":"SegmentEvent"}}\n')


@functools.lru_cache(maxsize=4096)
def _direction_conn(direction: str, conn: str) -> str | None:
    """The direction and conn members of a segment line (None unless both are plain strings)."""
    if not (_plain(direction) and _plain(conn)):
        return None
    return f'"direction":"{direction}","conn":"{conn}"'


def segment_line(now: float, direction: str, cid: ConnId, seg: TcpSegment, gso: int = 0) -> str:
    """`event_line(segment_event(now, direction, cid, seg, gso))`, formatted straight from the
    segment (a SegmentRecord's line): no event object and no options string in between. The usual
    options (NOP, NOP, timestamps, as format_options spells them) and spellings from the flags
    table need no escaping; anything else takes the two steps."""
    opts = seg.options
    head = _direction_conn(direction, cid)
    if (head is None or type(now) is not float or len(opts) != 3 or type(opts[2]) is not Timestamps
            or type(opts[0]) is not Nop or type(opts[1]) is not Nop):
        return event_line(segment_event(now, direction, cid, seg, gso))
    ts = opts[2]
    gso_member = f',"gso":{gso}' if gso else ""
    return (f'{{"time":{_time_text(now)},{head},"flags":"{FLAG_SPELLINGS[seg.flags & 0xFF]}",'
            f'"seq":{seg.seq},"ack":{seg.ack},"win":{seg.window},"len":{len(seg.payload)},'
            f'"options":"nop,nop,TS val {ts.tsval} ecr {ts.tsecr}"{gso_member},"kind":"SegmentEvent"}}\n')


# The last packet line and what it says (replaced whole): the packets one step of the loop sends
# or reads share their time object, direction and, full-sized, their length, so most packet lines
# are the one before again.
_last_packet: list[tuple[float | None, str, int, int, str]] = [(None, "", 0, 0, "")]


def _packet_line(e: PacketEvent) -> str:
    """A packet's JSON line (see _segment_line): its length, never its octets."""
    length = e.orig_len or len(e.data)
    last = _last_packet[0]
    if e.time is last[0] and length == last[2] and e.direction == last[1] and e.gso == last[3]:
        return last[4]
    if not (_plain(e.direction) and type(e.time) is float):
        return _ENCODE(e.to_dict()) + "\n"
    gso = f',"gso":{e.gso}' if e.gso else ""
    line = (f'{{"kind":"PacketEvent","time":{_time_text(e.time)},"direction":"{e.direction}",'
            f'"len":{length}{gso}}}\n')
    _last_packet[0] = (e.time, e.direction, length, e.gso, line)
    return line


def read_jsonl(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        line = line.strip()
        if line:
            yield json.loads(line)
