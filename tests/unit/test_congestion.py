"""NewReno and CUBIC against their closed forms, driven by a fluid model of ACK clocking.

The model: every round trip, the window at the start of the round is acknowledged by ACKs evenly
spread over the next RTT, one ACK per segment or one per two segments (delayed ACKs, the last ACK
covering an odd leftover). Time is virtual.
"""

from __future__ import annotations

import math

import pytest

from stack.tcp.congestion import CongestionControl, available, create
from stack.tcp.congestion.base import INFINITE_SSTHRESH
from stack.tcp.congestion.cubic import ALPHA, BETA, FALLBACK_RTT, C, Cubic, cubic_k, w_cubic
from stack.tcp.congestion.newreno import NewReno

MSS = 1000


def run_round(cc: CongestionControl, now: float, rtt: float, per_ack: int = 1, rtt_arg: bool = True) -> float:
    """Acknowledge one window (cwnd octets at the start of the round) over one RTT from `now`.

    Full segments are acknowledged per_ack at a time; a window that is not a whole number of
    segments ends with one partial ACK, so exactly cwnd octets are acknowledged per RTT (a fluid
    window), which keeps the closed forms exact. Returns the time the round ends.
    """
    flight = cc.cwnd
    step = per_ack * MSS
    sizes = [step] * (flight // step) + ([flight % step] if flight % step else [])
    for i, size in enumerate(sizes):
        cc.on_ack(size, now + rtt * (i + 1) / len(sizes), rtt if rtt_arg else None, flight)
        flight -= size
    return now + rtt


def windows(cc: CongestionControl, rounds: int, per_ack: int = 1, rtt: float = 0.1) -> list[int]:
    """cwnd in segments at the start of each round, then after the last one."""
    out, now = [cc.cwnd // MSS], 0.0
    for _ in range(rounds):
        now = run_round(cc, now, rtt, per_ack)
        out.append(cc.cwnd // MSS)
    return out


# -- registry --------------------------------------------------------------------------------


def test_both_controllers_are_registered_by_name() -> None:
    assert {"newreno", "cubic"} <= set(available())
    assert type(create("newreno", MSS, 10 * MSS, 0.0)) is NewReno
    assert type(create("cubic", MSS, 10 * MSS, 0.0)) is Cubic
    with pytest.raises(ValueError, match="unknown congestion control"):
        create("vegas", MSS, 10 * MSS, 0.0)


# -- slow start, both controllers ------------------------------------------------------------


@pytest.mark.parametrize("name", ["newreno", "cubic"])
@pytest.mark.parametrize("per_ack", [1, 2])
def test_slow_start_doubles_every_rtt(name: str, per_ack: int) -> None:
    """RFC 3465 with L = 2: delayed ACKs still double the window per round trip."""
    cc = create(name, MSS, 10 * MSS, 0.0)
    assert windows(cc, 6, per_ack) == [10 * 2**k for k in range(7)]
    assert cc.cwnd % MSS == 0 and cc.ssthresh == INFINITE_SSTHRESH


@pytest.mark.parametrize("name", ["newreno", "cubic"])
def test_one_ack_opens_at_most_two_segments_in_slow_start(name: str) -> None:
    cc = create(name, MSS, 10 * MSS, 0.0)
    cc.on_ack(8 * MSS, 0.1, 0.1, 10 * MSS)  # a stretch ACK of 8 segments
    assert cc.cwnd == 12 * MSS


@pytest.mark.parametrize("name", ["newreno", "cubic"])
def test_non_positive_acked_changes_nothing(name: str) -> None:
    cc = create(name, MSS, 10 * MSS, 0.0)
    cc.on_ack(0, 0.1, 0.1, 10 * MSS)
    cc.on_ack(-5, 0.1, 0.1, 10 * MSS)
    assert cc.cwnd == 10 * MSS


# -- NewReno ---------------------------------------------------------------------------------


@pytest.mark.parametrize("per_ack", [1, 2])
def test_newreno_slow_start_stops_at_ssthresh_then_adds_one_mss_per_rtt(per_ack: int) -> None:
    cc = NewReno(MSS, 10 * MSS, 0.0)
    cc.ssthresh = 64 * MSS
    assert windows(cc, 8, per_ack) == [10, 20, 40, 64, 65, 66, 67, 68, 69]


@pytest.mark.parametrize("per_ack", [1, 2, 3])
def test_newreno_congestion_avoidance_is_exactly_one_mss_per_rtt(per_ack: int) -> None:
    cc = NewReno(MSS, 37 * MSS, 0.0)
    cc.ssthresh = 37 * MSS
    assert windows(cc, 200, per_ack) == list(range(37, 238))
    assert cc.cwnd == 237 * MSS  # exact octets: no drift


def test_newreno_congestion_avoidance_with_uneven_acks() -> None:
    """Whatever sizes a window's ACKs have, one window of ACKs adds one MSS (RFC 3465 2.1)."""
    cc = NewReno(MSS, 20 * MSS, 0.0)
    cc.ssthresh = 20 * MSS
    pattern = [1, 700, 1300, 3, 2997, 999]
    for r in range(50):
        left, i = cc.cwnd, 0
        while left:
            chunk = min(pattern[i % len(pattern)], left)
            cc.on_ack(chunk, float(r), 0.1, left)
            left, i = left - chunk, i + 1
        assert cc.cwnd == (21 + r) * MSS


@pytest.mark.parametrize(
    ("flight", "ssthresh"),
    [(50 * MSS, 25 * MSS), (51 * MSS + 1, (51 * MSS + 1) // 2), (3 * MSS, 2 * MSS), (0, 2 * MSS)],
)
def test_newreno_on_congestion_halves_flight(flight: int, ssthresh: int) -> None:
    cc = NewReno(MSS, 80 * MSS, 0.0)
    cc.on_congestion(1.0, flight)
    assert (cc.ssthresh, cc.cwnd) == (ssthresh, ssthresh)
    assert not cc.in_slow_start
    cc.on_recovery_exit(2.0)
    assert cc.cwnd == ssthresh


def test_newreno_on_rto_loss_window_and_held_ssthresh() -> None:
    cc = NewReno(MSS, 80 * MSS, 0.0)
    cc.on_rto(1.0, 60 * MSS)
    assert (cc.ssthresh, cc.cwnd) == (30 * MSS, MSS)
    cc.on_rto(3.0, 60 * MSS)  # the same segment times out again: RFC 5681 3.1 holds ssthresh
    assert (cc.ssthresh, cc.cwnd) == (30 * MSS, MSS)
    cc.on_ack(MSS, 3.5, 0.1, 60 * MSS)  # progress ends the episode
    assert cc.cwnd == 2 * MSS
    cc.on_rto(5.0, 10 * MSS)
    assert (cc.ssthresh, cc.cwnd) == (5 * MSS, MSS)
    cc.on_ack(MSS, 5.5, 0.1, 10 * MSS)
    cc.on_rto(7.0, 3 * MSS)
    assert (cc.ssthresh, cc.cwnd) == (2 * MSS, MSS)


def test_newreno_after_rto_slow_starts_to_ssthresh_then_avoids() -> None:
    cc = NewReno(MSS, 80 * MSS, 0.0)
    cc.on_rto(1.0, 16 * MSS)
    assert windows(cc, 6) == [1, 2, 4, 8, 9, 10, 11]


# -- CUBIC -----------------------------------------------------------------------------------


def cubic_after_loss(w_max: int, rtt: float) -> tuple[Cubic, float]:
    """A CUBIC sender whose first loss happened at cwnd = w_max segments, recovery done at 0."""
    cc = Cubic(MSS, w_max * MSS, 0.0)
    cc.on_congestion(0.0, w_max * MSS)
    cc.on_recovery_exit(0.0)
    return cc, 0.0


def test_cubic_on_congestion_uses_beta_and_remembers_w_max() -> None:
    cc = Cubic(MSS, 100 * MSS, 0.0)
    cc.on_congestion(1.0, 100 * MSS)
    assert (cc.ssthresh, cc.cwnd, cc.w_max) == (70 * MSS, 70 * MSS, 100.0)
    # RFC 9438 4.7 fast convergence: a loss below the last W_max lowers the plateau.
    cc.cwnd = 80 * MSS
    cc.on_congestion(2.0, 80 * MSS)
    assert cc.w_max == pytest.approx(80 * (1 + BETA) / 2)
    assert (cc.ssthresh, cc.cwnd) == (56 * MSS, 56 * MSS)
    cc.cwnd = 2 * MSS
    cc.on_congestion(3.0, 2 * MSS)
    assert (cc.ssthresh, cc.cwnd) == (2 * MSS, 2 * MSS)


def test_cubic_k_formula() -> None:
    """K = cbrt(W_max * (1 - beta) / C) when the stage starts at beta * W_max (RFC 9438 eq. 2)."""
    cc, now = cubic_after_loss(100, 0.1)
    assert cc.epoch_start is None  # the epoch starts with the first ACK in avoidance
    run_round(cc, now, 0.1)
    assert cc.epoch_start == pytest.approx(0.1 / 70)
    assert cc.k == pytest.approx(math.cbrt(100 * (1 - BETA) / C), rel=1e-12)
    assert cubic_k(100, 70) == pytest.approx(math.cbrt(75.0))


def test_cubic_follows_w_cubic_in_the_cubic_region() -> None:
    """After a loss at W_max = 1000 segments with RTT = 100 ms, at every round start t (seconds
    since the avoidance stage began) cwnd is within 1% of W_cubic(t) = C*(t - K)**3 + W_max,
    over [0, 2.2 K], concave and convex parts. The Reno-friendly estimate stays far below
    (W_est(t) = 700 + alpha * t / RTT < W_cubic(t) is asserted too), so cwnd = max(W_cubic, W_est)
    of RFC 9438 4.3 is W_cubic on this whole interval."""
    rtt, w_max = 0.1, 1000.0
    cc, now = cubic_after_loss(int(w_max), rtt)
    k = cubic_k(w_max, BETA * w_max)
    crossed_at: float | None = None
    now = run_round(cc, now, rtt, per_ack=2)
    assert cc.epoch_start is not None
    while now - cc.epoch_start < 2.2 * k:
        t = now - cc.epoch_start
        w = cc.cwnd / MSS
        expected = w_cubic(t, k, w_max)
        assert BETA * w_max + ALPHA * t / rtt < expected
        assert w == pytest.approx(expected, rel=0.01), t
        if crossed_at is None and w >= w_max:
            crossed_at = t
        now = run_round(cc, now, rtt, per_ack=2)
    # The window climbs back to W_max at t = K: the first round start with cwnd >= W_max is within
    # one sampling interval (one RTT) after K, and never before it.
    assert crossed_at is not None and k <= crossed_at <= k + 2 * rtt


def test_cubic_reno_friendly_region_follows_w_est() -> None:
    """Small W_max and RTT: W_est (RFC 9438 4.3) outgrows W_cubic, and cwnd follows
    max(W_cubic(t), W_est(t)) with W_est(t) = 14 + alpha * t / RTT, growing by 1 per RTT once it
    passes cwnd_prior = 20; within 2% at every round start."""
    rtt, w_max = 0.01, 20.0
    cc, now = cubic_after_loss(int(w_max), rtt)
    k = cubic_k(w_max, BETA * w_max)
    now = run_round(cc, now, rtt)
    assert cc.epoch_start is not None
    reno_seen = False
    while now - cc.epoch_start < 2 * k:
        t = now - cc.epoch_start
        rounds = t / rtt
        t_prior = (w_max - BETA * w_max) / ALPHA  # rounds for W_est to reach cwnd_prior
        est = BETA * w_max + (ALPHA * rounds if rounds < t_prior else ALPHA * t_prior + rounds - t_prior)
        reno_seen = reno_seen or est > w_cubic(t, k, w_max)
        assert cc.cwnd / MSS == pytest.approx(max(w_cubic(t, k, w_max), est), rel=0.02), t
        now = run_round(cc, now, rtt)
    assert reno_seen


def test_cubic_cwnd_never_shrinks_on_acks_in_avoidance() -> None:
    cc, now = cubic_after_loss(50, 0.05)
    last = cc.cwnd
    for _ in range(300):
        now = run_round(cc, now, 0.05)
        assert cc.cwnd >= last
        assert cc.cwnd <= 1.5 * last + MSS  # RFC 9438 4.4/4.5 clamp, at most +50% per RTT
        last = cc.cwnd


def test_cubic_on_rto_then_k_zero_and_w_max_at_stage_start() -> None:
    cc = Cubic(MSS, 100 * MSS, 0.0)
    cc.on_rto(1.0, 100 * MSS)
    assert (cc.ssthresh, cc.cwnd) == (70 * MSS, MSS)
    cc.on_rto(2.0, 100 * MSS)  # back-to-back timeout: ssthresh held
    assert (cc.ssthresh, cc.cwnd) == (70 * MSS, MSS)
    now = 2.0
    while cc.in_slow_start:
        now = run_round(cc, now, 0.1)
    assert cc.epoch_start is None or cc.k == 0.0
    now = run_round(cc, now, 0.1)
    # RFC 9438 4.8: first avoidance stage after a timeout: K = 0, W_max = window at its start.
    assert cc.k == 0.0
    assert cc.w_max == 70.0


def test_cubic_without_rtt_sample_uses_the_fallback() -> None:
    a, b = cubic_after_loss(100, 0.0)[0], cubic_after_loss(100, 0.0)[0]
    now_a = now_b = 0.0
    for _ in range(30):
        n = a.cwnd // MSS
        for i in range(n):
            a.on_ack(MSS, now_a + 0.05 * (i + 1) / n, None, n * MSS)
        now_a += 0.05
        n = b.cwnd // MSS
        for i in range(n):
            b.on_ack(MSS, now_b + 0.05 * (i + 1) / n, FALLBACK_RTT, n * MSS)
        now_b += 0.05
    assert a.cwnd == b.cwnd > 70 * MSS


def test_cubic_adopts_cwnd_written_by_recovery_exit() -> None:
    cc, now = cubic_after_loss(100, 0.1)
    now = run_round(cc, now, 0.1)
    cc.on_congestion(now, cc.cwnd)
    cc.cwnd += 7 * MSS  # as if inflated during recovery by the connection
    cc.on_recovery_exit(now)
    assert cc.cwnd == cc.ssthresh
    cc.on_ack(MSS, now + 0.01, 0.1, cc.cwnd)
    assert cc.ssthresh <= cc.cwnd < cc.ssthresh + MSS


def test_cubic_target_is_clamped_to_one_and_a_half_windows() -> None:
    """Far beyond K, W_cubic(t + RTT) is huge; the target is 1.5 * cwnd (RFC 9438 4.5), so one
    segment acknowledged adds (1.5 * cwnd - cwnd) / cwnd = 0.5 segment."""
    cc = cubic_after_loss(100, 0.1)[0]
    cc.on_ack(MSS, 0.01, 0.1, cc.cwnd)  # starts the epoch
    before = cc.cwnd
    cc.on_ack(MSS, 100.0, 0.1, cc.cwnd)
    assert cc.cwnd - before == MSS // 2
