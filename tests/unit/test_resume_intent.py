"""A change a run journalled as its intent, found done on resume, is that run's change
(issue 17 points 2 and 3): applied, not "no change needed", and never applied twice."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from crystal_runbook import service
from crystal_runbook.engine import journal
from crystal_runbook.incident import generate
from crystal_runbook.testing import actions as fakes

SET = """
apiVersion: crystal-runbook/v1
kind: Runbook
name: set
lock: "svc/{{ env }}"
steps:
  - {id: first, uses: fake.set, with: {key: first, value: "1"}}
  - {id: middle, uses: fake.set, with: {key: middle, value: "2"}}
"""


def stop_in(ws: service.Workspace, run_id: str, step_id: str, status: str) -> None:
    """Make the journal look like the process died with ``step_id`` in ``status``."""
    run = ws.journal.get_run(run_id)
    step = next(s for s in run.steps if s.id == step_id)
    step.status, step.changed, step.ended_at, step.outputs = status, None, None, {}
    ws.journal.save_step(step, message=status)
    run.status, run.ended_at = "interrupted", journal.now_iso()
    ws.journal.update_run(run, event="interrupted")


class TestAppliedBeforeItStopped:
    """The journalled intent and the applied event decide what the run changed."""

    def test_resume_keeps_the_intent_and_applies_nothing(
        self, workspace: service.Workspace, write_runbook: Callable[[str, str], Path]
    ) -> None:
        """Killed mid-apply after the change landed: resume records it as applied by the run."""
        write_runbook("set", SET)
        first = service.runs.run(workspace, "set", {})
        assert first.run.status == "ok"
        stop_in(workspace, first.run.id, "middle", "applying")
        applies = len(fakes.applies(workspace.state_dir))
        resumed = service.runs.resume(workspace, first.run.id)
        assert resumed.run.status == "ok"
        middle = next(s for s in resumed.run.steps if s.id == "middle")
        assert middle.changed is True
        assert middle.summary.startswith("applied by this run before it stopped")
        assert [c["field"] for c in middle.changes] == ["middle"]
        assert len(fakes.applies(workspace.state_dir)) == applies  # not applied again
        events = workspace.journal.events(first.run.id)
        applied = [e for e in events if e.step_id == "middle" and e.status == "applied"]
        assert applied[-1].data["intent"] == middle.changes

    def test_document_lists_the_change_from_the_intent(
        self, workspace: service.Workspace, write_runbook: Callable[[str, str], Path]
    ) -> None:
        """The incident document's changes come from the journalled intent."""
        write_runbook("set", SET)
        first = service.runs.run(workspace, "set", {})
        stop_in(workspace, first.run.id, "middle", "verifying")
        service.runs.resume(workspace, first.run.id)
        prepared = generate.prepare(workspace.journal, first.run.id, directory=workspace.state_dir)
        rendered = generate.render(prepared, redactor=workspace.redactor, draw=False)
        changed = {(c.step, c.field) for c in rendered.document.changes}
        assert {("first", "first"), ("middle", "middle")} <= changed

    def test_a_step_never_started_is_no_change(
        self, workspace: service.Workspace, write_runbook: Callable[[str, str], Path]
    ) -> None:
        """Without a journalled intent, a satisfied check is still "no change needed"."""
        write_runbook("set", SET)
        fakes.set_state(workspace.state_dir, "middle", "2")
        run = service.runs.run(workspace, "set", {})
        middle = next(s for s in run.run.steps if s.id == "middle")
        assert middle.changed is False
        assert not middle.summary.startswith("applied by this run")
