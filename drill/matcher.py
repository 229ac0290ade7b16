"""Script packets <-> wire packets: building what a `<` line injects, checking what a `>` line expects.

Numbering follows packetdrill. The script's remote end chooses its own sequence numbers, so the
sequence numbers of inbound packets (and the ACK numbers and SACK blocks of outbound ones, which
refer to them) are used as written. The stack's numbers are relative to its ISN, learned from
the SYN or SYN-ACK it sends: an outbound `1:1001(1000)` is ISN+1..ISN+1001 on the wire, an
inbound `ack 1001` and `sack 1001:2001` likewise (when the script writes that SYN with a
non-zero number, as packetdrill allows, all of them are offset by it).

Timestamps: the script's inbound TS val is sent as written; its TS ecr names the TS val the
script wrote on an outbound line, and is replaced by the value the stack really sent on that line
(the stack's latest TS val when the script's value was never seen). On outbound lines TS ecr must
equal what the script wrote (the stack echoes the remote's values, which are the script's own),
while TS val is not checked: packetdrill checks it against its own clock, which the stack does not
share.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from drill import ast
from drill.addresses import LOCAL_IP, REMOTE_IP, Addresses
from stack.wire.segment import tcp_packet
from stack.wire.tcp import (
    Eol,
    Flags,
    Mss,
    Nop,
    Sack,
    SackPermitted,
    TcpOption,
    TcpSegment,
    Timestamps,
    WindowScale,
    format_options,
)

__all__ = ["LOCAL_IP", "REMOTE_IP", "Flow"]  # the addresses: drill.addresses
REMOTE_PORT = 8080  # the port `connect(fd, ..., ...)` connects to and `bind(fd, ..., ...)` binds
PASSIVE_REMOTE_PORT = 48000  # the script's port when it connects to a listener
MASK = 0xFFFFFFFF

_FLAG_BITS = {
    "F": Flags.FIN, "S": Flags.SYN, "R": Flags.RST, "P": Flags.PSH,
    ".": Flags.ACK, "E": Flags.ECE, "W": Flags.CWR, "U": Flags.URG,
}  # fmt: skip


def script_flags(text: str) -> Flags:
    flags = Flags(0)
    for ch in text:
        flags |= _FLAG_BITS[ch]
    return flags


def flags_text(flags: int) -> str:
    """A flag set in script spelling (S. P. F. R. ...): letters first, the ACK dot last."""
    letters = "".join(ch for ch in "FSRPEWU" if flags & _FLAG_BITS[ch])
    text = letters + ("." if flags & Flags.ACK else "")
    order = {"S": 0, "F": 1, "R": 2, "P": 3, "E": 4, "W": 5, "U": 6, ".": 7}
    return "".join(sorted(text, key=order.__getitem__)) or "none"


@dataclass
class Flow:
    """The connection under test as the script sees it: its addresses, ports and the stack's ISN."""

    local_port: int | None = None
    remote_port: int = REMOTE_PORT
    local_isn: int | None = None
    ts_vals: dict[int, int] = field(default_factory=dict)  # script TS val -> the stack's real one
    last_ts_val: int | None = None
    addrs: Addresses = field(default_factory=Addresses)

    def local_rel(self, wire: int) -> int:
        """A wire number in the stack's sequence space, relative to its ISN."""
        return (wire - (self.local_isn or 0)) & MASK

    def local_abs(self, rel: int) -> int:
        return (rel + (self.local_isn or 0)) & MASK


# --- inbound --------------------------------------------------------------------------------


def _inbound_option(opt: ast.TcpOption, flow: Flow) -> TcpOption:
    if isinstance(opt, ast.Mss):
        return Mss(opt.value)
    if isinstance(opt, ast.SackOk):
        return SackPermitted()
    if isinstance(opt, ast.Nop):
        return Nop()
    if isinstance(opt, ast.Eol):
        return Eol()
    if isinstance(opt, ast.WScale):
        return WindowScale(opt.shift)
    if isinstance(opt, ast.Timestamp):
        if opt.ecr == 0:
            ecr = 0
        else:
            ecr = flow.ts_vals.get(opt.ecr, flow.last_ts_val if flow.last_ts_val is not None else opt.ecr)
        return Timestamps(opt.val, ecr)
    return Sack(tuple((flow.local_abs(a), flow.local_abs(b)) for a, b in opt.blocks))


def inbound_segment(ev: ast.PacketEvent, flow: Flow) -> TcpSegment:
    """The segment a `<` line describes, with the flow's ports and the stack's ISN applied."""
    if flow.local_port is None:
        raise ValueError("no local port yet: bind() or connect() first")
    flags = script_flags(ev.flags)
    ack = flow.local_abs(ev.ack) if ev.ack is not None else 0
    if ev.ack is not None and not flags & Flags.ACK:
        ack = ev.ack  # a raw ack field without the ACK flag: as written
    options: tuple[TcpOption, ...] = ()
    if isinstance(ev.options, tuple):
        options = tuple(_inbound_option(o, flow) for o in ev.options)
    win = ev.win if ev.win is not None else 65535
    return TcpSegment(
        flow.remote_port, flow.local_port, ev.seq_start & MASK, ack, flags, win,
        bytes(ev.payload_len), options, ev.urg or 0,
    )  # fmt: skip


def inbound_packet(ev: ast.PacketEvent, flow: Flow) -> bytes:
    # The wire addresses carry the family (IPv4 under ipv4-mapped-ipv6), and so the pseudo-header.
    return tcp_packet(flow.addrs.remote_ip, flow.addrs.local_ip, inbound_segment(ev, flow))


# --- outbound -------------------------------------------------------------------------------


def _strip_padding(options: tuple[TcpOption, ...], want_eol: bool) -> tuple[TcpOption, ...]:
    if not want_eol:
        while options and isinstance(options[-1], Eol):
            options = options[:-1]
    return options


def describe_actual(seg: TcpSegment, flow: Flow) -> str:
    """An outbound segment in script spelling, with the stack's numbers made relative."""
    start = flow.local_rel(seg.seq)
    n = len(seg.payload)
    text = f"{flags_text(seg.flags)} {start}:{(start + n) & MASK}({n})"
    if seg.flags & Flags.ACK:
        text += f" ack {seg.ack}"
    text += f" win {seg.window}"
    if seg.urgent:
        text += f" urg {seg.urgent}"
    opts = _strip_padding(seg.options, False)
    if opts:
        shown = tuple(
            Sack(tuple((a, b) for a, b in o.blocks)) if isinstance(o, Sack) else o for o in opts
        )
        text += f" <{format_options(shown)}>"
    return text


def describe_expected(ev: ast.PacketEvent) -> str:
    text = f"{ev.flags} {ev.seq_start}:{ev.seq_end}({ev.payload_len})"
    if ev.ack is not None:
        text += f" ack {ev.ack}"
    if ev.win is not None:
        text += f" win {ev.win}"
    if ev.urg is not None:
        text += f" urg {ev.urg}"
    if isinstance(ev.options, ast.Elided):
        text += " <...>"
    elif ev.options is not None:
        text += f" <{', '.join(_script_option_text(o) for o in ev.options)}>"
    return text


def _script_option_text(o: ast.TcpOption) -> str:
    if isinstance(o, ast.Mss):
        return f"mss {o.value}"
    if isinstance(o, ast.SackOk):
        return "sackOK"
    if isinstance(o, ast.Nop):
        return "nop"
    if isinstance(o, ast.Eol):
        return "eol"
    if isinstance(o, ast.WScale):
        return f"wscale {o.shift}"
    if isinstance(o, ast.Timestamp):
        return f"TS val {o.val} ecr {o.ecr}"
    return "sack " + " ".join(f"{a}:{b}" for a, b in o.blocks)


def learn(seg: TcpSegment, flow: Flow, script_isn: int = 0) -> None:
    """Take the stack's ISN and port from a SYN or SYN-ACK it sent. The script may give that SYN
    a non-zero sequence number (`> S. 1000:1000(0)`): its numbers are then relative to that."""
    if seg.flags & Flags.SYN:
        flow.local_isn = (seg.seq - script_isn) & MASK
        flow.local_port = seg.src_port


def match_outbound(ev: ast.PacketEvent, seg: TcpSegment, flow: Flow) -> str | None:
    """None when seg is what the `>` line expects, else what differs (first difference)."""
    if seg.flags & Flags.SYN:
        learn(seg, flow, ev.seq_start)
    want_flags = script_flags(ev.flags)
    if seg.flags != want_flags:
        return f"flags {flags_text(seg.flags)}, expected {ev.flags}"
    start = seg.seq if ev.seq_absolute else flow.local_rel(seg.seq)
    if start != ev.seq_start & MASK:
        return f"sequence number {start}, expected {ev.seq_start}"
    if len(seg.payload) != ev.payload_len:
        return f"payload length {len(seg.payload)}, expected {ev.payload_len}"
    if ev.ack is not None and seg.ack != ev.ack & MASK:
        return f"ack {seg.ack}, expected {ev.ack}"
    if ev.win is not None and seg.window != ev.win:
        return f"window {seg.window}, expected {ev.win}"
    if ev.urg is not None and seg.urgent != ev.urg:
        return f"urgent pointer {seg.urgent}, expected {ev.urg}"
    want = ev.options
    problem = None if isinstance(want, ast.Elided) else _match_options(want or (), seg.options)
    if problem is None:
        accept(ev, seg, flow)
    return problem


def _match_options(want: tuple[ast.TcpOption, ...], got_raw: tuple[TcpOption, ...]) -> str | None:
    got = _strip_padding(got_raw, bool(want) and isinstance(want[-1], ast.Eol))
    # EOL ends the list and padding is zeros (RFC 9293 3.2): on the wire `eol,eol` after the
    # last option is the one EOL the parse gives back, followed by padding.
    while len(want) > 1 and isinstance(want[-1], ast.Eol) and isinstance(want[-2], ast.Eol):
        want = want[:-1]
    if len(got) != len(want):
        return (
            f"options <{format_options(got)}>, expected <{', '.join(map(_script_option_text, want))}>"
            if want
            else f"options <{format_options(got)}>, expected none"
        )
    for i, (w, g) in enumerate(zip(want, got, strict=True)):
        ok = (
            (isinstance(w, ast.Mss) and isinstance(g, Mss) and g.value == w.value)
            or (isinstance(w, ast.SackOk) and isinstance(g, SackPermitted))
            or (isinstance(w, ast.Nop) and isinstance(g, Nop))
            or (isinstance(w, ast.Eol) and isinstance(g, Eol))
            or (isinstance(w, ast.WScale) and isinstance(g, WindowScale) and g.shift == w.shift)
            or (isinstance(w, ast.Timestamp) and isinstance(g, Timestamps) and g.tsecr == w.ecr)
            or (
                isinstance(w, ast.Sack)
                and isinstance(g, Sack)
                and g.blocks == tuple((a & MASK, b & MASK) for a, b in w.blocks)
            )
        )
        if not ok:
            return f"option {i + 1} is <{format_options((g,))}>, expected <{_script_option_text(w)}>"
    return None


def accept(ev: ast.PacketEvent, seg: TcpSegment, flow: Flow) -> None:
    """seg is taken as the packet of ev: remember its TS val under the script's name for it."""
    ts = seg.timestamps
    if ts is None:
        return
    flow.last_ts_val = ts.tsval
    if isinstance(ev.options, tuple):
        for o in ev.options:
            if isinstance(o, ast.Timestamp):
                flow.ts_vals[o.val] = ts.tsval


def note_sent(seg: TcpSegment, flow: Flow) -> None:
    """Every segment the stack sends updates the latest TS val (see the module docstring)."""
    ts = seg.timestamps
    if ts is not None:
        flow.last_ts_val = ts.tsval
