"""The rate limits of stack.tcp.ratelimit, on their own."""

from __future__ import annotations

import random

from stack.tcp.ratelimit import ChallengeAckLimiter, OutOfWindowLimiter, TokenBucket


def allowed(limiter: ChallengeAckLimiter | OutOfWindowLimiter | TokenBucket, now: float, n: int) -> int:
    return sum(limiter.allow(now) for _ in range(n))


def test_challenge_budget_is_drawn_each_second_between_half_and_one_and_a_half_the_limit() -> None:
    limiter = ChallengeAckLimiter(1000, random.Random(1))
    budgets = [allowed(limiter, float(second) + 0.5, 5000) for second in range(200)]
    assert min(budgets) >= 500 and max(budgets) <= 1499
    assert len(set(budgets)) > 150  # not one fixed number an attacker could count down from
    assert 900 < sum(budgets) / len(budgets) < 1100  # about the limit on average


def test_challenge_budget_zero_sends_none() -> None:
    assert allowed(ChallengeAckLimiter(0), 0.0, 10) == 0


def test_out_of_window_limiter_allows_one_per_interval() -> None:
    limiter = OutOfWindowLimiter(0.5)
    assert allowed(limiter, 0.0, 5) == 1
    assert allowed(limiter, 0.49, 5) == 0
    assert allowed(limiter, 0.5, 5) == 1
    assert allowed(OutOfWindowLimiter(0.0), 0.0, 5) == 5  # 0: no limit


def test_token_bucket_burst_then_rate() -> None:
    bucket = TokenBucket(rate=100, burst=10)
    assert allowed(bucket, 0.0, 50) == 10
    assert allowed(bucket, 0.05, 50) == 5  # 50 ms at 100 a second
    assert allowed(bucket, 10.0, 50) == 10  # never more saved up than the burst
    assert allowed(TokenBucket(rate=0, burst=1), 0.0, 50) == 50  # 0: no limit
