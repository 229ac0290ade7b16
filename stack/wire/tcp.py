"""TCP header and options (RFC 9293 section 3.1; options: RFC 9293 3.2, RFC 7323, RFC 2018).

A parsed segment is a `TcpSegment`; its options are kept as an ordered tuple of option
values so that parse/build are symmetric and packetdrill-style matching can check their order.

Segments, options and the IP packets of `stack.wire` are values: nothing changes one once built
(`dataclasses.replace` makes a changed copy). They are not `frozen=True` dataclasses because a
frozen dataclass sets each field through `object.__setattr__`: 0.7 µs against 0.1 µs to build
a segment, paid several times per segment on the way in and out.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from stack.checksum import internet_checksum, pseudo_header_sum
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


# The same bits as plain ints: the hot path tests them per segment, and IntFlag arithmetic costs
# several times an int's. A parsed segment's `flags` is a plain int.
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80

FLAG_LETTERS = (
    (Flags.SYN, "S"), (Flags.FIN, "F"), (Flags.RST, "R"), (Flags.PSH, "P"),
    (Flags.ACK, "."), (Flags.URG, "U"), (Flags.ECE, "E"), (Flags.CWR, "W"),
)


def _spell(flags: int) -> str:
    return "".join(letter for bit, letter in FLAG_LETTERS if flags & bit) or "none"


FLAG_SPELLINGS = tuple(_spell(i) for i in range(256))  # flags_str of each octet: traced per segment


def flags_str(flags: int) -> str:
    """tcpdump/packetdrill spelling: S, S., P., F., R, R. ..."""
    return FLAG_SPELLINGS[flags & 0xFF]


# Option kinds (IANA "TCP Option Kind Numbers").
OPT_EOL = 0
OPT_NOP = 1
OPT_MSS = 2
OPT_WSCALE = 3
OPT_SACK_PERMITTED = 4
OPT_SACK = 5
OPT_TIMESTAMP = 8


@dataclass(slots=True)
class Eol:
    pass


@dataclass(slots=True)
class Nop:
    pass


@dataclass(slots=True)
class Mss:
    value: int


@dataclass(slots=True)
class WindowScale:
    shift: int


@dataclass(slots=True)
class SackPermitted:
    pass


@dataclass(slots=True)
class Sack:
    blocks: tuple[tuple[int, int], ...]  # (left edge, right edge) pairs, right edge exclusive


@dataclass(slots=True)
class Timestamps:
    tsval: int
    tsecr: int


@dataclass(slots=True)
class UnknownOption:
    kind: int
    data: bytes


TcpOption = Eol | Nop | Mss | WindowScale | SackPermitted | Sack | Timestamps | UnknownOption


@dataclass(slots=True)
class TcpSegment:
    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: int  # the 8 flag bits (compare with the module constants SYN, ACK, ... or Flags)
    window: int  # the raw 16-bit field, before any window scaling
    payload: bytes = b""
    options: tuple[TcpOption, ...] = ()
    urgent: int = 0

    @property
    def seg_len(self) -> int:
        """SEG.LEN of RFC 9293: payload octets plus one each for SYN and FIN."""
        n = len(self.payload)
        if self.flags & SYN:
            n += 1
        if self.flags & FIN:
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
        opts = self.options
        if len(opts) == 3 and opts[0] is _NOP and opts[1] is _NOP and type(opts[2]) is Timestamps:
            return ()  # the usual block of a received segment (see timestamps)
        o = self._find(Sack)
        return o.blocks if isinstance(o, Sack) else ()

    @property
    def timestamps(self) -> Timestamps | None:
        opts = self.options
        if len(opts) == 3 and opts[0] is _NOP and opts[1] is _NOP and type(opts[2]) is Timestamps:
            # NOP, NOP, timestamps: what parse_tcp gives for nearly every segment of a connection
            # with timestamps (RFC 7323 appendix A), read twice or more per segment received.
            return opts[2]
        o = self._find(Timestamps)
        return o if isinstance(o, Timestamps) else None


HEADER = struct.Struct("!HHIIBBHHH")  # ports, seq, ack, offset<<4, flags, window, checksum, urgent
MIN_HEADER_LEN = 20
MAX_OPTIONS_LEN = 40  # data offset is 4 bits of 32-bit words: at most 60 octets of header
_PROTO_TCP = 6

_EOL = Eol()
_NOP = Nop()
_U16 = struct.Struct("!H")
_U32X2 = struct.Struct("!II")
_TS = struct.Struct("!BBII")
_MSS = struct.Struct("!BBH")


_TS_BLOCK = b"\x01\x01\x08\x0a"  # NOP, NOP, timestamps (kind 8, length 10): RFC 7323 appendix A
_TS_BLOCK_LEN = 12


def _parse_options(buf: bytes) -> tuple[TcpOption, ...]:
    """Walk the option list (RFC 9293 section 3.2). EOL ends it: whatever follows is padding.
    (parse_tcp reads the usual NOP, NOP, timestamps block itself.)"""
    opts: list[TcpOption] = []
    i = 0
    n = len(buf)
    while i < n:
        kind = buf[i]
        if kind == OPT_EOL:
            opts.append(_EOL)
            break
        if kind == OPT_NOP:
            opts.append(_NOP)
            i += 1
            continue
        if i + 1 >= n:
            raise ParseError("tcp_option", f"kind {kind} has no length octet")
        length = buf[i + 1]
        if length < 2 or i + length > n:
            raise ParseError("tcp_option", f"kind {kind} length {length} at {i} of {n}")
        opts.append(_parse_option(kind, length, buf, i))
        i += length
    return tuple(opts)


def _parse_option(kind: int, length: int, buf: bytes, i: int) -> TcpOption:
    if kind == OPT_MSS:
        if length == 4:
            return Mss(_U16.unpack_from(buf, i + 2)[0])
    elif kind == OPT_WSCALE:
        if length == 3:
            return WindowScale(buf[i + 2])
    elif kind == OPT_SACK_PERMITTED:
        if length == 2:
            return SackPermitted()
    elif kind == OPT_SACK:
        # RFC 2018 section 3: 2 + 8n octets; four blocks fill the 40-octet option space.
        nblocks, odd = divmod(length - 2, 8)
        if not odd and 1 <= nblocks <= 4:
            return Sack(tuple(_U32X2.unpack_from(buf, i + 2 + 8 * b) for b in range(nblocks)))
    elif kind == OPT_TIMESTAMP:
        if length == 10:
            return Timestamps(*_U32X2.unpack_from(buf, i + 2))
    else:
        return UnknownOption(kind, buf[i + 2 : i + length])
    raise ParseError("tcp_option", f"kind {kind} with length {length}")


def parse_tcp(data: bytes | memoryview, src: bytes, dst: bytes, verify_checksum: bool = True) -> TcpSegment:
    """Parse a TCP segment. `src`/`dst` are the packed addresses of the pseudo-header: 4 octets
    each over IPv4, 16 over IPv6 (the checksum covers the family's pseudo-header).

    Raises ParseError on a short header, a bad data offset, a bad checksum or a malformed option
    list (an option whose length runs past the header, a known option with the wrong length).
    Unknown options are kept as UnknownOption, skipped by their length.

    The checksum is checked before the data offset, so a corrupted header counts as
    "tcp_checksum". Flag combinations are not judged here (the connection does); the four
    reserved bits are ignored.
    """
    n = len(data)
    if n < MIN_HEADER_LEN:
        raise ParseError("tcp_short", f"{n} bytes")
    if verify_checksum and internet_checksum(data, pseudo_header_sum(src, dst, _PROTO_TCP, n)) != 0:
        raise ParseError("tcp_checksum")
    sport, dport, seq, ack, offset, flags, window, _csum, urgent = HEADER.unpack_from(data)
    hlen = (offset >> 4) * 4
    if hlen < MIN_HEADER_LEN or hlen > n:
        raise ParseError("tcp_offset", f"header {hlen} of {n} bytes")
    if hlen == MIN_HEADER_LEN + _TS_BLOCK_LEN and data[MIN_HEADER_LEN : MIN_HEADER_LEN + 4] == _TS_BLOCK:
        # NOP, NOP, timestamps, the layout on nearly every segment of a connection with
        # timestamps (RFC 7323 appendix A): one unpack where it lies.
        ts = Timestamps(*_U32X2.unpack_from(data, MIN_HEADER_LEN + 4))
        options: tuple[TcpOption, ...] = (_NOP, _NOP, ts)
    elif hlen > MIN_HEADER_LEN:
        options = _parse_options(bytes(data[MIN_HEADER_LEN:hlen]))
    else:
        options = ()
    return TcpSegment(sport, dport, seq, ack, flags, window, bytes(data[hlen:]), options, urgent)


_TS_OPTIONS = struct.Struct("!4sII")


def encode_options(options: tuple[TcpOption, ...]) -> bytes:
    """The option octets in order, unpadded."""
    if len(options) == 3:
        nop1, nop2, ts = options
        if type(ts) is Timestamps and type(nop1) is Nop and type(nop2) is Nop:
            return _TS_OPTIONS.pack(_TS_BLOCK, ts.tsval, ts.tsecr)  # the common case, in one pack
    parts: list[bytes] = []
    for o in options:
        if isinstance(o, Nop):
            parts.append(b"\x01")
        elif isinstance(o, Eol):
            parts.append(b"\x00")
        elif isinstance(o, Mss):
            parts.append(_MSS.pack(OPT_MSS, 4, o.value))
        elif isinstance(o, WindowScale):
            parts.append(bytes((OPT_WSCALE, 3, o.shift)))
        elif isinstance(o, SackPermitted):
            parts.append(bytes((OPT_SACK_PERMITTED, 2)))
        elif isinstance(o, Sack):
            parts.append(bytes((OPT_SACK, 2 + 8 * len(o.blocks))))
            parts.extend(_U32X2.pack(left, right) for left, right in o.blocks)
        elif isinstance(o, Timestamps):
            parts.append(_TS.pack(OPT_TIMESTAMP, 10, o.tsval, o.tsecr))
        else:
            parts.append(bytes((o.kind, 2 + len(o.data))) + o.data)
    return b"".join(parts)


def normalize_options(options: tuple[TcpOption, ...]) -> tuple[TcpOption, ...]:
    """What `parse_tcp` returns for a segment built by `build_tcp` with these options.

    The symmetry that holds: parse(build(seg)) == replace(seg, options=normalize_options(...)).
    Options after the first Eol are dropped (EOL ends the list), and if the list does not end
    with Eol and its octets are not a multiple of four, the zero padding reads back as one Eol().
    So parse(build(seg)) == seg exactly when Eol appears at most once, as the last option, or
    not at all with options filling a multiple of four octets. (UnknownOption must not use a
    kind this module knows, else it reads back as that option or fails to parse.)
    """
    for i, o in enumerate(options):
        if isinstance(o, Eol):
            return options[: i + 1]
    if len(encode_options(options)) % 4:
        return (*options, _EOL)
    return options


def build_tcp(seg: TcpSegment, src: bytes, dst: bytes) -> bytes:
    """Build a TCP segment with a correct checksum. Options are encoded in order and padded
    with EOL (zero) bytes to a multiple of four octets; see `normalize_options` for what
    parsing the result gives back."""
    return build_tcp_header(seg, src, dst) + seg.payload


# The last options tuple built, its padded octets and their sum (replaced whole; holding the
# tuple keeps its identity from being reused): the segments of a train share one options tuple
# (Sender._send_full_segments), so all but the first reuse its octets.
_last_options: list[tuple[tuple[TcpOption, ...] | None, bytes, int]] = [(None, b"", 0)]


def _options_octets(options: tuple[TcpOption, ...]) -> tuple[bytes, int]:
    """The options as a header carries them (encoded, padded with EOL to 32 bits) and the
    octets read as one integer (congruent to the sum of their words, see stack.checksum)."""
    last = _last_options[0]
    if options is last[0]:
        return last[1], last[2]
    opts = encode_options(options) if options else b""
    if len(opts) & 3:
        opts += bytes(4 - (len(opts) & 3))
    if len(opts) > MAX_OPTIONS_LEN:
        raise ValueError(f"TCP options take {len(opts)} octets, more than {MAX_OPTIONS_LEN}")
    total = int.from_bytes(opts, "big")
    _last_options[0] = (options, opts, total)
    return opts, total


def build_tcp_header(seg: TcpSegment, src: bytes, dst: bytes) -> bytes:
    """The header `build_tcp` puts before the payload, its checksum covering the payload too,
    which is summed where it lies and not copied (the caller joins the packet once)."""
    last = _last_options[0]  # (_options_octets' first step, inline: every segment sent)
    opts, opts_sum = (last[1], last[2]) if seg.options is last[0] else _options_octets(seg.options)
    hlen = MIN_HEADER_LEN + len(opts)
    offset, flags = (hlen // 4) << 4, int(seg.flags) & 0xFF
    # The header's words summed from its fields, packed once, with the checksum: a 32-bit
    # number is congruent to the sum of its two words modulo 0xffff, as the octets read as one
    # integer are to theirs (RFC 1071 2(B); stack.checksum). The sum of header and payload is
    # the sum of the two sums: the header's length is even, so the payload's words keep their
    # alignment, and the payload is summed where it lies.
    partial = (pseudo_header_sum(src, dst, _PROTO_TCP, hlen + len(seg.payload)) + seg.src_port + seg.dst_port
               + seg.seq + seg.ack + (offset << 8 | flags) + seg.window + seg.urgent + opts_sum)
    return HEADER.pack(seg.src_port, seg.dst_port, seg.seq, seg.ack, offset, flags, seg.window,
                       internet_checksum(seg.payload, partial), seg.urgent) + opts


def build_tcp_header_partial(seg: TcpSegment, src: bytes, dst: bytes) -> bytes:
    """The TCP header of `seg` (options included, payload not) with a *partial* checksum: the
    folded pseudo-header sum for the whole segment, which the kernel completes over header and
    payload (checksum offload, `stack.wire.vnet` NEEDS_CSUM). No payload octet is summed here."""
    opts, _ = _options_octets(seg.options)
    hlen = MIN_HEADER_LEN + len(opts)
    s = pseudo_header_sum(src, dst, _PROTO_TCP, hlen + len(seg.payload))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return HEADER.pack(
        seg.src_port, seg.dst_port, seg.seq, seg.ack, (hlen // 4) << 4, int(seg.flags) & 0xFF,
        seg.window, s, seg.urgent,
    ) + opts


_OPTION_NAMES = {Eol: "eol", Nop: "nop", SackPermitted: "sackOK"}


def format_option(o: TcpOption) -> str:
    """One option in packetdrill spelling."""
    if isinstance(o, Mss):
        return f"mss {o.value}"
    if isinstance(o, WindowScale):
        return f"wscale {o.shift}"
    if isinstance(o, Timestamps):
        return f"TS val {o.tsval} ecr {o.tsecr}"
    if isinstance(o, Sack):
        return "sack " + " ".join(f"{left}:{right}" for left, right in o.blocks)
    if isinstance(o, UnknownOption):
        return f"opt-{o.kind}"
    return _OPTION_NAMES[type(o)]


def format_options(options: tuple[TcpOption, ...]) -> str:
    """packetdrill spelling: "mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 7,sack 1:2 3:4,eol"."""
    if len(options) == 3:
        nop1, nop2, ts = options
        if type(ts) is Timestamps and type(nop1) is Nop and type(nop2) is Nop:
            return f"nop,nop,TS val {ts.tsval} ecr {ts.tsecr}"  # traced on nearly every segment
    return ",".join(format_option(o) for o in options)
