"""service.recovery: runs a replica left unfinished are resumed by the next leader, once."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from crystal_runbook import service
from crystal_runbook.engine import journal as journal_mod
from crystal_runbook.server.worker import interrupt
from crystal_runbook.service import recovery, runs
from crystal_runbook.testing.actions import applies

SLOW = """
apiVersion: crystal-runbook/v1
kind: Runbook
name: slow
lock: "slow/{{ env }}"
steps:
  - id: first
    uses: fake.set
    with: {key: a, value: "1"}
  - id: second
    uses: fake.set
    with: {key: b, value: "2", apply_delay: 0.4}
"""


def interrupted_run(ws: service.Workspace, duty: str | None) -> str:
    """Start `slow` as ``duty`` of replica r1 (no serve origin: None) and interrupt it in its
    second step, as `serve` does after the grace period."""
    ws.origin = recovery.origin("r1", duty) if duty else {}
    found: list[str] = []

    def run() -> None:
        result = runs.run(ws, "slow", {})
        found.append(result.run.id)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        listed = ws.journal.list_runs(limit=1)
        if listed and ws.journal.get_run(listed[0].id).steps[1].status == "applying":
            break
        time.sleep(0.02)
    assert thread.ident is not None
    interrupt(thread.ident)
    thread.join(10)
    (run_id,) = found
    assert ws.journal.get_run(run_id).status == "interrupted"
    ws.origin = {}
    return run_id


@pytest.fixture
def slow(workspace: service.Workspace, write_runbook: Callable[[str, str], Path]) -> service.Workspace:
    write_runbook("slow", SLOW)
    return workspace


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


class TestResumedOnce:
    """An orphaned run of the leader's duty is resumed, and only once."""

    def test_interrupted_run_is_resumed_then_left_alone(self, slow: service.Workspace) -> None:
        """The first look resumes it to ok (each step applied once); the second does nothing."""
        run_id = interrupted_run(slow, "scheduler")
        first = recovery.resume_orphans(slow, {"scheduler"})
        assert [(r.run_id, r.action, r.status) for r in first] == [(run_id, "resumed", "ok")]
        assert recovery.resume_orphans(slow, {"scheduler"}) == []
        assert sorted(line.split()[0] for line in applies(slow.state_dir)) == ["a=1", "b=2"]
        statuses = [e.status for e in slow.journal.events(run_id) if e.kind == "run"]
        assert statuses.count("resumed") == 1

    def test_a_killed_run_of_a_dead_process_is_resumed(self, slow: service.Workspace) -> None:
        """`running` in a process of this host that is gone (kill -9) counts as orphaned."""
        run_id = interrupted_run(slow, "scheduler")
        record = slow.journal.get_run(run_id)
        record.status, record.pid = "running", dead_pid()
        slow.journal.update_run(record, event="running")
        (outcome,) = recovery.resume_orphans(slow, {"scheduler"})
        assert (outcome.action, outcome.status) == ("resumed", "ok")

    def test_a_run_of_this_process_is_never_an_orphan(self, slow: service.Workspace) -> None:
        """A run journalled `running` by this very process is in flight here: left alone."""
        run_id = interrupted_run(slow, "scheduler")
        record = slow.journal.get_run(run_id)
        record.status = "running"
        slow.journal.update_run(record, event="running")
        assert recovery.candidates(slow, {"scheduler"}) == []


class TestNotResumed:
    """What is not the leader's to resume stays as it is."""

    def test_other_duties_and_runs_by_hand(self, slow: service.Workspace) -> None:
        """A Slack run is not the watcher's; a run interrupted at a terminal is nobody's."""
        by_slack = interrupted_run(slow, "slack")
        by_hand = interrupted_run(slow, None)
        assert recovery.resume_orphans(slow, {"watch/maia/sandbox"}) == []
        assert slow.journal.get_run(by_slack).status == "interrupted"
        assert slow.journal.get_run(by_hand).status == "interrupted"

    def test_a_refused_resume_is_not_tried_again(self, slow: service.Workspace) -> None:
        """A resume refused once (journalled) is not attempted at every look."""
        run_id = interrupted_run(slow, "scheduler")
        slow.journal.add_event(run_id, kind="run", status=recovery.REFUSED, message="drifted")
        (outcome,) = recovery.resume_orphans(slow, {"scheduler"})
        assert outcome.action == "skipped"
        assert slow.journal.get_run(run_id).status == "interrupted"

    def test_too_old(self, slow: service.Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
        """A run whose last event is older than MAX_AGE waits for a person."""
        interrupted_run(slow, "scheduler")
        monkeypatch.setattr(recovery, "MAX_AGE", 0.0)
        (outcome,) = recovery.resume_orphans(slow, {"scheduler"})
        assert (outcome.action, outcome.message) == ("skipped", "too old to resume on its own")

    def test_origin_is_journalled_with_the_run(self, slow: service.Workspace) -> None:
        """The run's metadata names the replica and duty that started it."""
        run_id = interrupted_run(slow, "watch/maia/sandbox")
        record = slow.journal.get_run(run_id)
        assert record.meta["serve"] == {"replica": "r1", "duty": "watch/maia/sandbox"}
        assert recovery.duty_of(record) == "watch/maia/sandbox"
        assert recovery.orphaned(record, host=record.host, pid=record.pid)
        other = journal_mod.RunRecord(id="x", runbook="r", env="e", actor="a", status="ok", started_at="")
        assert not recovery.orphaned(other, host="h", pid=1)
