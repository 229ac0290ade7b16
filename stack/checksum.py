"""The Internet checksum (RFC 1071) and the pseudo-header sums of IPv4 and IPv6 (RFC 9293 3.1, RFC 8200 8.1).

Speed matters: this runs on every packet. Because 2**16 == 1 (mod 0xffff), the one's-complement
sum of the 16-bit words of a buffer is congruent, modulo 0xffff, to the buffer read as one big
integer (RFC 1071 section 2 (B), "byte order independence" taken to the limit). So one
`int.from_bytes` and one `%` replace the word loop; about 25x faster than a loop on 1500 bytes,
and faster than summing 64-bit chunks from `memoryview.cast` (measured with timeit). For a
wire-sized segment five folds shrink the number before the `%` (see internet_checksum), and the
buffer is read little-endian, which `int.from_bytes` does faster: 2.2 to 1.45 µs for 1480 octets.
"""

from __future__ import annotations

import functools

# Folding pays from about 1 KB; 1536 octets (12,288 bits) halve at each of the five folds.
_FOLD_MIN, _FOLD_MAX = 1024, 1536
_MASK_6144, _MASK_3072, _MASK_1536 = (1 << 6144) - 1, (1 << 3072) - 1, (1 << 1536) - 1
_MASK_768, _MASK_384 = (1 << 768) - 1, (1 << 384) - 1


def internet_checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """The value to store in a checksum field (0..0xffff) for `data` plus the partial sum `initial`.

    An odd-length buffer is padded with one zero octet (RFC 1071 section 4.1). Verifying a whole
    packet, checksum field included, returns 0.
    """
    # Little-endian: each 16-bit word read byte-swapped, and an odd last octet already the high
    # octet of its padded word. The sum of swapped words is the swapped sum (RFC 1071 2(B)), and
    # swapping a 16-bit value is multiplying it by 256 modulo 0xffff (256 * 256 == 1).
    v = int.from_bytes(data, "little")
    if _FOLD_MIN < len(data) <= _FOLD_MAX:
        # A wire-sized segment: `%` divides digit by digit, which costs more than folding the
        # number onto itself: x * 2**k + y = x + y (mod 0xffff) whenever 16 divides k.
        v = (v >> 6144) + (v & _MASK_6144)
        v = (v >> 3072) + (v & _MASK_3072)
        v = (v >> 1536) + (v & _MASK_1536)
        v = (v >> 768) + (v & _MASK_768)
        v = (v >> 384) + (v & _MASK_384)
    s = (v % 0xFFFF * 256 + initial) % 0xFFFF
    # One's-complement addition never yields +0 from a non-zero operand: a multiple of 0xffff
    # is the sum 0xffff ("-0") unless every word was zero.
    if s == 0 and (v or initial):
        s = 0xFFFF
    return ~s & 0xFFFF


def pseudo_header_sum(src: bytes, dst: bytes, protocol: int, length: int) -> int:
    """Partial sum of the pseudo-header to pass as `initial` to `internet_checksum` for TCP,
    UDP or ICMPv6: IPv4's (src, dst, zero, protocol, length; RFC 9293 3.1) for 4-octet
    addresses, IPv6's (src, dst, 32-bit upper-layer length, zeros, next header; RFC 8200 8.1)
    for 16-octet ones.

    Both are the same sum: each address read as one integer is congruent to the sum of its
    16-bit words modulo 0xffff (see the module docstring), and so is a 32-bit length. The
    protocol is never zero, so the result is non-zero whenever a word is.
    """
    return address_pair_sum(src, dst) + protocol + length


@functools.lru_cache(maxsize=1024)
def address_pair_sum(src: bytes, dst: bytes) -> int:
    """A partial sum of two addresses' words (pseudo-header, IPv4 header): a connection's packets
    repeat one pair, so each pair is summed once (two big-integer conversions and remainders
    less per segment). Bounded like the address caches of stack.wire.ipv4: a flood of spoofed
    sources churns it without growing it (tests/reliability/test_syn_flood.py)."""
    return int.from_bytes(src, "big") % 0xFFFF + int.from_bytes(dst, "big") % 0xFFFF
