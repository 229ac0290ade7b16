"""TCP codec: round trips, exact symmetry rules, every error reason, scapy as an oracle, fuzz."""

from __future__ import annotations

import dataclasses
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stack.checksum import internet_checksum, pseudo_header_sum
from stack.errors import ParseError
from stack.wire.ipv4 import PROTO_TCP, IPv4Packet, build_ipv4, pack_addr
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
    UnknownOption,
    WindowScale,
    build_tcp,
    build_tcp_header,
    build_tcp_header_partial,
    encode_options,
    format_options,
    normalize_options,
    parse_tcp,
)

SRC = pack_addr("10.0.0.1")
DST = pack_addr("10.0.0.2")
SETTINGS = settings(max_examples=200, derandomize=True, deadline=None)

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
unknown_kinds = st.integers(6, 255).filter(lambda k: k != 8)
option = st.one_of(
    st.just(Nop()),
    st.just(Eol()),
    st.builds(Mss, u16),
    st.builds(WindowScale, st.integers(0, 255)),
    st.just(SackPermitted()),
    st.builds(Sack, st.lists(st.tuples(u32, u32), min_size=1, max_size=4).map(tuple)),
    st.builds(Timestamps, u32, u32),
    st.builds(UnknownOption, unknown_kinds, st.binary(max_size=8)),
)


def fit(options: list[TcpOption]) -> tuple[TcpOption, ...]:
    """The longest prefix that fits the 40-octet option space once padded."""
    while len(encode_options(tuple(options))) > 40:
        options = options[:-1]
    return tuple(options)


options_st = st.lists(option, max_size=8).map(fit)
eol_free_options = st.lists(option.filter(lambda o: not isinstance(o, Eol)), max_size=8).map(fit)
segments = st.builds(
    TcpSegment,
    src_port=u16,
    dst_port=u16,
    seq=u32,
    ack=u32,
    flags=st.integers(0, 255).map(Flags),
    window=u16,
    payload=st.binary(max_size=64),
    options=options_st,
    urgent=u16,
)


def raw_tcp(
    options: bytes = b"", payload: bytes = b"", offset: int | None = None, flags: int = 0x10
) -> bytes:
    """Hand-made segment bytes with a valid checksum, for malformed headers."""
    words = offset if offset is not None else 5 + (len(options) + 3) // 4
    options += bytes(-len(options) % 4) if offset is None else b""
    data = bytearray(struct.pack("!HHIIBBHHH", 1000, 80, 1, 2, words << 4, flags, 8192, 0, 0))
    data += options + payload
    csum = internet_checksum(data, pseudo_header_sum(SRC, DST, PROTO_TCP, len(data)))
    struct.pack_into("!H", data, 16, csum)
    return bytes(data)


def reason(data: bytes, verify: bool = True) -> str:
    with pytest.raises(ParseError) as info:
        parse_tcp(data, SRC, DST, verify_checksum=verify)
    return info.value.reason


# --- round trips and the exact symmetry -------------------------------------------------------


@SETTINGS
@given(segments)
def test_parse_of_build_gives_the_normalized_segment(seg: TcpSegment) -> None:
    wire = build_tcp(seg, SRC, DST)
    assert len(wire) % 4 == len(seg.payload) % 4  # the header is a whole number of words
    back = parse_tcp(wire, SRC, DST)
    assert back == dataclasses.replace(seg, options=normalize_options(seg.options))
    # The normalized form is a fixed point, and builds to the same bytes unless octets after an
    # Eol (which parsing drops) were on the wire.
    assert parse_tcp(build_tcp(back, SRC, DST), SRC, DST) == back
    if Eol() not in seg.options[:-1]:
        assert build_tcp(back, SRC, DST) == wire


@SETTINGS
@given(segments, eol_free_options)
def test_exact_symmetry_when_options_fill_whole_words(seg: TcpSegment, opts: tuple[TcpOption, ...]) -> None:
    if len(encode_options(opts)) % 4:
        opts = (*opts, Eol())  # a trailing Eol absorbs the padding
    seg = dataclasses.replace(seg, options=opts)
    assert parse_tcp(build_tcp(seg, SRC, DST), SRC, DST) == seg


def test_padding_reads_back_as_one_eol() -> None:
    seg = TcpSegment(1, 2, 3, 4, Flags.SYN, 100, options=(Mss(1460), WindowScale(7)))  # 7 octets
    wire = build_tcp(seg, SRC, DST)
    assert wire[20:28] == bytes.fromhex("020405b403030700")
    assert parse_tcp(wire, SRC, DST).options == (Mss(1460), WindowScale(7), Eol())


def test_options_after_eol_are_dropped_and_padding_ignored() -> None:
    assert parse_tcp(raw_tcp(bytes.fromhex("01000204") + b"\xff" * 4), SRC, DST).options == (Nop(), Eol())
    seg = TcpSegment(1, 2, 3, 4, Flags.ACK, 100, options=(Eol(), Mss(536)))
    assert parse_tcp(build_tcp(seg, SRC, DST), SRC, DST).options == (Eol(),)


def test_known_segment_bytes() -> None:
    seg = TcpSegment(
        1234, 80, 1000, 2000, Flags.SYN | Flags.ACK, 65535, b"hi",
        (Mss(1460), SackPermitted(), Timestamps(100, 0), Nop(), WindowScale(7)),
    )
    wire = build_tcp(seg, SRC, DST)
    assert wire[:20].hex() == "04d20050000003e8000007d0a012ffff" + wire[16:18].hex() + "0000"
    assert wire[20:40].hex() == "020405b40402080a00000064000000000103030" + "7"
    assert internet_checksum(wire, pseudo_header_sum(SRC, DST, PROTO_TCP, len(wire))) == 0
    assert parse_tcp(wire, SRC, DST) == seg


def test_every_flag_byte_is_kept() -> None:
    for bits in range(256):
        seg = parse_tcp(raw_tcp(flags=bits), SRC, DST)
        assert seg.flags == bits and type(seg.flags) is int  # plain int: cheap to test per segment
    # SYN+FIN+RST together is not the parser's business (the connection judges it).
    assert parse_tcp(raw_tcp(flags=0x07), SRC, DST).flags == Flags.SYN | Flags.FIN | Flags.RST


def test_reserved_bits_are_ignored() -> None:
    wire = bytearray(raw_tcp(payload=b"x"))
    wire[12] |= 0x0F
    plain = parse_tcp(raw_tcp(payload=b"x"), SRC, DST)
    assert parse_tcp(bytes(wire), SRC, DST, verify_checksum=False) == plain


def test_build_refuses_more_than_forty_option_octets() -> None:
    seg = TcpSegment(1, 2, 3, 4, Flags.ACK, 0, options=(Timestamps(1, 2),) * 4 + (Nop(),))
    with pytest.raises(ValueError):
        build_tcp(seg, SRC, DST)


def test_segment_accessors_after_parse() -> None:
    seg = TcpSegment(
        1, 2, 3, 4, Flags.SYN | Flags.FIN, 0, b"abc",
        (Mss(1400), WindowScale(3), SackPermitted(), Timestamps(5, 6), Sack(((1, 2),))),
    )
    back = parse_tcp(build_tcp(seg, SRC, DST), SRC, DST)
    assert (back.mss, back.wscale, back.sack_permitted) == (1400, 3, True)
    assert back.timestamps == Timestamps(5, 6) and back.sack_blocks == ((1, 2),)
    assert back.seg_len == 5


@pytest.mark.parametrize("options", [
    (Nop(), Nop(), Timestamps(7, 8)),  # the usual block, read without a search
    (Sack(((10, 20),)), Nop(), Timestamps(7, 8)),
    (Nop(), Sack(((10, 20),)), Timestamps(7, 8)),
    (Nop(), Nop(), Sack(((10, 20),)), Timestamps(7, 8)),
    (Nop(), Nop(), Timestamps(7, 8), Nop(), Nop(), Sack(((10, 20),))),
])
def test_timestamps_and_sack_blocks_in_every_layout(options: tuple[TcpOption, ...]) -> None:
    seg = TcpSegment(1, 2, 3, 4, Flags.ACK, 0, b"", options)
    has_sack = any(isinstance(o, Sack) for o in options)
    for s in (seg, parse_tcp(build_tcp(seg, SRC, DST), SRC, DST)):
        assert s.timestamps == Timestamps(7, 8)
        assert s.sack_blocks == (((10, 20),) if has_sack else ())


# --- errors -------------------------------------------------------------------------------------


def test_short() -> None:
    assert reason(raw_tcp()[:19]) == "tcp_short"
    assert reason(b"") == "tcp_short"


def test_bad_offset() -> None:
    assert reason(raw_tcp(offset=4)) == "tcp_offset"
    assert reason(raw_tcp(offset=0)) == "tcp_offset"
    assert reason(raw_tcp(offset=6)) == "tcp_offset"  # 24-octet header in 20 octets
    assert reason(raw_tcp(payload=b"abc", offset=6)) == "tcp_offset"
    seg = parse_tcp(raw_tcp(payload=b"\xfe\x04cd", offset=6), SRC, DST)
    assert seg.options == (UnknownOption(254, b"cd"),) and seg.payload == b""


def test_bad_checksum() -> None:
    wire = bytearray(raw_tcp(payload=b"data"))
    wire[-1] ^= 0x01
    assert reason(bytes(wire)) == "tcp_checksum"
    assert parse_tcp(bytes(wire), SRC, DST, verify_checksum=False).payload == b"dat`"
    # The pseudo-header counts: the same bytes between other addresses fail.
    with pytest.raises(ParseError, match="tcp_checksum"):
        parse_tcp(raw_tcp(), SRC, pack_addr("10.0.0.3"))


@pytest.mark.parametrize(
    "opts",
    [
        "0200",  # length 0
        "0201",  # length 1
        "0102",  # kind 2 with no room for its length octet
        "020505b4",  # MSS length 5 runs past the header
        "020305",  # MSS length 3
        "0304070000",  # window scale length 4
        "0403",  # SACK-permitted length 3
        "0502",  # SACK with no block
        "050c00000001000000020000",  # SACK length 12: not 2 + 8n
        "080800000001000000",  # timestamps length 8
        "fe0a0102",  # unknown option running past the header
    ],
)
def test_bad_options(opts: str) -> None:
    raw = bytes.fromhex(opts)
    # NOPs in front, so that the bad option ends exactly where the header does.
    assert reason(raw_tcp(b"\x01" * (-len(raw) % 4) + raw)) == "tcp_option"


# --- truncation and fuzz -----------------------------------------------------------------------


@SETTINGS
@given(segments)
def test_every_header_prefix_raises_parse_error(seg: TcpSegment) -> None:
    wire = build_tcp(seg, SRC, DST)
    hlen = (wire[12] >> 4) * 4
    for n in range(hlen):
        for verify in (True, False):
            with pytest.raises(ParseError):
                parse_tcp(wire[:n], SRC, DST, verify_checksum=verify)
    # TCP has no length field: a cut inside the payload is caught by the checksum only.
    for n in range(hlen, len(wire)):
        assert parse_tcp(wire[:n], SRC, DST, verify_checksum=False).payload == seg.payload[: n - hlen]


@settings(max_examples=500, derandomize=True, deadline=None)
@given(st.binary(max_size=80), st.booleans())
def test_fuzz_arbitrary_bytes(data: bytes, verify: bool) -> None:
    try:
        parse_tcp(data, SRC, DST, verify_checksum=verify)
    except ParseError:
        pass


@settings(max_examples=500, derandomize=True, deadline=None)
@given(st.binary(min_size=0, max_size=40).map(lambda b: b + bytes(-len(b) % 4)), st.binary(max_size=8))
def test_fuzz_option_bytes(opts: bytes, payload: bytes) -> None:
    try:
        seg = parse_tcp(raw_tcp(opts, payload), SRC, DST)
    except ParseError as e:
        assert e.reason == "tcp_option"
    else:
        assert seg.payload == payload
        format_options(seg.options)


# --- scapy as the oracle -----------------------------------------------------------------------


def scapy_option(o: TcpOption) -> tuple[object, object]:
    if isinstance(o, Mss):
        return ("MSS", o.value)
    if isinstance(o, WindowScale):
        return ("WScale", o.shift)
    if isinstance(o, SackPermitted):
        return ("SAckOK", b"")
    if isinstance(o, Sack):
        return ("SAck", tuple(edge for block in o.blocks for edge in block))
    if isinstance(o, Timestamps):
        return ("Timestamp", (o.tsval, o.tsecr))
    if isinstance(o, Nop):
        return ("NOP", None)
    if isinstance(o, Eol):
        return ("EOL", None)
    return (o.kind, o.data)


@SETTINGS
@given(segments, st.integers(0, 0xFFFF), st.integers(1, 255), st.booleans())
def test_same_bytes_as_scapy(seg: TcpSegment, ident: int, ttl: int, df: bool) -> None:
    scapy_inet = pytest.importorskip("scapy.layers.inet")
    theirs = bytes(
        scapy_inet.IP(src="10.0.0.1", dst="10.0.0.2", id=ident, ttl=ttl, flags="DF" if df else 0)
        / scapy_inet.TCP(
            sport=seg.src_port, dport=seg.dst_port, seq=seg.seq, ack=seg.ack, flags=int(seg.flags),
            window=seg.window, urgptr=seg.urgent, options=[scapy_option(o) for o in seg.options],
        )
        / seg.payload
    )
    ours = build_ipv4(
        IPv4Packet("10.0.0.1", "10.0.0.2", PROTO_TCP, build_tcp(seg, SRC, DST), ttl=ttl, ident=ident,
                   dont_fragment=df)
    )
    assert ours == theirs


# --- packetdrill spelling -------------------------------------------------------------------


def test_format_options() -> None:
    opts = (
        Mss(1460), SackPermitted(), Timestamps(100, 0), Nop(), WindowScale(7), Sack(((1, 2), (3, 4))), Eol(),
    )
    assert format_options(opts) == "mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 7,sack 1:2 3:4,eol"
    assert format_options((UnknownOption(254, b"\x01\x02"),)) == "opt-254"
    assert format_options(()) == ""


@SETTINGS
@given(st.lists(options_st, min_size=1, max_size=4), st.lists(st.integers(0, 3), min_size=1, max_size=12))
def test_headers_of_segments_sharing_an_options_tuple_are_built_as_from_fresh_ones(
        choices: list[tuple[TcpOption, ...]], picks: list[int]) -> None:
    """A train's segments share one options tuple and all but the first reuse its octets: any
    sequence of shared and changing tuples builds the headers fresh copies of them give."""
    segs = [TcpSegment(40000, 80, 1000 + 1448 * n, 7, 0x10, 512, bytes(n * 11), choices[pick % len(choices)])
            for n, pick in enumerate(picks)]  # the same tuple object again, or another
    fresh = [dataclasses.replace(seg, options=tuple(dataclasses.replace(o) for o in seg.options))
             for seg in segs]
    expected = [(build_tcp(f, SRC, DST)[: len(build_tcp(f, SRC, DST)) - len(f.payload)],
                 build_tcp_header_partial(f, SRC, DST)) for f in fresh]
    assert [build_tcp_header(seg, SRC, DST) for seg in segs] == [full for full, _ in expected]
    assert [build_tcp_header_partial(seg, SRC, DST) for seg in segs] == [partial for _, partial in expected]


def _reference_header(seg: TcpSegment) -> bytes:
    """RFC 9293 3.1 by the letter: header with a zero checksum, options padded, the sum taken over
    pseudo-header, header and payload together."""
    opts = encode_options(seg.options)
    opts += bytes(-len(opts) % 4)
    hlen = 20 + len(opts)
    fields = (seg.src_port, seg.dst_port, seg.seq, seg.ack, (hlen // 4) << 4, int(seg.flags) & 0xFF,
              seg.window)
    zero = struct.pack("!HHIIBBHHH", *fields, 0, seg.urgent) + opts
    pseudo = SRC + DST + bytes((0, 6)) + (hlen + len(seg.payload)).to_bytes(2, "big")
    csum = internet_checksum(pseudo + zero + seg.payload)
    return struct.pack("!HHIIBBHHH", *fields, csum, seg.urgent) + opts


@SETTINGS
@given(segments)
def test_a_header_built_from_its_fields_sums_as_the_octets_do(seg: TcpSegment) -> None:
    """build_tcp_header adds the header's words from the fields (each 32-bit number congruent to
    its two words): the bytes of the straightforward sum over the octets."""
    assert build_tcp_header(seg, SRC, DST) == _reference_header(seg)


def test_a_header_whose_words_sum_to_zero_carries_0x0000() -> None:
    """Where everything but the checksum sums to a multiple of 0xffff the field is 0x0000, as the
    octet sum gives it, never the other zero."""
    base = TcpSegment(1, 2, 3, 4, Flags(0x10), 5, b"", ())
    window = int.from_bytes(_reference_header(base)[16:18], "big") + 5  # absorbs the whole sum
    seg = dataclasses.replace(base, window=window % 0xFFFF)
    assert _reference_header(seg)[16:18] == b"\x00\x00"
    assert build_tcp_header(seg, SRC, DST) == _reference_header(seg)


def test_twelve_option_octets_read_in_place_only_when_they_are_nop_nop_timestamps() -> None:
    """parse_tcp reads the usual NOP, NOP, timestamps block where it lies; any other 12 octets
    of options take the walk, and the block on a view parses the same as on bytes."""
    ts = struct.pack("!II", 7, 9)
    usual = raw_tcp(b"\x01\x01\x08\x0a" + ts, b"data")
    for data in (usual, memoryview(usual)):
        seg = parse_tcp(data, SRC, DST)
        assert seg.options == (Nop(), Nop(), Timestamps(7, 9)) and seg.payload == b"data"
    ts_first = raw_tcp(b"\x08\x0a" + ts + b"\x01\x01")
    assert parse_tcp(ts_first, SRC, DST).options == (Timestamps(7, 9), Nop(), Nop())
    assert reason(raw_tcp(b"\x01\x01\x08\x09" + ts)) == "tcp_option"  # a timestamps option of length 9
    sack = b"\x01\x01\x05\x0a" + ts  # NOP, NOP, one SACK block
    assert parse_tcp(raw_tcp(sack), SRC, DST).options == (Nop(), Nop(), Sack(((7, 9),)))
