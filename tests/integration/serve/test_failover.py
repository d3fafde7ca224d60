"""Failover between `serve` replicas: a killed leader, and a leader stopped by SIGTERM.

The leader is busy with a drill (slow rollouts: pods take 2.5 s to be Ready) when it goes.
Killed with -9, the follower takes over once the Lease expires (within its duration plus one
renew period, measured from the kill to the new holder's acquireTime) and resumes the drill
once. Stopped with SIGTERM, the leader releases its Leases at once (the follower takes over
within a renew period, not a Lease duration) and lets the drill finish within the grace
period, or journals it interrupted; then the new leader resumes it, once.
"""

from __future__ import annotations

import time

import pytest

from crystal_runbook.engine import journal as journal_mod
from tests.integration.serve.conftest import (
    GOOD_IMAGE,
    LEASE_SECONDS,
    RENEW_SECONDS,
    SCHEDULER_LEASE,
    WATCH_LEASE,
    Replica,
    Team,
    logs,
    slot_ago,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOLERANCE = 1.0
"""Seconds allowed beyond the bound for one API round trip and process scheduling on a
loaded machine (two cores shared by several test runs)."""


def leader_busy_with_a_drill(team: Team, **start: str) -> tuple[Replica, Replica, str]:
    """Replica a leads both duties, b follows; a is in the middle of a due drill."""
    a = team.start("a", **start)
    assert team.leader(SCHEDULER_LEASE).name == "a"
    assert team.leader(WATCH_LEASE).name == "a"
    b = team.start("b", **start)
    team.sb.config.update({"ready_delay": 2.5})
    team.drills_yaml(f'      sandbox:\n        schedule: "{slot_ago(1)}"\n        grace: 1h\n')

    def in_flight() -> str | None:
        for run in team.runs("drill"):
            undo = next(s for s in run.steps if s.id == "undo")
            if run.status == "running" and undo.status in ("applying", "applied", "verifying"):
                return run.id
        return None

    run_id: str = wait_for(in_flight, 60, "a's drill to be rolling back", lambda: logs(team))
    return a, b, run_id


def acquired(team: Team, lease: str) -> float:
    """When the Lease's holder acquired it (its acquireTime, wall clock)."""
    return journal_mod.parse_iso(str(team.lease(lease)["acquireTime"])).timestamp()


def finished(team: Team, run_id: str) -> journal_mod.RunRecord:
    def done() -> journal_mod.RunRecord | None:
        run = next(r for r in team.runs("drill") if r.id == run_id)
        return run if run.status in ("ok", "failed") else None

    found: journal_mod.RunRecord = wait_for(done, 120, "the drill to finish", lambda: logs(team))
    return found


def resumes(team: Team, run_id: str) -> list[journal_mod.EventRecord]:
    return [e for e in team.events(run_id) if e.kind == "run" and e.status == "resumed"]


def test_kill_9_the_leader(team: Team) -> None:
    """The follower leads within Lease duration + one renew period; the drill is resumed once."""
    a, b, run_id = leader_busy_with_a_drill(team)
    killed = team.kill(a)
    wait_for(lambda: team.holder(SCHEDULER_LEASE) == b.identity, 30, "b to lead", lambda: logs(team))
    takeover = acquired(team, SCHEDULER_LEASE) - killed
    print(f"takeover {takeover:.2f}s after kill -9 (bound {LEASE_SECONDS + RENEW_SECONDS}s)")
    assert takeover <= LEASE_SECONDS + RENEW_SECONDS + TOLERANCE, logs(team)
    assert takeover >= LEASE_SECONDS - RENEW_SECONDS - TOLERANCE  # it waited for the expiry
    assert team.lease(SCHEDULER_LEASE)["leaseTransitions"] >= 1
    wait_for(lambda: team.holder(WATCH_LEASE) == b.identity, 30, "b to watch")

    run = finished(team, run_id)
    assert run.status == "ok", logs(team)
    (resumed,) = resumes(team, run_id)
    assert resumed.data["pid"] == b.proc.pid
    assert [r.id for r in team.runs("drill")] == [run_id]  # no second drill for the slot
    assert team.image() == GOOD_IMAGE
    time.sleep(2.0)  # more looks by b: nothing more to resume
    assert len(resumes(team, run_id)) == 1


@pytest.mark.parametrize("grace", ["1s", "60s"], ids=["interrupted", "finishes"])
def test_sigterm_the_leader(team: Team, grace: str) -> None:
    """SIGTERM: Leases released at once; the drill finishes within the grace or is journalled
    interrupted and resumed once by the new leader; the old leader exits 0."""
    a, b, run_id = leader_busy_with_a_drill(team, grace=grace)
    termed = time.time()
    a.proc.send_signal(15)
    wait_for(lambda: team.holder(SCHEDULER_LEASE) == b.identity, 30, "b to lead", lambda: logs(team))
    takeover = acquired(team, SCHEDULER_LEASE) - termed
    print(f"takeover {takeover:.2f}s after SIGTERM (grace {grace})")
    # released: without it b could not lead before the Lease expired, LEASE - RENEW at best
    assert takeover < LEASE_SECONDS - RENEW_SECONDS, logs(team)
    assert a.proc.wait(90) == 0, a.text()
    assert "lease crystal-runbook-serve-scheduler released" in a.text()

    run = finished(team, run_id)
    assert run.status == "ok", logs(team)
    statuses = [e.status for e in team.events(run_id) if e.kind == "run"]
    if grace == "1s":
        assert "interrupted" in statuses, statuses
        (resumed,) = resumes(team, run_id)
        assert resumed.data["pid"] == b.proc.pid
    else:
        assert "interrupted" not in statuses, statuses
        assert resumes(team, run_id) == []
        assert run.pid == a.proc.pid  # a finished it itself, after giving up its Leases
    assert [r.id for r in team.runs("drill")] == [run_id]
    assert team.image() == GOOD_IMAGE
