"""service.leader: one leader per Lease, stepping down in time, releasing on shutdown."""

from __future__ import annotations

import threading

from crystal_runbook.service import leader
from crystal_runbook.testing.election import FakeClock, FakeElection, SharedLease

TIMING = leader.Timing(lease_duration=15.0, renew_period=2.0, restart_delay=0.0)


class Duty:
    """A duty that records when it starts and waits for its stop event."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.stopped = threading.Event()
        self.runs = 0

    def __call__(self, stop: threading.Event) -> None:
        self.runs += 1
        self.started.set()
        stop.wait(10)
        self.stopped.set()


def candidate(shared: SharedLease, clock: FakeClock, name: str) -> tuple[leader.Leadership, Duty]:
    duty = Duty()
    election = FakeElection(shared, name)
    return leader.Leadership("duty", election, duty, timing=TIMING, clock=clock), duty


class TestOneLeader:
    """Of two candidates, exactly one does the duty; the other waits for the Lease."""

    def test_first_look_wins_and_the_other_follows(self) -> None:
        """The first to look leads and starts the duty; the second neither leads nor works."""
        clock = FakeClock()
        shared = SharedLease(clock)
        a, duty_a = candidate(shared, clock, "a")
        b, duty_b = candidate(shared, clock, "b")
        a.look()
        wait = b.look()
        assert a.leading
        assert not b.leading
        assert duty_a.started.wait(5)
        assert duty_b.runs == 0
        assert b.holder == "a"
        assert wait <= TIMING.renew_period
        a.quiesce()
        b.quiesce()

    def test_a_follower_looks_again_when_the_lease_would_expire(self) -> None:
        """A follower's next look is at the holder's expiry when that comes before a period."""
        clock = FakeClock()
        shared = SharedLease(clock)
        a, _ = candidate(shared, clock, "a")
        b, _ = candidate(shared, clock, "b")
        a.look()
        clock.advance(14.5)
        assert 0.5 <= b.look() <= 0.52
        a.quiesce()

    def test_takeover_after_expiry_and_not_before(self) -> None:
        """A dead leader (no more renewals) is replaced once its Lease expired, not earlier."""
        clock = FakeClock()
        shared = SharedLease(clock)
        a, _ = candidate(shared, clock, "a")
        b, duty_b = candidate(shared, clock, "b")
        a.look()
        clock.advance(14.9)  # a died just after its acquisition: no renewal since
        b.look()
        assert not b.leading
        clock.advance(0.2)
        b.look()
        assert b.leading
        assert duty_b.started.wait(5)
        assert shared.transitions == 2
        b.quiesce()


class TestSteppingDown:
    """A leader that cannot renew stops its duty before anyone may take over."""

    def test_renewal_failures_past_the_deadline(self) -> None:
        """Failing renewals keep the lead until renew_deadline, then the duty is stopped."""
        clock = FakeClock()
        shared = SharedLease(clock)
        a, duty = candidate(shared, clock, "a")
        a.look()
        assert duty.started.wait(5)
        a.election.failing = True  # type: ignore[attr-defined]
        clock.advance(TIMING.renew_deadline - 1)
        a.look()
        assert a.leading
        assert a.error is not None
        clock.advance(1.5)
        a.look()
        assert not a.leading
        assert duty.stopped.wait(5)
        # still inside the Lease's duration: nobody else could have taken over yet
        assert clock.now - shared.renewed_at < shared.duration
        a.quiesce()

    def test_someone_else_holds_it(self) -> None:
        """A renewal that finds another holder (its Lease was taken over) steps down at once."""
        clock = FakeClock()
        shared = SharedLease(clock)
        a, duty = candidate(shared, clock, "a")
        a.look()
        assert duty.started.wait(5)
        shared.holder = "b"
        a.look()
        assert not a.leading
        assert duty.stopped.wait(5)
        a.quiesce()


class TestShutdown:
    """quiesce stops the duty and frees the Lease for the next leader at once."""

    def test_release_lets_the_follower_lead_on_its_next_look(self) -> None:
        """After a's quiesce, b leads at its next look, without waiting for an expiry."""
        clock = FakeClock()
        shared = SharedLease(clock)
        a, duty_a = candidate(shared, clock, "a")
        b, duty_b = candidate(shared, clock, "b")
        a.look()
        b.look()
        assert a.quiesce() is True
        assert duty_a.stopped.wait(5)
        assert shared.writes[-1] == "release a"
        b.look()
        assert b.leading
        assert duty_b.started.wait(5)
        b.quiesce()

    def test_a_follower_has_nothing_to_release(self) -> None:
        """quiesce of a follower writes nothing to the Lease."""
        clock = FakeClock()
        shared = SharedLease(clock)
        a, _ = candidate(shared, clock, "a")
        b, _ = candidate(shared, clock, "b")
        a.look()
        b.look()
        writes = list(shared.writes)
        assert b.quiesce() is False
        assert shared.writes == writes
        a.quiesce()

    def test_no_new_duty_while_the_last_one_finishes(self) -> None:
        """After stepping down, a candidate does not campaign until its old duty ended."""
        clock = FakeClock()
        shared = SharedLease(clock)
        release = threading.Event()

        def slow(stop: threading.Event) -> None:
            release.wait(10)  # a run in flight ignores the stop until it ends

        a = leader.Leadership("duty", FakeElection(shared, "a"), slow, timing=TIMING, clock=clock)
        a.look()
        shared.holder = ""
        a.look()  # finds nobody holding it: steps down
        assert not a.leading
        writes = len(shared.writes)
        a.look()
        assert len(shared.writes) == writes  # did not try to acquire
        release.set()
        assert a.duty_thread is None or a.duty_thread.join(5) is None
        a.look()
        assert a.leading
        a.quiesce()
