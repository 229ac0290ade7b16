"""Congestion control seen in the trace (RFC 5681, RFC 6928, RFC 9438): selection per host and per
socket, slow start doubling per RTT, ssthresh = max(FlightSize/2, 2*SMSS) on loss, +1 MSS per RTT
in congestion avoidance, one segment after an RTO and slow start again."""

from __future__ import annotations

import itertools
import statistics

import pytest

from stack.config import TcpConfig
from stack.sim import LinkProfile
from stack.socket import IPPROTO_TCP, TCP_CONGESTION
from stack.trace import CongestionEvent, MemorySink
from tests.two_hosts import two_hosts

from .helpers import (
    PORT,
    drop_data_packets,
    drop_segment_repeatedly,
    peer_addr,
    run_transfer,
    smss,
    sock_family,
)

DELAY = 0.025
RTT = 2 * DELAY  # serialisation at 1 Gbit/s adds 12 us per segment
BIG = TcpConfig(rcvbuf=4 << 20, sndbuf=4 << 20, msl=0.5)

pytestmark = pytest.mark.usefixtures("family")  # each test over IPv4 and IPv6


def cwnd_events(sink: MemorySink) -> list[CongestionEvent]:
    return sink.of(CongestionEvent)


def per_round_max(events: list[CongestionEvent], t0: float, rounds: int) -> list[int]:
    """The largest cwnd reached in each RTT-long round after t0 (rounds end at t0 + k*RTT + RTT/2,
    between the ACK bursts of a window-limited sender)."""
    out = []
    for k in range(rounds):
        end = t0 + (k + 0.5) * RTT
        out.append(max((e.cwnd for e in events if e.time <= end), default=0))
    return out


def bulk(cc: str, drop: set[int] | None = None, repeat: int | None = None, size: int = 4_000_000,
         seed: int = 3, rto_min: float | None = None) -> tuple[MemorySink, list[float]]:
    config = BIG.with_(congestion_control=cc)
    if rto_min is not None:
        config = config.with_(rto_min=rto_min)
    pair = two_hosts(seed, LinkProfile(delay=DELAY, rate=1e9), config=config)
    link = pair.net.duplex("a", "b").forward
    drops: list[float] = []
    if drop:
        drop_data_packets(link, drop)
    if repeat is not None:
        drops = drop_segment_repeatedly(link, repeat, times=2)
    res = run_transfer(pair, size, 0, seed=seed)
    assert res.got_ab == res.sent_ab
    return pair.sink_a, drops


def test_initial_window_and_slow_start_doubles_per_rtt() -> None:
    sink, _ = bulk("newreno", size=2_000_000)
    ev = [e for e in cwnd_events(sink) if e.why == "ack"]
    t0 = ev[0].time  # the first ACK of data: one RTT after the first flight
    first_flight = [s for s in sink.segments("out") if s.len and s.time < t0]
    assert len(first_flight) == 10  # RFC 6928: IW = 10 segments
    rounds = per_round_max(ev, t0, 5)
    print(f"\nslow start, cwnd per RTT in segments: {[r // smss() for r in rounds]}")
    assert rounds == [10 * smss() * 2 ** (k + 1) for k in range(5)]


def test_newreno_loss_episode_drop_then_one_mss_per_rtt() -> None:
    sink, _ = bulk("newreno", drop={400}, size=6_000_000)
    ev = cwnd_events(sink)
    loss = [e for e in ev if e.why == "loss"]
    assert len(loss) == 1
    before = [e for e in ev if e.time < loss[0].time][-1]
    # RFC 5681 eq. (4): ssthresh = max(FlightSize / 2, 2*SMSS); cwnd = ssthresh (SACK recovery).
    assert loss[0].ssthresh == max(loss[0].flight // 2, 2 * smss())
    assert loss[0].cwnd == loss[0].ssthresh < before.cwnd
    exit_ = [e for e in ev if e.why == "recovery_exit"]
    assert len(exit_) == 1 and exit_[0].cwnd == loss[0].ssthresh
    after = [e for e in ev if e.time > exit_[0].time and e.why == "ack"]
    steps = [(b.time, b.cwnd - a.cwnd) for a, b in itertools.pairwise(after) if b.cwnd != a.cwnd]
    assert steps and {d for _, d in steps} == {smss()}  # congestion avoidance: exactly one MSS at a time
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(steps)]
    med = statistics.median(gaps)
    mss = smss()
    print(f"\nnewreno: loss at cwnd {before.cwnd // mss} -> ssthresh {loss[0].ssthresh // mss} segments; "
          f"then +1 MSS every {med * 1000:.1f} ms (RTT {RTT * 1000:.0f} ms), {len(steps)} steps")
    assert len(steps) >= 5 and 0.9 * RTT <= med <= 1.2 * RTT


def test_cubic_loss_reduces_by_beta() -> None:
    sink, _ = bulk("cubic", drop={400}, size=3_000_000)
    ev = cwnd_events(sink)
    loss = [e for e in ev if e.why == "loss"]
    before = [e for e in ev if e.time < loss[0].time][-1]
    assert loss[0].ssthresh == max(int(before.cwnd * 0.7), 2 * smss())  # RFC 9438 4.6: beta 0.7


@pytest.mark.parametrize("cc", ["newreno", "cubic"])
def test_rto_sets_cwnd_to_one_segment_then_slow_start(cc: str) -> None:
    # Linux's 200 ms RTO floor: the timeout comes while the sender still has new data to send (at
    # the default 1 s every segment has left by then, and there is no slow start to watch).
    sink, drops = bulk(cc, repeat=400, size=3_000_000, rto_min=0.2)
    assert len(drops) == 2  # the segment and its fast retransmission: only the RTO recovers
    ev = cwnd_events(sink)
    rto = [e for e in ev if e.why == "rto"]
    assert len(rto) == 1 and rto[0].cwnd == smss()  # RFC 5681 3.1: loss window = 1 segment
    # The RTO came inside the fast-recovery episode: ssthresh stays what the loss set.
    loss = next(e for e in ev if e.why == "loss")
    assert rto[0].ssthresh == loss.ssthresh
    after = [e for e in ev if e.time > rto[0].time and e.why == "ack"]
    rounds = per_round_max(after, rto[0].time + RTT, 4)
    print(f"\n{cc}: after the RTO, cwnd per RTT in segments: {[r // smss() for r in rounds]}")
    # Doubling each RTT (until ssthresh). The first ACK covers the hole and everything the
    # receiver held beyond it, so ABC (RFC 3465, L = 2) grows the first round by 2 segments.
    assert rounds[0] // smss() == 3
    assert all(b == 2 * a for a, b in itertools.pairwise(rounds))


def test_congestion_control_per_host_and_per_socket() -> None:
    pair = two_hosts(5, LinkProfile(delay=0.01), config=TcpConfig(congestion_control="newreno"),
                     config_b=TcpConfig())  # b: the default, cubic

    async def main() -> tuple[str, str, str, str]:
        server = await pair.stack_b.start_server(lambda r, w: None, port=PORT)
        s1 = pair.stack_a.socket(sock_family())
        await s1.aconnect((peer_addr(), PORT))
        s2 = pair.stack_a.socket(sock_family())
        s2.setsockopt(IPPROTO_TCP, TCP_CONGESTION, b"cubic")  # per socket, before connect
        await s2.aconnect((peer_addr(), PORT))
        before = s1.conn.cc.name if s1.conn else ""
        s1.setsockopt(IPPROTO_TCP, TCP_CONGESTION, b"cubic")  # a connected socket switches
        with pytest.raises(OSError):
            s1.setsockopt(IPPROTO_TCP, TCP_CONGESTION, b"vegas")
        accepted = [c.cc.name for c in pair.b.host.connections.values()]
        server.close()
        assert s1.conn is not None and s2.conn is not None
        return before, str(s2.info()["cc"]), s1.conn.cc.name, ",".join(sorted(set(accepted)))

    assert pair.net.run(main(), timeout=10) == ("newreno", "cubic", "cubic", "cubic")
