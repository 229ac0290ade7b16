"""What a script's backquoted shell line means for the stack under test.

Public packetdrill corpora set kernel tunables with `sysctl` and inspect the kernel with tools
such as `sockstat`. The runner has no kernel and no shell, so each line is interpreted:
- a sysctl with a stack equivalent (FreeBSD `net.inet.tcp.*`, Linux `net.ipv4.tcp_*`) changes the
  stack settings (stack.config.TcpConfig) for the sockets created after it, as a sysctl does;
- a sysctl whose value is what the stack always does (`insecure_rst=0`: RFC 5961 checks on) or
  that has no effect here (`hostcache.purgenow`) is noted;
- a sysctl switching on behaviour the stack lacks (`insecure_rst=1`, TCP Fast Open) makes the
  script unsupported, naming the setting, rather than failing it later for a misleading reason;
- any other sysctl is skipped with a note naming it;
- commands that only inspect or reset the host (`sockstat`, `defaults.sh`, `setkey -F`) are
  ignored with a note; any other command makes the script unsupported.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

from stack.config import TcpConfig

_Changes = dict[str, object]


@dataclass(frozen=True)
class ShellAction:
    """`changes` to TcpConfig fields; `notes` for the report; `unsupported` names what cannot run."""

    changes: _Changes = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    unsupported: str | None = None


def _int(value: str) -> int:
    return int(value.split()[0], 0)


def _ms(field_name: str) -> Callable[[str], _Changes]:
    return lambda v: {field_name: _int(v) / 1000}


def _to(field_name: str, convert: Callable[[str], object] = _int) -> Callable[[str], _Changes]:
    return lambda v: {field_name: convert(v)}


def _rfc1323(v: str) -> _Changes:
    # FreeBSD: 0 none, 1 window scaling and timestamps, 2 window scaling only, 3 timestamps only.
    n = _int(v)
    return {"window_scaling": n in (1, 2), "timestamps": n in (1, 3)}


def _linux_mem(field_name: str) -> Callable[[str], _Changes]:
    # tcp_rmem / tcp_wmem are "min default max": the default is a new socket's buffer.
    def convert(v: str) -> _Changes:
        parts = v.split()
        return {field_name: int(parts[1] if len(parts) == 3 else parts[0])}

    return convert


# sysctl name -> the TcpConfig fields it sets. Times: FreeBSD in ms, Linux in s.
MAPPED: dict[str, Callable[[str], _Changes]] = {
    "net.inet.tcp.recvspace": _to("rcvbuf"),
    "net.inet.tcp.sendspace": _to("sndbuf"),
    "net.inet.tcp.sack.enable": _to("sack", lambda v: bool(_int(v))),
    "net.inet.tcp.rfc1323": _rfc1323,
    "net.inet.tcp.delacktime": _ms("delack_timeout"),
    "net.inet.tcp.keepidle": _ms("keepalive_idle"),
    "net.inet.tcp.keepintvl": _ms("keepalive_interval"),
    "net.inet.tcp.keepcnt": _to("keepalive_count"),
    "net.inet.tcp.keepinit": _ms("keepinit"),
    "net.inet.tcp.rexmit_initial": _ms("rto_initial"),
    "net.inet.tcp.rexmit_min": _ms("rto_min"),
    "net.inet.tcp.rexmit_slop": _ms("rto_slop"),
    # FreeBSD offers the window scale that covers sb_max (syncache_add, tcp_connect).
    "kern.ipc.maxsockbuf": _to("wscale_space"),
    "net.inet.tcp.rexmit_drop_options": _to("syn_drop_options_after", lambda v: 3 if _int(v) else 0),
    "net.inet.tcp.insecure_rst": _to("rfc5961_rst", lambda v: not _int(v)),
    "net.inet.tcp.insecure_syn": _to("rfc5961_syn", lambda v: not _int(v)),
    "net.inet.tcp.icmp_may_rst": _to("icmp_hard_errors", lambda v: bool(_int(v))),
    "net.inet.tcp.msl": _ms("msl"),
    "net.inet.tcp.mssdflt": _to("default_peer_mss"),
    "net.inet.tcp.finwait2_timeout": _ms("fin_wait_2_timeout"),
    "net.inet.tcp.drop_synfin": _to("drop_synfin", lambda v: bool(_int(v))),
    "net.ipv4.tcp_sack": _to("sack", lambda v: bool(_int(v))),
    "net.ipv4.tcp_timestamps": _to("timestamps", lambda v: bool(_int(v))),
    "net.ipv4.tcp_window_scaling": _to("window_scaling", lambda v: bool(_int(v))),
    "net.ipv4.tcp_rmem": _linux_mem("rcvbuf"),
    "net.ipv4.tcp_wmem": _linux_mem("sndbuf"),
    "net.ipv4.tcp_syn_retries": _to("syn_retries"),
    "net.ipv4.tcp_synack_retries": _to("synack_retries"),
    "net.ipv4.tcp_retries2": _to("data_retries"),
    "net.ipv4.tcp_fin_timeout": _to("fin_wait_2_timeout", lambda v: float(_int(v))),
    "net.ipv4.tcp_keepalive_time": _to("keepalive_idle", lambda v: float(_int(v))),
    "net.ipv4.tcp_keepalive_intvl": _to("keepalive_interval", lambda v: float(_int(v))),
    "net.ipv4.tcp_keepalive_probes": _to("keepalive_count"),
}

# sysctl name -> (the values that are what the stack does anyway, why).
MATCHING: dict[str, tuple[frozenset[int], str]] = {
    "net.inet.tcp.blackhole": (frozenset({0}), "a RST answers a segment for a closed port"),
    "net.inet.tcp.ecn.enable": (frozenset({0, 2}), "no ECN unless asked (the stack never negotiates ECN)"),
    "net.inet.tcp.fastopen.client_enable": (frozenset({0}), "no TCP Fast Open"),
    "net.inet.tcp.fastopen.server_enable": (frozenset({0}), "no TCP Fast Open"),
    "net.inet.tcp.syncookies_only": (frozenset({0}), "a SYN cache, not SYN cookies alone"),
    "net.inet.tcp.udp_tunneling_port": (frozenset({0}), "no TCP over UDP"),
    "net.ipv4.tcp_ecn": (frozenset({0, 2}), "no ECN unless asked (the stack never negotiates ECN)"),
    "net.ipv4.tcp_fastopen": (frozenset({0}), "no TCP Fast Open"),
}

# sysctls that change nothing the stack has.
NO_EFFECT: dict[str, str] = {
    "net.inet.tcp.hostcache.purgenow": "the stack keeps no host cache",
    "net.inet.tcp.syncookies": "SYN cookies are only a fallback for a full SYN cache",
}

# Commands that only inspect or reset the host: packetdrill runs them, the runner need not.
IGNORED_COMMANDS = ("sockstat", "setkey", "netstat", "ss", "defaults.sh")


def interpret(command: str) -> ShellAction:
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    if not words:
        return ShellAction(notes=("empty shell command ignored",))
    program = words[0].rsplit("/", 1)[-1]
    if program == "sysctl":
        return _sysctl(words[1:])
    if program in IGNORED_COMMANDS or program.endswith("defaults.sh"):
        return ShellAction(notes=(f"`{command}` ignored: it inspects or resets the host only",))
    return ShellAction(unsupported=f"shell command `{program}`")


def _sysctl(args: list[str]) -> ShellAction:
    changes: _Changes = {}
    notes: list[str] = []
    settings = [a for a in args if "=" in a and not a.startswith("-")]
    if not settings:
        return ShellAction(notes=(f"`sysctl {' '.join(args)}` ignored: it sets nothing",))
    for setting in settings:
        name, _, value = setting.partition("=")
        name = name.replace("/", ".")
        try:
            if name in MAPPED:
                changes.update(MAPPED[name](value))
            elif name in MATCHING:
                values, why = MATCHING[name]
                if _int(value) not in values:
                    return ShellAction(unsupported=f"sysctl {name}={value.strip()}")
                notes.append(f"sysctl {name}={value.strip()}: the stack's behaviour ({why})")
            elif name in NO_EFFECT:
                notes.append(f"sysctl {name} ignored: {NO_EFFECT[name]}")
            else:
                notes.append(f"sysctl {name}={value.strip()} skipped: no stack equivalent")
        except (ValueError, IndexError):
            return ShellAction(unsupported=f"sysctl {name}={value.strip()} (value not understood)")
    return ShellAction(changes, tuple(notes))


def apply(config: TcpConfig, action: ShellAction) -> TcpConfig:
    return config.with_(**action.changes) if action.changes else config
