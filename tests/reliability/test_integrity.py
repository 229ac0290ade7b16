"""Integrity sweep: seeded random transfers in both directions at once over links that lose (up to
10%), duplicate, reorder, corrupt, jitter and rate-limit packets, with random option sets, buffer
sizes, congestion controllers and slow readers. Every run must deliver exactly the bytes sent
(sha256) and both ends must close cleanly (the trace shows every connection reaching CLOSED, by
TIME_WAIT expiry or the ACK of the last FIN).

A failing run names its seed; replay it alone with
    pytest tests/reliability/test_integrity.py -k "seed_1234" -s
Set RELIABILITY_SEEDS=N to sweep N seeds instead of the default 500. The same cases run over IPv6
for the first 50 seeds (RELIABILITY_SEEDS_IPV6=N to change it).
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass

import pytest

from stack.config import TcpConfig
from stack.sim import LinkProfile
from stack.trace import MemorySink, StateChange

from . import helpers
from .helpers import digest, make_pair, run_transfer

SEEDS = int(os.environ.get("RELIABILITY_SEEDS", "500"))
SEEDS_IPV6 = int(os.environ.get("RELIABILITY_SEEDS_IPV6", "50"))
MSL = 5.0  # TIME_WAIT lasts 10 s of virtual time: longer than a few backed-off FIN retransmissions


@dataclass(frozen=True)
class Case:
    seed: int
    profile: LinkProfile
    config_a: TcpConfig
    config_b: TcpConfig
    size_ab: int
    size_ba: int
    read_pause: float

    def describe(self) -> str:
        return (f"seed {self.seed}: a->b {self.size_ab} B, b->a {self.size_ba} B, {self.profile}, "
                f"a: sack={self.config_a.sack} ts={self.config_a.timestamps} "
                f"ws={self.config_a.window_scaling} cc={self.config_a.congestion_control} "
                f"rcvbuf={self.config_a.rcvbuf}; b: sack={self.config_b.sack} "
                f"ts={self.config_b.timestamps}; read_pause={self.read_pause}")


def draw_size(r: random.Random) -> int:
    x = r.random()
    if x < 0.03:
        return r.randrange(0, 100)  # nothing or almost nothing
    if x < 0.05:
        return r.randrange(1_000_000, 4_000_000)  # a few MB
    return int(r.expovariate(1 / 100_000))


def draw(seed: int) -> Case:
    r = random.Random(f"reliability-sweep:{seed}")
    profile = LinkProfile(
        delay=r.uniform(0.001, 0.05),
        jitter=r.choice([0.0, 0.0, 0.002]),
        loss=r.uniform(0.0, 0.10),
        duplicate=r.choice([0.0, r.uniform(0.0, 0.05)]),
        reorder=r.choice([0.0, r.uniform(0.0, 0.10)]),
        corrupt=r.choice([0.0, r.uniform(0.0, 0.02)]),
        rate=r.choice([None, 10e6, 100e6]),
        queue_limit=r.choice([None, 100]),
    )
    rcvbuf = r.choice([256 * 1024, 64 * 1024, 16 * 1024])
    config_a = TcpConfig(
        msl=MSL,
        sack=r.random() < 0.7,
        timestamps=r.random() < 0.7,
        window_scaling=r.random() < 0.8,
        congestion_control=r.choice(["cubic", "newreno"]),
        rcvbuf=rcvbuf,
        ooo_limit=rcvbuf,
    )
    config_b = config_a.with_(sack=r.random() < 0.7, timestamps=r.random() < 0.7)
    read_pause = 0.02 if r.random() < 0.1 else 0.0
    return Case(seed, profile, config_a, config_b, draw_size(r), draw_size(r), read_pause)


def clean_close_problems(sink: MemorySink, name: str) -> list[str]:
    """Every connection in the trace must end CLOSED, coming from TIME_WAIT by its timer or from
    LAST_ACK or CLOSING by a segment (the ACK of our FIN, or the RST of a peer whose TIME_WAIT
    ended while our FIN retransmissions were being lost). An acceptable RST also ends TIME_WAIT
    (RFC 9293 3.10.7.4, as Linux without rfc1337): the peer, already CLOSED, answers a duplicated
    copy of our last segment with one."""
    problems = []
    last: dict[str, StateChange] = {}
    for e in sink.of(StateChange):
        last[e.conn] = e
    if not last:
        problems.append(f"{name}: no connection in the trace")
    for conn, e in last.items():
        ok = e.new == "CLOSED" and (
            (e.old == "TIME_WAIT" and e.cause in ("timer:time_wait", "segment:R"))
            or (e.old in ("LAST_ACK", "CLOSING") and e.cause.startswith("segment:"))
        )
        if not ok:
            problems.append(f"{name} {conn}: ended {e.old}->{e.new} ({e.cause}) at {e.time:.3f}")
    return problems


def run_case(case: Case) -> tuple[int, float]:
    pair = make_pair(case.seed, case.profile, config=case.config_a, config_b=case.config_b,
                     states_only=True)
    try:
        try:
            res = run_transfer(pair, case.size_ab, case.size_ba, case.seed, timeout=3600.0,
                               read_pause=case.read_pause)
        except Exception as e:  # the seed must be in the message, whatever went wrong
            raise AssertionError(f"{case.describe()}: transfer failed: {e!r}") from e
        assert digest(res.got_ab) == digest(res.sent_ab), f"{case.describe()}: a->b bytes differ"
        assert digest(res.got_ba) == digest(res.sent_ba), f"{case.describe()}: b->a bytes differ"
        for _ in range(120):  # at most 10 virtual minutes for the closing handshakes
            if not pair.a.host.connections and not pair.b.host.connections:
                break
            pair.net.run_for(5.0)
        problems = clean_close_problems(pair.sink_a, "a") + clean_close_problems(pair.sink_b, "b")
        assert not problems, f"{case.describe()}: unclean close: {problems}"
        # The connections were of the family under test: IPv6 ids bracket their addresses.
        ids = {e.conn for e in pair.sink_a.of(StateChange)}
        assert all(c.startswith("[") == (helpers.FAMILY == "ipv6") for c in ids), ids
        return case.size_ab + case.size_ba, res.done - res.start
    finally:
        pair.net.close()


@pytest.mark.slow
@pytest.mark.parametrize("seed", [pytest.param(s, id=f"seed_{s}") for s in range(SEEDS)])
def test_integrity_sweep(seed: int) -> None:
    run_case(draw(seed))


@pytest.mark.slow
@pytest.mark.parametrize("family", ["ipv6"], indirect=True)
@pytest.mark.parametrize("seed", [pytest.param(s, id=f"seed_{s}") for s in range(SEEDS_IPV6)])
def test_integrity_sweep_ipv6(seed: int, family: str) -> None:
    run_case(draw(seed))


def test_sweep_covers_the_impairments() -> None:
    """The drawn cases really include every impairment, both extremes of size, and slow readers."""
    cases = [draw(s) for s in range(SEEDS)]
    assert max(c.profile.loss for c in cases) > 0.09
    for field in ("duplicate", "reorder", "corrupt", "jitter"):
        assert sum(getattr(c.profile, field) > 0 for c in cases) > SEEDS // 5, field
    sizes = [c.size_ab for c in cases] + [c.size_ba for c in cases]
    assert min(sizes) == 0 or min(sizes) < 100
    assert sum(s > 1_000_000 for s in sizes) >= SEEDS // 50
    mean = sum(sizes) / len(sizes)
    print(f"\nsweep: {SEEDS} runs, mean {mean / 1e3:.0f} kB per direction, "
          f"largest {max(sizes) / 1e6:.1f} MB, {sum(c.read_pause > 0 for c in cases)} slow readers")
    assert 50_000 < mean < 300_000
    assert any(c.read_pause for c in cases)


def test_one_run_reports_time() -> None:
    """A mid-sized run, timed: the sweep's cost per run stays small."""
    t = time.perf_counter()
    n, virtual = run_case(Case(10_000, LinkProfile(delay=0.01, loss=0.05, duplicate=0.01, reorder=0.02,
                                                   corrupt=0.005), TcpConfig(msl=MSL),
                               TcpConfig(msl=MSL), 300_000, 300_000, 0.0))
    print(f"\n600 kB over 5% loss: {virtual:.2f} s virtual, {time.perf_counter() - t:.2f} s wall")
    assert n == 600_000
