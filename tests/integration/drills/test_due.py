"""`crystal-runbook drill due --run` on the sandbox: missed slots, blackouts, two at once.

The schedules are written for the real clock: a one-off cron expression for the minute a
few minutes (or hours) ago, so each test knows exactly which slot is the latest one.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from tests.integration.drills.conftest import Drills

pytestmark = pytest.mark.integration


def slot_ago(minutes: float) -> str:
    """A cron expression that matched once, ``minutes`` ago (UTC)."""
    at = datetime.now(UTC) - timedelta(minutes=minutes)
    return f"{at.minute} {at.hour} {at.day} {at.month} *"


def schedule(drills: Drills, cron: str, extra: str = "") -> None:
    """maia's sandbox drill on ``cron`` with a one-hour grace; ``extra`` lines (8 spaces in)."""
    drills.drills_yaml(
        "services:\n  maia:\n    environments:\n      sandbox:\n"
        f'        schedule: "{cron}"\n        grace: 1h\n{extra}'
    )


class TestMissedSlots:
    """A missed slot runs once within its grace, never outside it."""

    def test_within_grace_runs_once(self, drills: Drills) -> None:
        """Ten minutes late: the first `drill due --run` runs it, the second finds it done."""
        schedule(drills, slot_ago(10))
        listed = drills.json("drill", "due")
        assert [p["now"]["state"] for p in listed] == ["due"]
        first = drills.json("drill", "due", "--run")
        assert [o["action"] for o in first] == ["ran"]
        assert first[0]["status"] == "ok"
        second = drills.json("drill", "due", "--run")
        assert [o["action"] for o in second] == ["done"]
        runs = drills.drill_runs()
        assert len(runs) == 1
        run = drills.json("runs", "show", runs[0]["id"])
        assert run["status"] == "ok"

    def test_outside_grace_does_not_run(self, drills: Drills) -> None:
        """Two hours late with a one-hour grace: missed, and nothing runs."""
        schedule(drills, slot_ago(120))
        before = drills.request_count()
        out = drills.json("drill", "due", "--run")
        assert [o["action"] for o in out] == ["missed"]
        assert "more than its grace of 1h00m" in out[0]["message"]
        assert drills.drill_runs() == []
        assert drills.mutations(before, exclude_leases=False) == []


def test_a_blackout_blocks_a_due_drill(drills: Drills) -> None:
    """The slot is due, but today is blacked out: nothing runs, and it says why."""
    today = datetime.now(UTC).date()
    schedule(
        drills,
        slot_ago(10),
        extra=(
            "        blackout:\n"
            f"          - {{from: {today - timedelta(days=1)}, to: {today + timedelta(days=1)},"
            " reason: release week}\n"
        ),
    )
    before = drills.request_count()
    out = drills.json("drill", "due", "--run")
    assert [o["action"] for o in out] == ["blackout"]
    assert "release week" in out[0]["message"]
    assert drills.drill_runs() == []
    assert drills.mutations(before, exclude_leases=False) == []


def test_two_due_runs_at_once_run_one_drill(drills: Drills) -> None:
    """Two schedulers start together; the lock lets exactly one drill run."""
    schedule(drills, slot_ago(5))
    procs = [drills.popen("drill", "due", "--run", "-o", "json") for _ in range(2)]
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=180)
        assert proc.returncode == 0, stderr
        results.append(json.loads(stdout)[0])
    actions = sorted(r["action"] for r in results)
    assert actions in (["ran", "skipped"], ["done", "ran"]), results
    assert len(drills.drill_runs()) == 1
    ran = next(r for r in results if r["action"] == "ran")
    assert ran["status"] == "ok"
    other = next(r for r in results if r["action"] != "ran")
    if other["action"] == "skipped":
        assert "is held by run" in other["message"]
