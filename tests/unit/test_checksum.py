"""The Internet checksum (RFC 1071) against known vectors and a plain word-loop reference."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stack.checksum import internet_checksum, pseudo_header_sum

FAST = settings(max_examples=300, derandomize=True, deadline=None)


def reference_checksum(data: bytes, initial: int = 0) -> int:
    """RFC 1071 section 4.1, word by word: the obvious implementation to compare against."""
    if len(data) % 2:
        data += b"\x00"
    total = initial
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def test_rfc1071_example() -> None:
    # RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2; the checksum is its complement.
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert internet_checksum(data) == ~0xDDF2 & 0xFFFF == 0x220D


def test_known_ipv4_header() -> None:
    # A textbook IPv4 header whose stored checksum is b861.
    header = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    assert internet_checksum(header) == 0xB861
    stored = header[:10] + bytes.fromhex("b861") + header[12:]
    assert internet_checksum(stored) == 0


def test_edge_values() -> None:
    assert internet_checksum(b"") == 0xFFFF
    assert internet_checksum(b"\x00\x00") == 0xFFFF
    assert internet_checksum(b"\xff\xff") == 0x0000
    assert internet_checksum(b"\xff\xff\xff\xff") == 0x0000
    assert internet_checksum(b"\x01") == ~0x0100 & 0xFFFF  # odd length: padded with a zero octet
    assert internet_checksum(b"", 0xFFFF) == 0


def test_memoryview_and_bytearray() -> None:
    data = bytes(range(256)) * 6
    expected = internet_checksum(data)
    assert internet_checksum(memoryview(data)) == internet_checksum(bytearray(data)) == expected
    assert internet_checksum(memoryview(data)[3:1499]) == internet_checksum(data[3:1499])


@FAST
@given(st.binary(max_size=1600), st.integers(0, 0x3FFFF))
def test_agrees_with_reference(data: bytes, initial: int) -> None:
    assert internet_checksum(data, initial) == reference_checksum(data, initial)


@FAST
@given(st.binary(min_size=1000, max_size=1600), st.integers(0, 0x3FFFF))
def test_wire_sized_buffers_agree_with_reference(data: bytes, initial: int) -> None:
    # The sizes whose sum is folded before the division (stack.checksum._FOLD_MIN.._FOLD_MAX).
    assert internet_checksum(data, initial) == reference_checksum(data, initial)


def test_wire_sized_edge_values() -> None:
    for n in (1025, 1448, 1460, 1499, 1500, 1536):
        for data in (bytes(n), b"\xff" * n, bytes(n - 1) + b"\x01", b"\xff" * (n - 1) + b"\xfe"):
            assert internet_checksum(data) == reference_checksum(data), (n, data[-2:])
            assert internet_checksum(data, 0xFFFF) == reference_checksum(data, 0xFFFF)


@FAST
@given(st.binary(max_size=64).map(lambda b: b + b"\x00" * (len(b) % 2)))
def test_verifying_including_checksum_yields_zero(data: bytes) -> None:
    packet = data + internet_checksum(data).to_bytes(2, "big")
    assert internet_checksum(packet) == 0


@FAST
@given(st.binary(min_size=4, max_size=4), st.binary(min_size=4, max_size=4), st.integers(0, 255), st.binary())
def test_pseudo_header_equals_prefixing_its_bytes(src: bytes, dst: bytes, proto: int, body: bytes) -> None:
    pseudo = src + dst + bytes((0, proto)) + len(body).to_bytes(2, "big")
    expected = reference_checksum(pseudo + body)
    assert internet_checksum(body, pseudo_header_sum(src, dst, proto, len(body))) == expected
