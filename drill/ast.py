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


@dataclass(frozen=True, kw_only=True)
class UnsupportedEvent:
    """Valid packetdrill this runner cannot execute; the runner must fail the script on it.

    `timing` is None only for the script's initial shell command (see Script.init_command).
    """

    line: int
    timing: Timing | None
    what: str  # e.g. "%{ }% code block", "shell command `...`", "UDP packet"


Event = SyscallEvent | PacketEvent | UnsupportedEvent


@dataclass(frozen=True)
class Script:
    """A whole script: `--name=value` options (value None for a bare `--name`), the untimed
    shell command packetdrill allows before the first event, and the events in order."""

    options: dict[str, str | None] = field(default_factory=dict)
    init_command: UnsupportedEvent | None = None
    events: tuple[Event, ...] = ()
