"""The receiver's out-of-order queue under a peer that sends one-octet segments with holes: what
one more segment costs (add, then the SACK blocks of the ACK it draws) with 10 and with 1,000
ranges held, for the queue (stack.tcp.reassembly) and the linear reference it replaced
(tests/tcp/reference_reassembly.py). Needs no root.

    python -m tests.bench.ooo_queue
"""

from __future__ import annotations

import time

from stack.tcp.reassembly import BLOCK_OVERHEAD, OutOfOrderQueue
from tests.tcp.reference_reassembly import ReferenceQueue


def per_segment_us(queue_type: type[OutOfOrderQueue] | type[ReferenceQueue], ranges: int) -> float:
    """Microseconds a segment: fill `ranges` one-octet ranges, then time more of them."""
    q = queue_type(limit=(ranges + 1) * (BLOCK_OVERHEAD + 1))
    for i in range(ranges):
        q.add(1000 + 2 * i, b"x", 0)
    n = 2000
    t0 = time.perf_counter()
    for i in range(n):
        q.add(1000 + 2 * (ranges + i % 500), b"y", 0)  # one more range beyond: at the limit, refused
        q.sack_blocks(3)
    return (time.perf_counter() - t0) / n * 1e6


def main() -> int:
    print("out-of-order queue, one segment (add + SACK blocks), microseconds")
    print(f"{'ranges held':>12} {'queue':>10} {'linear':>10} {'linear/queue':>13}")
    for ranges in (10, 1000):
        fast, slow = per_segment_us(OutOfOrderQueue, ranges), per_segment_us(ReferenceQueue, ranges)
        print(f"{ranges:>12} {fast:>10.1f} {slow:>10.1f} {slow / fast:>13.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
