"""Rate limits: 100 per user per minute, 10,000 in total, over a sliding window."""

from __future__ import annotations

from crystal_runbook.service.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestRateLimiter:
    def test_the_101st_call_of_a_user_waits_and_others_pass(self) -> None:
        """One user's 101st call in a minute is refused with the time to retry; others pass."""
        clock = Clock()
        limits = RateLimiter(clock=clock)
        for i in range(100):
            clock.now += 0.1
            assert limits.take("U1").allowed, i
        refused = limits.take("U1")
        assert not refused.allowed
        assert refused.limit == "100 per minute"
        assert 49 < refused.retry_after <= 60
        assert limits.take("U2").allowed
        clock.now += refused.retry_after + 0.01
        assert limits.take("U1").allowed

    def test_the_global_limit_holds_across_users(self) -> None:
        """10,000 calls from many users fill the window for everyone."""
        clock = Clock()
        limits = RateLimiter(clock=clock, total=300, per_user=100)
        for i in range(300):
            assert limits.take(f"U{i % 5}").allowed
        refused = limits.take("U99")
        assert (refused.allowed, refused.limit) == (False, "300 per minute in total")
        clock.now += 60.01
        assert limits.take("U99").allowed

    def test_refused_calls_do_not_count(self) -> None:
        """Hammering while refused does not push the retry time further away."""
        clock = Clock()
        limits = RateLimiter(clock=clock, per_user=2)
        assert limits.take("U1").allowed
        assert limits.take("U1").allowed
        first = limits.take("U1").retry_after
        for _ in range(50):
            limits.take("U1")
        assert limits.take("U1").retry_after == first
