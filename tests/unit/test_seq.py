"""Sequence-number arithmetic modulo 2**32 (RFC 9293 section 3.4), especially across the wrap."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stack import seq

SETTINGS = settings(max_examples=300, derandomize=True, deadline=None)
TOP = 2**32 - 1

# Numbers near both ends of the space, so that sums and windows straddle the wrap.
seqnum = st.one_of(st.integers(0, 1000), st.integers(TOP - 1000, TOP), st.integers(0, TOP))
distance = st.integers(-(2**31) + 1, 2**31 - 1)  # TCP only compares numbers less than 2**31 apart
size = st.one_of(st.integers(0, 2000), st.integers(0, TOP))


def test_examples_at_the_wrap() -> None:
    assert seq.add(TOP, 1) == 0
    assert seq.add(0, -1) == TOP
    assert seq.sub(0, TOP) == 1
    assert seq.sub(TOP, 0) == -1
    assert seq.lt(TOP, 0) and seq.le(TOP, 0) and seq.gt(0, TOP) and seq.ge(0, TOP)
    assert not seq.lt(0, TOP) and not seq.gt(TOP, 0)
    assert seq.between(TOP - 9, 5, 10) and not seq.between(TOP - 9, 10, 10)
    assert seq.in_window(3, TOP - 2, 10) and not seq.in_window(TOP - 3, TOP - 2, 10)
    assert seq.max_seq(TOP, 3) == 3 and seq.min_seq(TOP, 3) == TOP


@SETTINGS
@given(seqnum, st.integers(-(2**33), 2**33))
def test_add_is_modular(a: int, n: int) -> None:
    r = seq.add(a, n)
    assert 0 <= r <= TOP and r == (a + n) % 2**32


@SETTINGS
@given(seqnum, distance)
def test_sub_inverts_add(a: int, d: int) -> None:
    b = seq.add(a, d)
    assert seq.sub(b, a) == d
    assert seq.sub(a, b) == -d


@SETTINGS
@given(seqnum, distance)
def test_comparisons_follow_the_signed_distance(a: int, d: int) -> None:
    b = seq.add(a, d)
    assert seq.lt(a, b) == (d > 0)
    assert seq.le(a, b) == (d >= 0)
    assert seq.gt(a, b) == (d < 0)
    assert seq.ge(a, b) == (d <= 0)
    # Exactly one of <, ==, > holds.
    assert [seq.lt(a, b), a == b, seq.gt(a, b)].count(True) == 1
    assert seq.max_seq(a, b) == (b if d >= 0 else a)
    assert seq.min_seq(a, b) == (a if d >= 0 else b)


@SETTINGS
@given(seqnum, size, st.integers(0, TOP))
def test_in_window_and_between(start: int, n: int, k: int) -> None:
    x = seq.add(start, k)
    inside = k < n
    assert seq.in_window(x, start, n) == inside
    if n <= TOP:
        assert seq.between(start, x, seq.add(start, n)) == inside


@SETTINGS
@given(seqnum)
def test_empty_window_holds_nothing(a: int) -> None:
    assert not seq.in_window(a, a, 0)
    assert not seq.between(a, a, a)
    assert seq.in_window(a, a, 1) and seq.between(a, a, seq.add(a, 1))


@SETTINGS
@given(seqnum, st.one_of(seqnum, st.sampled_from([2**31, 2**31 - 1, 2**31 + 1])))
def test_comparisons_are_sub_against_zero_for_any_two_numbers(a: int, b: int) -> None:
    """lt/le/gt/ge are written without sub(): they agree with it everywhere, 2**31 apart too."""
    d = seq.sub(a, b)
    assert (seq.lt(a, b), seq.le(a, b), seq.gt(a, b), seq.ge(a, b)) == (d < 0, d <= 0, d > 0, d >= 0)
