"""The `freebsd` profile: FreeBSD's defaults, and the platform choices its scripts pin.

Scripts written on FreeBSD (the FreeBSD TCP test suite) pin choices the RFCs leave to the
implementation. With the stack's settings alone, nearly every one of them would stop at its first
SYN or SYN-ACK on the order of the options, and the rest of the script, where the RFC behaviour
under test is, would never be checked. So under this profile a difference that is only such a
platform choice is recorded, the script goes on, and it ends as a failure that names the
platform choice (never a pass), unless a real mismatch fails it first. The choices:
- SYN and SYN-ACK option layout: order and NOP/EOL padding (RFC 9293 3.1 leaves both to the
  sender) and the window-scale shift (RFC 7323 2.3: the receiver's choice; FreeBSD sizes it from
  kern.ipc.maxsockbuf, so scripts expect 6). The options present and their values must agree.
- The window advertised when the right edge could move by less than the SWS threshold: the
  stack keeps RCV.NXT + RCV.WND fixed (RFC 9293 3.8.6.2.2), so after a FIN or a little data its
  window is a few octets below FreeBSD's, which advertises its free space (at most 65535).
- The window field of a RST, which no receiver reads (FreeBSD writes 0).
The profile also sizes buffers as FreeBSD does, a setting rather than protocol behaviour: once
a connection's MSS is known, FreeBSD's tcp_mss() rounds its receive buffer up to a multiple of it
(65536 -> 65700 with MSS 1460), which SO_RCVBUF then reports and every window advertised after
the handshake reflects; `round_rcvbuf` does the same to the stack's connections.
"""

from __future__ import annotations

from drill import ast
from stack.config import TcpConfig
from stack.host import Host
from stack.tcp.state import State
from stack.wire.tcp import Eol, Mss, Nop, Sack, SackPermitted, TcpOption, TcpSegment, Timestamps, WindowScale


def freebsd_config() -> TcpConfig:
    """FreeBSD 13's defaults where the stack has the setting: recvspace 64 KB, sendspace 32 KB,
    delacktime 100 ms, rexmit_min 30 ms, rexmit_initial 1 s, msl 30 s, keepidle 2 h, keepintvl
    75 s, keepcnt 8 (TCP_KEEPCNT's default), 10 segments initial window."""
    return TcpConfig().with_(
        rcvbuf=65536,
        sndbuf=32768,
        delack_timeout=0.1,
        rto_min=0.03,
        rto_initial=1.0,
        msl=30.0,
        keepalive_idle=7200.0,
        keepalive_interval=75.0,
        keepalive_count=8,
    )


def _canonical(options: tuple[TcpOption, ...]) -> list[str]:
    out = []
    for o in options:
        if isinstance(o, Mss):
            out.append(f"mss {o.value}")
        elif isinstance(o, SackPermitted):
            out.append("sackOK")
        elif isinstance(o, Timestamps):
            out.append(f"TS ecr {o.tsecr}")
        elif isinstance(o, WindowScale):
            out.append("wscale")
        elif isinstance(o, Sack):
            out.append(f"sack {o.blocks}")
        elif not isinstance(o, Nop | Eol):
            out.append(repr(o))
    return sorted(out)


def _script_canonical(options: tuple[ast.TcpOption, ...]) -> list[str]:
    out = []
    for o in options:
        if isinstance(o, ast.Mss):
            out.append(f"mss {o.value}")
        elif isinstance(o, ast.SackOk):
            out.append("sackOK")
        elif isinstance(o, ast.Timestamp):
            out.append(f"TS ecr {o.ecr}")
        elif isinstance(o, ast.WScale):
            out.append("wscale")
        elif isinstance(o, ast.Sack):
            out.append(f"sack {o.blocks}")
    return sorted(out)


def syn_layout_only(ev: ast.PacketEvent, seg: TcpSegment) -> bool:
    """True when seg (a SYN or SYN-ACK) has the options ev expects, but for their layout and
    the window-scale shift."""
    if not isinstance(ev.options, tuple) or "S" not in ev.flags:
        return False
    return _canonical(seg.options) == _script_canonical(ev.options)


def window_choice(ev: ast.PacketEvent, seg: TcpSegment, mss: int) -> str | None:
    """What platform choice explains seg's window differing from ev's, if one does."""
    if ev.win is None or seg.window == ev.win:
        return None
    if "R" in ev.flags:
        return f"RST window {seg.window}, FreeBSD writes {ev.win}"
    if 0 < ev.win - seg.window < mss:
        return f"window {seg.window} (right edge kept by receiver SWS avoidance), FreeBSD advertises {ev.win}"
    return None


def round_rcvbuf(host: Host, done: set[int]) -> None:
    """Round the receive buffer of each newly synchronized connection up to a multiple of its
    MSS, as FreeBSD's tcp_mss() does; `done` holds the ids of the connections already seen."""
    for conn in host.connections.values():
        if id(conn) not in done and (conn.connected or conn.state is State.SYN_RECEIVED):
            done.add(id(conn))
            conn.rcvbuf = -(-conn.rcvbuf // conn.mss) * conn.mss
