"""Efficiency in virtual time: goodput over a lossy path against the Mathis et al. estimate
MSS/RTT * 1.22/sqrt(p), for NewReno, and CUBIC not below NewReno on the same seeds."""

from __future__ import annotations

import math

import pytest

from stack.config import TcpConfig
from stack.sim import LinkProfile
from tests.two_hosts import two_hosts

from .helpers import run_transfer

MSS = 1448
DELAY = 0.010  # one way: RTT 20 ms
RATE = 100e6  # far above the loss-limited rate


def goodput(cc: str, p: float, size: int, seed: int) -> float:
    """Octets per virtual second, a -> b, random loss p on the data direction only."""
    pair = two_hosts(seed, LinkProfile(delay=DELAY, loss=p, rate=RATE),
                     reverse=LinkProfile(delay=DELAY, rate=RATE),
                     config=TcpConfig(congestion_control=cc, msl=0.5), trace=False)
    res = run_transfer(pair, size, 0, seed=seed)
    assert res.got_ab == res.sent_ab, f"seed {seed}: data corrupted"
    return size / (res.done_ab - res.start)


def mathis(p: float) -> float:
    return MSS / (2 * DELAY) * 1.22 / math.sqrt(p)


@pytest.mark.parametrize(("p", "size"), [(0.01, 6_000_000), (0.02, 3_000_000)])
def test_goodput_within_a_factor_2_of_mathis_and_cubic_not_below_newreno(p: float, size: int) -> None:
    seeds = (1, 2)
    reno = sum(goodput("newreno", p, size, s) for s in seeds) / len(seeds)
    cubic = sum(goodput("cubic", p, size, s) for s in seeds) / len(seeds)
    est = mathis(p)
    print(f"\nloss {p:.0%}, RTT 20 ms: Mathis {est / 1e3:.0f} kB/s; newreno {reno / 1e3:.0f} kB/s "
          f"(x{reno / est:.2f}); cubic {cubic / 1e3:.0f} kB/s (x{cubic / est:.2f})")
    assert est / 2 <= reno <= 2 * est
    assert cubic >= reno
