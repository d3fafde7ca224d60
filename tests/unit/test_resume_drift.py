"""`resume` re-checks what the run changed and refuses on drift, in process, with the fakes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from crystal_runbook import errors, service
from crystal_runbook.testing import actions as fakes

Write = Callable[[str, str], Path]

RELEASE = """
apiVersion: crystal-runbook/v1
kind: Runbook
name: release
params:
  stuck: {type: boolean, default: false}
lock: "svc/{{ env }}"
confirm: [production]
steps:
  - {id: image, uses: fake.set, with: {key: release, value: v2, never_satisfied: "{{ params.stuck }}"}, retry: {attempts: 2, delay: 10ms}}
  - {id: healthy, uses: fake.gate, with: {key: health}, retry: {attempts: 2, delay: 10ms}}
"""

UNDO = """
apiVersion: crystal-runbook/v1
kind: Runbook
name: undo
lock: "svc/{{ env }}"
steps:
  - {id: undo, uses: fake.set, with: {key: release, value: v1}}
"""


@pytest.fixture
def written(write_runbook: Write) -> None:
    write_runbook("release", RELEASE)
    write_runbook("undo", UNDO)


def failed_release(ws: service.Workspace, **params: object) -> str:
    """A release that changed `release` to v2 and then failed (health gate closed)."""
    result = service.runs.run(ws, "release", dict(params), assume_yes=True)
    assert result.run.status == "failed"
    return result.run.id


@pytest.mark.usefixtures("written")
class TestDrift:
    def test_a_rollback_since_makes_resume_refuse_naming_it(
        self, workspace: service.Workspace
    ) -> None:
        """Release failed its gate, a rollback undid it: resume refuses, names the rollback."""
        run_id = failed_release(workspace)
        undo = service.runs.run(workspace, "undo", {})
        assert undo.run.status == "ok"
        fakes.set_state(workspace.state_dir, "health", "open")  # healthy now, on the old release
        applies = fakes.applies(workspace.state_dir)
        with pytest.raises(errors.RunDrifted) as refused:
            service.runs.resume(workspace, run_id)
        assert refused.value.exit_code == 1
        message = str(refused.value)
        assert f"run {undo.run.id} (undo by tester, ok at" in message
        assert "step image: it changed release: None -> 'v2'" in message
        assert "release: 'v1' -> 'v2'" in message  # what differs now
        assert f"resume {run_id} --force" in message
        assert fakes.read_state(workspace.state_dir)["release"] == "v1"
        assert fakes.applies(workspace.state_dir) == applies
        record = service.runs.show(workspace, run_id)
        assert record.status == "failed"  # never ok on a state it did not produce
        events = workspace.journal.events(run_id)
        assert any(e.status == "resume refused" for e in events)

    def test_force_reapplies_from_the_drifted_step(self, workspace: service.Workspace) -> None:
        """--force re-applies the release and finishes; the journal says who forced it."""
        run_id = failed_release(workspace)
        service.runs.run(workspace, "undo", {})
        fakes.set_state(workspace.state_dir, "health", "open")
        resumed = service.runs.resume(workspace, run_id, force=True)
        assert resumed.run.status == "ok"
        assert fakes.read_state(workspace.state_dir)["release"] == "v2"
        assert [line.split()[0] for line in fakes.applies(workspace.state_dir)] == [
            "release=v2",
            "release=v1",
            "release=v2",
        ]
        forced = [e for e in workspace.journal.events(run_id) if e.status == "resume forced"]
        assert len(forced) == 1
        assert forced[0].data["actor"] == "tester"

    def test_force_follows_the_confirmation_rules(self, workspace: service.Workspace) -> None:
        """In a confirm environment --force needs --yes (exit 4), like any change there."""
        workspace.env = "production"
        run_id = failed_release(workspace)
        service.runs.run(workspace, "undo", {})
        with pytest.raises(errors.ConfirmationRequired):
            service.runs.resume(workspace, run_id, force=True)
        assert fakes.read_state(workspace.state_dir)["release"] == "v1"
        fakes.set_state(workspace.state_dir, "health", "open")
        done = service.runs.resume(workspace, run_id, force=True, assume_yes=True)
        assert done.run.status == "ok"

    def test_the_step_it_stopped_in_counts_when_another_run_came_since(
        self, workspace: service.Workspace
    ) -> None:
        """Stopped while its change was being verified, then undone: resume does not redo it."""
        run_id = failed_release(workspace, stuck=True)
        assert [s.status for s in service.runs.show(workspace, run_id).steps] == [
            "failed",
            "pending",
        ]
        service.runs.run(workspace, "undo", {})
        with pytest.raises(errors.RunDrifted, match="step image: it was changing release"):
            service.runs.resume(workspace, run_id)
        assert fakes.read_state(workspace.state_dir)["release"] == "v1"

    def test_a_change_by_hand_is_drift_too(self, workspace: service.Workspace) -> None:
        """No run did it: resume still refuses, saying it changed outside crystal-runbook."""
        run_id = failed_release(workspace)
        fakes.set_state(workspace.state_dir, "release", "v0")
        with pytest.raises(errors.RunDrifted, match="changed outside crystal-runbook"):
            service.runs.resume(workspace, run_id)

    def test_when_everything_still_holds_resume_continues_as_before(
        self, workspace: service.Workspace
    ) -> None:
        """No drift: finished steps are not applied again; the run finishes ok."""
        run_id = failed_release(workspace)
        fakes.set_state(workspace.state_dir, "health", "open")
        resumed = service.runs.resume(workspace, run_id)
        assert resumed.run.status == "ok"
        assert len(fakes.applies(workspace.state_dir)) == 1
