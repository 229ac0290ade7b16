"""TCP header and options (RFC 9293 section 3.1; options: RFC 9293 3.2, RFC 7323, RFC 2018).

A parsed segment is a frozen `TcpSegment`; its options are kept as an ordered tuple of option
values so that parse/build are symmetric and packetdrill-style matching can check their order.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from stack.errors import ParseError


class Flags(enum.IntFlag):
    FIN = 0x01
    SYN = 0x02
    RST = 0x04
    PSH = 0x08
    ACK = 0x10
    URG = 0x20
    ECE = 0x40
    CWR = 0x80


FLAG_LETTERS = (
    (Flags.SYN, "S"), (Flags.FIN, "F"), (Flags.RST, "R"), (Flags.PSH, "P"),
    (Flags.ACK, "."), (Flags.URG, "U"), (Flags.ECE, "E"), (Flags.CWR, "W"),
)


def flags_str(flags: int) -> str:
    """tcpdump/packetdrill spelling: S, S., P., F., R, R. ..."""
    return "".join(letter for bit, letter in FLAG_LETTERS if flags & bit) or "none"


# Option kinds (IANA "TCP Option Kind Numbers").
OPT_EOL = 0
OPT_NOP = 1
OPT_MSS = 2
OPT_WSCALE = 3
OPT_SACK_PERMITTED = 4
OPT_SACK = 5
OPT_TIMESTAMP = 8


@dataclass(frozen=True, slots=True)
class Eol:
    pass


@dataclass(frozen=True, slots=True)
class Nop:
    pass


@dataclass(frozen=True, slots=True)
class Mss:
    value: int


@dataclass(frozen=True, slots=True)
class WindowScale:
    shift: int


@dataclass(frozen=True, slots=True)
class SackPermitted:
    pass


@dataclass(frozen=True, slots=True)
class Sack:
    blocks: tuple[tuple[int, int], ...]  # (left edge, right edge) pairs, right edge exclusive


@dataclass(frozen=True, slots=True)
class Timestamps:
    tsval: int
    tsecr: int


@dataclass(frozen=True, slots=True)
class UnknownOption:
    kind: int
    data: bytes


TcpOption = Eol | Nop | Mss | WindowScale | SackPermitted | Sack | Timestamps | UnknownOption


@dataclass(frozen=True, slots=True)
class TcpSegment:
    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: Flags
    window: int  # the raw 16-bit field, before any window scaling
    payload: bytes = b""
    options: tuple[TcpOption, ...] = ()
    urgent: int = 0

    @property
    def seg_len(self) -> int:
        """SEG.LEN of RFC 9293: payload octets plus one each for SYN and FIN."""
        n = len(self.payload)
        if self.flags & Flags.SYN:
            n += 1
        if self.flags & Flags.FIN:
            n += 1
        return n

    def _find(self, kind: type) -> object | None:
        for opt in self.options:
            if type(opt) is kind:
                return opt
        return None

    @property
    def mss(self) -> int | None:
        o = self._find(Mss)
        return o.value if isinstance(o, Mss) else None

    @property
    def wscale(self) -> int | None:
        o = self._find(WindowScale)
        return o.shift if isinstance(o, WindowScale) else None

    @property
    def sack_permitted(self) -> bool:
        return self._find(SackPermitted) is not None

    @property
    def sack_blocks(self) -> tuple[tuple[int, int], ...]:
        o = self._find(Sack)
        return o.blocks if isinstance(o, Sack) else ()

    @property
    def timestamps(self) -> Timestamps | None:
        o = self._find(Timestamps)
        return o if isinstance(o, Timestamps) else None


HEADER = struct.Struct("!HHIIBBHHH")  # without the checksum split: see parse/build
MIN_HEADER_LEN = 20


def parse_tcp(data: bytes | memoryview, src: bytes, dst: bytes, verify_checksum: bool = True) -> TcpSegment:
    """Parse a TCP segment. `src`/`dst` are the packed IPv4 addresses of the pseudo-header.

    Raises ParseError on a short header, a bad data offset, a bad checksum or a malformed option
    list (an option whose length runs past the header, a known option with the wrong length).
    Unknown options are kept as UnknownOption, skipped by their length.
    """
    raise NotImplementedError


def build_tcp(seg: TcpSegment, src: bytes, dst: bytes) -> bytes:
    """Build a TCP segment with a correct checksum. Options are encoded in order and padded
    with EOL (zero) bytes to a multiple of four octets."""
    raise NotImplementedError
