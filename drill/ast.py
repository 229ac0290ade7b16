"""The parsed form of a packetdrill script: frozen dataclasses, no behaviour.

Times are whole microseconds, as packetdrill keeps them. Sequence and ACK numbers are kept as
written: the runner maps them (relative to the ISNs) when it runs the script.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class TimeKind(Enum):
    ABSOLUTE = "absolute"  # `0.1`: at 0.1 s after the script started
    RELATIVE = "relative"  # `+0.1`: 0.1 s after the previous event
    ANY = "any"  # `*`: whenever (outbound packets only)
    ABSOLUTE_RANGE = "absolute_range"  # `0.1~0.2` (outbound packets only)
    RELATIVE_RANGE = "relative_range"  # `+0.1~+0.2` (outbound packets only)


@dataclass(frozen=True)
class Timing:
    """When an event happens.

    `usecs` is the start (0 for ANY); `end_usecs` the end of a range. `block_end_usecs` is the
    end time of a blocking call (`+0...0.2 read(...)`); as in packetdrill it is measured from the
    same origin as the start, so for a relative start it is relative to the previous event.
    """

    kind: TimeKind
    usecs: int = 0
    end_usecs: int | None = None
    block_end_usecs: int | None = None


@dataclass(frozen=True)
class Elided:
    """`...`: a syscall argument left unchecked, or `<...>`: TCP options left unchecked."""


ELIDED = Elided()


# --- syscall argument expressions -------------------------------------------------------------


@dataclass(frozen=True)
class IntLit:
    value: int


@dataclass(frozen=True)
class Symbols:
    """A symbolic constant or an OR of them: `SOCK_STREAM` -> ("SOCK_STREAM",)."""

    names: tuple[str, ...]


@dataclass(frozen=True)
class StringLit:
    value: str
    prefix: bool = False  # written `"abc"...`: only a prefix is given


@dataclass(frozen=True)
class ListExpr:
    """`[1]`, `[0]`, `[{...}]`: the value behind a pointer argument."""

    items: tuple[Expr, ...]


@dataclass(frozen=True)
class RawStruct:
    """A `{...}` struct, kept as its source text (braces included) for the runner to interpret."""

    text: str


Expr = IntLit | Symbols | StringLit | ListExpr | RawStruct | Elided


# --- TCP options ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mss:
    value: int


@dataclass(frozen=True)
class SackOk:
    pass


@dataclass(frozen=True)
class Nop:
    pass


@dataclass(frozen=True)
class Eol:
    pass


@dataclass(frozen=True)
class WScale:
    shift: int


@dataclass(frozen=True)
class Timestamp:
    val: int
    ecr: int


@dataclass(frozen=True)
class Sack:
    blocks: tuple[tuple[int, int], ...]  # (left, right) edges as written


TcpOption = Mss | SackOk | Nop | Eol | WScale | Timestamp | Sack


# --- events -----------------------------------------------------------------------------------


class Direction(Enum):
    IN = "<"  # injected into the stack
    OUT = ">"  # expected from the stack


@dataclass(frozen=True, kw_only=True)
class SyscallEvent:
    line: int
    timing: Timing
    name: str
    args: tuple[Expr, ...]
    result: int
    errno: str | None = None  # `= -1 EAGAIN (Resource temporarily unavailable)` -> "EAGAIN"
    note: str | None = None  # the text in parentheses after the errno


@dataclass(frozen=True, kw_only=True)
class PacketEvent:
    """A TCP packet line.

    `options` is None when no option list was written, ELIDED for `<...>`, else the options in
    order.
    """

    line: int
    timing: Timing
    direction: Direction
    flags: str  # as written, e.g. "S.", "P.", ".", "F.", "R"
    seq_start: int
    seq_end: int
    payload_len: int
    ack: int | None = None
    win: int | None = None
    urg: int | None = None
    options: tuple[TcpOption, ...] | Elided | None = None
    # `(ttl 4)`, `(tos 0x20)`, `(hlim 4)`, `(class 0x20)` before the flags: IP header fields.
    ip_fields: tuple[tuple[str, int], ...] = ()
    seq_absolute: bool = False  # `0:0(0)!` (nplab packetdrill): the number as on the wire


@dataclass(frozen=True, kw_only=True)
class IcmpEvent:
    """An inbound ICMP message, `< icmp unreachable frag_needed mtu 1200 [1:1461(1460)]`: type and
    code by packetdrill's names (drill.icmp: ICMPv4's or ICMPv6's by the script's IP version, or
    ICMPv6's when written `icmpv6`), and the start sequence number of the quoted segment the
    stack sent (None when no segment is quoted)."""

    line: int
    timing: Timing
    icmp_type: str
    code: str | None = None
    mtu: int | None = None
    quoted_seq: int | None = None
    icmpv6: bool = False  # written `icmpv6` or `icmp6`


@dataclass(frozen=True, kw_only=True)
class UnsupportedEvent:
    """Valid packetdrill this runner cannot execute; the runner must fail the script on it.

    """

    line: int
    timing: Timing
    what: str  # e.g. "%{ }% code block", "UDP packet"


@dataclass(frozen=True, kw_only=True)
class ShellEvent:
    """A backquoted shell command: `sysctl -w net.inet.tcp.sack.enable=1`.

    The runner maps what it can (sysctl settings, drill.shell) and notes or refuses the rest.
    `timing` is None for the untimed command packetdrill allows before the first event.
    """

    line: int
    timing: Timing | None
    command: str


@dataclass(frozen=True, kw_only=True)
class CodeEvent:
    """A `%{ ... }%` block (packetdrill runs it as Python against TCP_INFO); the runner knows
    only `assert tcpi_state == TCPI_<STATE>` and makes any other code unsupported."""

    line: int
    timing: Timing
    code: str


Event = SyscallEvent | PacketEvent | IcmpEvent | ShellEvent | CodeEvent | UnsupportedEvent


@dataclass(frozen=True)
class Script:
    """A whole script: `--name=value` options (value None for a bare `--name`), the untimed
    shell command packetdrill allows before the first event, the events in order, and the
    untimed cleanup command packetdrill allows after the last one."""

    options: dict[str, str | None] = field(default_factory=dict)
    init_command: ShellEvent | None = None
    events: tuple[Event, ...] = ()
    cleanup_command: ShellEvent | None = None
