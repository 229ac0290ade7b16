"""The out-of-order queue (stack.tcp.reassembly) answers every call as the plain linear version
(tests/tcp/reference_reassembly.py) does, for random segments, holes, fills and pruning, across
the sequence-number wrap; and a queue of a thousand ranges is still cheap to add to
(`python -m tests.bench.ooo_queue` prints the figures)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stack import seq
from stack.tcp.reassembly import BLOCK_OVERHEAD, OutOfOrderQueue

from .reference_reassembly import ReferenceQueue

# Offsets and lengths on a grid of 100 as often as not: ranges that meet end to end are common.
OFFSET = st.one_of(st.integers(1, 30).map(lambda k: 100 * k), st.integers(1, 3000))
LENGTH = st.one_of(st.integers(1, 4).map(lambda k: 100 * k), st.integers(1, 400))
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), OFFSET, LENGTH),
        st.tuples(st.just("advance"), st.integers(0, 1500), st.just(0)),
        st.tuples(st.just("query"), st.integers(0, 3000), st.integers(1, 600)),
    ),
    min_size=10,
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(ops=OPS, base=st.sampled_from([0, 1000, 2**32 - 2000]), ranges=st.integers(2, 12))
def test_the_queue_answers_as_the_linear_reference(ops: list[tuple[str, int, int]], base: int,
                                                   ranges: int) -> None:
    limit = ranges * (BLOCK_OVERHEAD + 200)
    fast, ref = OutOfOrderQueue(limit), ReferenceQueue(limit)
    rcv_nxt = base
    for op, a, b in ops:
        if op == "add":
            start = seq.add(rcv_nxt, a)
            data = bytes((a + i) % 251 for i in range(b))
            assert fast.add(start, data, rcv_nxt) == ref.add(start, data, rcv_nxt)
        elif op == "advance":  # in-order data arrives: RCV.NXT moves, ready ranges come out
            rcv_nxt = seq.add(rcv_nxt, a)
            assert fast.pop_ready(rcv_nxt) == ref.pop_ready(rcv_nxt)
            rcv_nxt = seq.add(rcv_nxt, 0)
        else:
            start, end = seq.add(rcv_nxt, a), seq.add(rcv_nxt, a + b)
            assert fast.first_overlap(start, end) == ref.first_overlap(start, end)
            assert fast.covers(start, end) == ref.covers(start, end)
        assert fast.sack_blocks(3) == ref.sack_blocks(3) and fast.sack_blocks() == ref.sack_blocks()
        assert (len(fast), fast.bytes_held, fast.charged, fast.pruned) == (
            len(ref), ref.bytes_held, ref.charged, ref.pruned)
