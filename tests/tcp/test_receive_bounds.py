"""Out-of-order data is held within the receive buffer (stack.tcp.reassembly): a peer sending
endless segments with holes cannot make the host hold more, in data or in bookkeeping."""

from __future__ import annotations

import random
import tracemalloc

from stack import seq
from stack.tcp.reassembly import BLOCK_OVERHEAD, OutOfOrderQueue

from .harness import PLAIN, established_passive

RCVBUF = 64 * 1024
CONFIG = PLAIN.with_(rcvbuf=RCVBUF)


def pattern(start: int, n: int) -> bytes:
    """The octets of the stream at offsets [start, start + n): any segment carries the truth."""
    return bytes((start + i) % 251 for i in range(n))


def test_endless_one_octet_segments_with_holes_stay_within_the_receive_buffer() -> None:
    peer = established_passive(config=CONFIG)
    peer.host.trace.remove(peer.sink)  # no trace: it would grow with every segment
    base = peer.seq
    rng = random.Random(9)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for i in range(4_000):
            off = 1 + 2 * rng.randrange(RCVBUF // 2 - 1)  # a hole at every even offset
            peer.send(".", seq=seq.add(base, off), payload=pattern(off, 1))
            if i % 500 == 0:
                peer.segments()  # the host's duplicate ACKs, read and discarded
        peer.segments()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert grown < RCVBUF, grown  # measured: about 19 KB, 255 ranges of one octet at most
    # The holes filled in order, the stream is delivered whole and right.
    peer.send(".", seq=base, payload=pattern(0, RCVBUF // 2))
    peer.segments()
    got = peer.app_recv()
    assert got[: RCVBUF // 2] == pattern(0, RCVBUF // 2)
    assert got == pattern(0, len(got))


def test_in_window_data_with_few_holes_is_all_kept() -> None:
    peer = established_passive(config=CONFIG)
    base = peer.seq
    for k in range(1, 40):  # 39 full segments after a one-segment hole
        peer.send(".", seq=seq.add(base, 1460 * k), payload=pattern(1460 * k, 1460))
    peer.segments()
    peer.send(".", seq=base, payload=pattern(0, 1460))
    peer.segments()
    assert peer.app_recv() == pattern(0, 1460 * 40)


def test_the_queue_charges_a_range_its_octets_plus_overhead() -> None:
    q = OutOfOrderQueue(limit=10 * BLOCK_OVERHEAD)
    for k in range(20):
        q.add(100 + 10 * k, b"x", 0)
        assert q.charged <= q.limit
    assert len(q) == 9 and q.pruned == 11  # 9 * (256 + 1) fits, a tenth range would not


def test_data_nearer_rcv_nxt_displaces_the_farthest_range() -> None:
    q = OutOfOrderQueue(limit=3 * BLOCK_OVERHEAD)
    q.add(100, b"a", 0)
    q.add(300, b"c", 0)
    assert q.add(200, b"b", 0)  # the range at 300 goes (RFC 2018 8: the receiver may renege)
    assert q.sack_blocks() == [(200, 201), (100, 101)] and q.pruned == 1
    assert not q.add(400, b"d", 0)  # farther than all: refused
    assert q.pruned == 2 and q.bytes_held == 2


def test_merged_ranges_cost_one_overhead() -> None:
    q = OutOfOrderQueue(limit=2 * BLOCK_OVERHEAD + 3000)
    for k in range(3):
        assert q.add(1000 + 1000 * k, b"z" * 1000, 0)
    assert len(q) == 1 and q.charged == 3000 + BLOCK_OVERHEAD
