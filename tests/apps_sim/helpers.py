"""The apps on the real stack: the two hosts of tests/two_hosts.py, a named "client" (10.0.0.1)
and b "server" (10.0.0.2). `lab.stack_a` / `lab.stack_b` are `Stack`s, i.e. the `Net` the apps
are written against, so the apps run unchanged over our TCP in virtual time. A seed fixes every
packet's fate, so a failing case replays exactly.
"""

from __future__ import annotations

import hashlib

from stack.config import TcpConfig
from stack.sim.link import LinkProfile
from stack.trace import MemorySink, StateChange
from tests.two_hosts import TwoHosts, two_hosts

# 100 Mbit/s with 5 ms one way: a 125 kB bandwidth-delay product, well inside the buffers.
CLEAN = LinkProfile(delay=0.005, rate=100e6)
# The same link losing 5% of the packets each way and letting 5% overtake those in flight.
LOSSY = LinkProfile(delay=0.005, rate=100e6, loss=0.05, reorder=0.05)
PROFILES = {"clean": CLEAN, "lossy": LOSSY}

# Finished states: an active closer ends in TIME_WAIT (then CLOSED once 2*MSL has passed).
DONE_STATES = ("CLOSED", "TIME_WAIT")


def make_lab(seed: int, profile: LinkProfile = CLEAN, config: TcpConfig | None = None) -> TwoHosts:
    """The client (a) and the server (b), IPv4 only; the client's Stack resolves "server"."""
    return two_hosts(seed, profile, config=config, names=("client", "server"), ipv6=False)


def connections(sink: MemorySink) -> list[str]:
    """Connection ids in the order they first appear in a host's state changes."""
    return list(dict.fromkeys(c.conn for c in sink.of(StateChange)))


def assert_all_finished(sink: MemorySink, *, expect: int | None = None) -> list[list[str]]:
    """Every connection in a host's trace was established and ended in CLOSED or TIME_WAIT, none
    by a reset or an abort: the state paths, in order of first appearance."""
    paths = [sink.transitions(c) for c in connections(sink)]
    if expect is not None:
        assert len(paths) == expect, paths
    for path in paths:
        assert path[-1] in DONE_STATES, path
        assert "ESTABLISHED" in path, path
    # No connection was ended by a reset. (A late duplicate ACK reaching a connection that has
    # already closed is answered with RST, as RFC 9293 says; the peer in TIME_WAIT drops it.)
    normal_ends = ("TIME_WAIT", "LAST_ACK")
    aborted = [c for c in sink.of(StateChange) if c.new == "CLOSED" and c.old not in normal_ends]
    assert not aborted, aborted[:5]
    return paths


def sha256(data: bytes | bytearray) -> str:
    return hashlib.sha256(data).hexdigest()


def syns_out(sink: MemorySink) -> int:
    """Segments with SYN and without ACK that a host sent (connection attempts, retries too)."""
    return sum(1 for s in sink.segments("out") if "S" in s.flags and "." not in s.flags)
