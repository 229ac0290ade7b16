"""Sequence-number arithmetic modulo 2**32 (RFC 9293 section 3.4).

Sequence numbers are plain ints in [0, 2**32). Comparisons are only meaningful between numbers
less than 2**31 apart, which TCP guarantees for any two numbers it compares.
"""

from __future__ import annotations

MOD = 1 << 32
MASK = MOD - 1
HALF = 1 << 31


def add(a: int, n: int) -> int:
    """a + n modulo 2**32 (n may be negative)."""
    return (a + n) & MASK


def sub(a: int, b: int) -> int:
    """The signed distance a - b, in [-2**31, 2**31)."""
    d = (a - b) & MASK
    return d - MOD if d >= HALF else d


# The comparisons are sub(a, b) against 0 written out on d = (a - b) mod 2**32, the distance
# sub() folds: a is before b exactly when d >= 2**31 (one call instead of two, several per segment).


def lt(a: int, b: int) -> bool:
    """sub(a, b) < 0."""
    return (a - b) & MASK >= HALF


def le(a: int, b: int) -> bool:
    """sub(a, b) <= 0."""
    d = (a - b) & MASK
    return d == 0 or d >= HALF


def gt(a: int, b: int) -> bool:
    """sub(a, b) > 0."""
    return 0 < (a - b) & MASK < HALF


def ge(a: int, b: int) -> bool:
    """sub(a, b) >= 0."""
    return (a - b) & MASK < HALF


def between(low: int, x: int, high: int) -> bool:
    """low <= x < high, modulo 2**32 (the half-open window test of RFC 9293 3.4)."""
    return ((x - low) & MASK) < ((high - low) & MASK)


def in_window(x: int, start: int, size: int) -> bool:
    """start <= x < start + size."""
    return ((x - start) & MASK) < size


def max_seq(a: int, b: int) -> int:
    return a if ge(a, b) else b


def min_seq(a: int, b: int) -> int:
    return a if le(a, b) else b
