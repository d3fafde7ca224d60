"""Refusals before side effects (preflight) and honest plans, in process, with the fakes."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from crystal_runbook import service, testing
from crystal_runbook.testing import actions as fakes

Write = Callable[[str, str], Path]

GUARDED = """
apiVersion: crystal-runbook/v1
kind: Runbook
name: guarded
lock: "guarded/{{ env }}"
confirm: [production]
steps:
  - {id: announce, uses: fake.set, with: {key: announced, value: "yes"}}
  - {id: guard, uses: fake.guard, with: {key: g, temporary: %s}}
  - {id: after, uses: fake.set, with: {key: after, value: "1"}}
on_failure:
  - {id: failure-notice, uses: fake.set, with: {key: failure, value: "told"}}
"""


def sink_of(ws: service.Workspace) -> testing.RecordingSink:
    assert isinstance(ws.sink, testing.RecordingSink)
    return ws.sink


class TestPreflight:
    def test_a_later_refusal_stops_the_run_before_its_first_apply(
        self, workspace: service.Workspace, write_runbook: Write
    ) -> None:
        """The guard refuses: nothing applied, no on_failure, run `refused` (exit 1)."""
        write_runbook("guarded", GUARDED % "false")
        fakes.set_state(workspace.state_dir, "g", "refuse")
        result = service.runs.run(workspace, "guarded", {})
        assert result.exit_code == 1
        assert result.run.status == "refused"
        assert fakes.applies(workspace.state_dir) == []
        assert "announced" not in fakes.read_state(workspace.state_dir)
        assert "failure" not in fakes.read_state(workspace.state_dir)
        journalled = service.runs.show(workspace, result.run.id)
        assert journalled.status == "refused"
        assert journalled.error is not None
        assert "step 'guard' (fake.guard) refused: refused by fake.guard" in journalled.error
        assert "set g to something else" in journalled.error  # what to do
        assert [(s.id, s.status) for s in journalled.steps] == [
            ("announce", "pending"),
            ("guard", "refused"),
            ("after", "pending"),
        ]
        assert service.runs.history(workspace)[0].status == "refused"
        statuses = [(e.kind, e.status) for e in sink_of(workspace).events]
        assert ("run", "refused") in statuses
        assert ("run", "running") not in statuses

    def test_the_lock_is_not_kept_after_a_refusal(
        self, workspace: service.Workspace, write_runbook: Write
    ) -> None:
        """A refused run releases its lock: the next run is refused again, not exit 3."""
        write_runbook("guarded", GUARDED % "false")
        fakes.set_state(workspace.state_dir, "g", "refuse")
        assert service.runs.run(workspace, "guarded", {}).run.status == "refused"
        assert service.runs.run(workspace, "guarded", {}).run.status == "refused"
        with sqlite3.connect(workspace.state_dir / "journal.db") as conn:
            assert conn.execute("SELECT COUNT(*) FROM locks").fetchone()[0] == 0

    def test_a_temporary_error_is_not_a_refusal(
        self, workspace: service.Workspace, write_runbook: Write
    ) -> None:
        """An unreachable API in preflight is left to the run's retries: the run starts."""
        write_runbook("guarded", GUARDED % "true")
        fakes.set_state(workspace.state_dir, "g", "refuse")
        result = service.runs.run(workspace, "guarded", {})
        assert result.run.status == "failed"
        assert fakes.read_state(workspace.state_dir)["announced"] == "yes"
        assert fakes.read_state(workspace.state_dir)["failure"] == "told"

    def test_a_step_that_uses_earlier_outputs_is_checked_at_run_time(
        self, workspace: service.Workspace, write_runbook: Write
    ) -> None:
        """Inputs not known before the run: no preflight refusal; the step fails in its turn."""
        write_runbook(
            "later",
            """
            apiVersion: crystal-runbook/v1
            kind: Runbook
            name: later
            steps:
              - {id: first, uses: fake.set, with: {key: g, value: refuse}}
              - {id: guard, uses: fake.guard, with: {key: "{{ steps.first.outputs.key }}"}}
            """,
        )
        result = service.runs.run(workspace, "later", {})
        assert result.run.status == "failed"
        assert [s.status for s in result.run.steps] == ["ok", "failed"]

    def test_with_nothing_to_refuse_the_run_goes_on_as_before(
        self, workspace: service.Workspace, write_runbook: Write
    ) -> None:
        """No refusal: the run applies every step once."""
        write_runbook("guarded", GUARDED % "false")
        result = service.runs.run(workspace, "guarded", {})
        assert result.run.status == "ok"
        assert sorted(fakes.applies(workspace.state_dir)) == [
            f"after=1 {result.run.id}",
            f"announced=yes {result.run.id}",
        ]


class TestPlanExitCodes:
    def test_plan_of_a_refusal_is_exit_1(
        self, workspace: service.Workspace, write_runbook: Write
    ) -> None:
        """A check that refuses makes the plan exit 1 and names the step."""
        write_runbook("guarded", GUARDED % "false")
        fakes.set_state(workspace.state_dir, "g", "refuse")
        request, planned = service.runs.plan(workspace, "guarded", {})
        assert [p.status for p in planned] == ["change", "refused", "change"]
        assert service.runs.plan_exit_code(request, planned) == 1

    def test_plan_of_a_failing_check_is_exit_1(
        self, workspace: service.Workspace, write_runbook: Write
    ) -> None:
        """A check that fails (temporary error) also makes the plan exit 1."""
        write_runbook("guarded", GUARDED % "true")
        fakes.set_state(workspace.state_dir, "g", "refuse")
        request, planned = service.runs.plan(workspace, "guarded", {})
        assert planned[1].status == "error"
        assert service.runs.plan_exit_code(request, planned) == 1

    def test_confirmation_is_exit_4_only_when_all_else_is_fine(
        self, workspace: service.Workspace, write_runbook: Write
    ) -> None:
        """Production without --yes: 4; with --yes: 0; a refusal there: 1."""
        write_runbook("guarded", GUARDED % "false")
        workspace.env = "production"
        request, planned = service.runs.plan(workspace, "guarded", {})
        assert service.runs.plan_exit_code(request, planned) == 4
        request, planned = service.runs.plan(workspace, "guarded", {}, assume_yes=True)
        assert service.runs.plan_exit_code(request, planned) == 0
        fakes.set_state(workspace.state_dir, "g", "refuse")
        request, planned = service.runs.plan(workspace, "guarded", {})
        assert service.runs.plan_exit_code(request, planned) == 1

    def test_a_change_an_earlier_step_makes_is_not_listed_twice(
        self, workspace: service.Workspace, write_runbook: Write
    ) -> None:
        """The second step sets what the first already sets: `no change`, naming the first."""
        write_runbook(
            "twice",
            """
            apiVersion: crystal-runbook/v1
            kind: Runbook
            name: twice
            steps:
              - {id: first, uses: fake.set, with: {key: mode, value: legacy}}
              - {id: again, uses: fake.set, with: {key: mode, value: legacy}}
              - {id: other, uses: fake.set, with: {key: mode, value: hybrid}}
            """,
        )
        _, planned = service.runs.plan(workspace, "twice", {})
        assert [p.status for p in planned] == ["change", "ok", "change"]
        assert planned[1].summary == "no change: step first already sets mode"
