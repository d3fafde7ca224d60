"""The executor's guarantees, in process, with the fake actions."""

from __future__ import annotations

import _thread
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import pytest

from crystal_runbook import errors, service, testing
from crystal_runbook.engine import journal
from crystal_runbook.testing import actions as fakes
from tests.conftest import JournalBackend

Write = Callable[[str, str], Path]

TWO_SETS = """
apiVersion: crystal-runbook/v1
kind: Runbook
name: two
lock: "two/{{ env }}"
steps:
  - {id: a, uses: fake.set, with: {key: a, value: "1"}}
  - {id: b, uses: fake.set, with: {key: b, value: "2"}}
"""


def sink_of(ws: service.Workspace) -> testing.RecordingSink:
    assert isinstance(ws.sink, testing.RecordingSink)
    return ws.sink


class TestIdempotence:
    def test_second_run_changes_nothing_and_says_so(
        self, workspace: service.Workspace, write_runbook: Write
    ) -> None:
        """Check decides; the second run applies nothing."""
        write_runbook("two", TWO_SETS)
        first = service.runs.run(workspace, "two", {})
        second = service.runs.run(workspace, "two", {})
        assert first.run.status == second.run.status == "ok"
        assert [s.changed for s in first.run.steps] == [True, True]
        assert [s.changed for s in second.run.steps] == [False, False]
        assert len(fakes.applies(workspace.state_dir)) == 2
        messages = [e.message for e in sink_of(workspace).events if e.run_id == second.run.id]
        assert "no change needed: a is 1" in messages
        assert messages[-1].endswith("nothing needed changing")

    def test_plan_changes_nothing_and_shows_the_diff(
        self, workspace: service.Workspace, write_runbook: Write
    ) -> None:
        """`plan` runs only checks and journals nothing."""
        write_runbook("two", TWO_SETS)
        _, planned = service.runs.plan(workspace, "two", {})
        assert [p.status for p in planned] == ["change", "change"]
        assert planned[0].changes[0].render() == "a: None -> '1'"
        assert fakes.read_state(workspace.state_dir) == {}
        assert service.runs.history(workspace) == []


class TestRetriesAndFailures:
    def test_verify_is_retried_until_it_holds(
        self, workspace: service.Workspace, write_runbook: Write
    ) -> None:
        """A change that takes time to settle is polled, not failed."""
        write_runbook(
            "settle",
            """
            apiVersion: crystal-runbook/v1
            kind: Runbook
            name: settle
            steps:
              - id: a
                uses: fake.set
                with: {key: a, value: "1", verify_after: 0.3}
                retry: {attempts: 50, delay: 0.05}
        """,
        )
        result = service.runs.run(workspace, "settle", {})
        assert result.run.status == "ok"
        assert result.run.steps[0].ended_at is not None
        took = (
            journal.parse_iso(result.run.steps[0].ended_at)
            - journal.parse_iso(str(result.run.steps[0].started_at))
        ).total_seconds()
        assert took >= 0.3  # it waited for the change to settle
        assert result.run.steps[0].attempts == 1  # one apply; the polls of verify are no attempts

    def test_verification_that_never_holds_fails_within_the_timeout(
        self, workspace: service.Workspace, write_runbook: Write
    ) -> None:
        """The step fails with evidence; on_failure sees which step failed."""
        write_runbook(
            "stuck",
            """
            apiVersion: crystal-runbook/v1
            kind: Runbook
            name: stuck
            steps:
              - id: a
                uses: fake.set
                with: {key: a, value: "1", never_satisfied: true}
                timeout: 0.4s
              - {id: b, uses: fake.set, with: {key: b, value: "2"}}
            on_failure:
              - id: tell
                uses: fake.output
                with: {values: {failed: "{{ failed_step.id }}", error: "{{ failed_step.error }}"}}
        """,
        )
        result = service.runs.run(workspace, "stuck", {})
        assert result.run.status == "failed"
        assert result.exit_code == 1
        assert isinstance(result.error, errors.VerificationFailed)
        main, tell = result.run.steps[0], result.run.steps[-1]
        assert main.status == "failed"
        assert "never settles" in (main.error or "")
        assert result.run.steps[1].status == "pending"
        assert tell.phase == "on_failure"
        assert tell.outputs["failed"] == "a"
        assert "verify did not hold" in tell.outputs["error"]
        assert fakes.read_state(workspace.state_dir).get("b") is None

    def test_temporary_apply_failures_are_retried(
        self, workspace: service.Workspace, write_runbook: Write
    ) -> None:
        """A 429/5xx-like failure is retried after a re-check."""
        write_runbook(
            "flaky",
            """
            apiVersion: crystal-runbook/v1
            kind: Runbook
            name: flaky
            steps:
              - {id: a, uses: fake.set, with: {key: a, value: "1", fail_times: 2}}
        """,
        )
        result = service.runs.run(workspace, "flaky", {})
        assert result.run.status == "ok"
        assert result.run.steps[0].attempts == 3  # three applies (its verification is no attempt)
        assert len(fakes.applies(workspace.state_dir)) == 1

    def test_permanent_failure_keeps_its_evidence(
        self, workspace: service.Workspace, write_runbook: Write
    ) -> None:
        """The failing step's error and tail of output are journalled."""
        write_runbook(
            "bad",
            """
            apiVersion: crystal-runbook/v1
            kind: Runbook
            name: bad
            steps:
              - {id: boom, uses: fake.fail, with: {message: "refused by the server"}}
        """,
        )
        result = service.runs.run(workspace, "bad", {})
        run = service.runs.show(workspace, result.run.id)
        assert run.status == "failed"
        assert run.error == "step 'boom' (fake.fail): refused by the server"
        assert run.steps[0].evidence["tail"].endswith("of the fake's output")


class TestTemplatesAtRunTime:
    def test_outputs_flow_to_later_steps_and_when_skips(
        self, workspace: service.Workspace, write_runbook: Write
    ) -> None:
        """`steps.<id>.outputs` of earlier steps are rendered just before a step runs."""
        write_runbook(
            "flow",
            """
            apiVersion: crystal-runbook/v1
            kind: Runbook
            name: flow
            params:
              skip: {type: boolean, default: true}
            steps:
              - {id: src, uses: fake.output, with: {values: {revision: 7}}}
              - id: use
                uses: fake.set
                with: {key: rev, value: "r{{ steps.src.outputs.revision }}"}
              - id: maybe
                uses: fake.set
                when: "not params.skip"
                with: {key: never, value: "x"}
        """,
        )
        result = service.runs.run(workspace, "flow", {})
        assert fakes.read_state(workspace.state_dir)["rev"] == "r7"
        assert result.run.steps[2].status == "skipped"
        _, planned = service.runs.plan(workspace, "flow", {})
        assert [p.status for p in planned] == ["check", "deferred", "skip"]

    def test_wrong_type_from_a_parameter_is_refused_before_anything_runs(
        self, workspace: service.Workspace, write_runbook: Write
    ) -> None:
        """A rendered value of the wrong type is exit 2 with the position, nothing journalled."""
        write_runbook(
            "typed",
            """
            apiVersion: crystal-runbook/v1
            kind: Runbook
            name: typed
            params:
              wait_for: {type: string, default: "soon"}
            steps:
              - {id: a, uses: fake.set, with: {key: a, value: "1"}}
              - {id: b, uses: wait, with: {seconds: "{{ params.wait_for }}"}}
        """,
        )
        with pytest.raises(errors.RunbookInvalid) as info:
            service.runs.run(workspace, "typed", {})
        assert "typed.yaml:8:32: steps[1].with.seconds: expected a duration" in str(info.value)
        assert service.runs.history(workspace) == []
        assert fakes.read_state(workspace.state_dir) == {}


class TestConfirmationAndLocks:
    def test_confirm_environment_needs_yes(
        self, workspace: service.Workspace, write_runbook: Write
    ) -> None:
        """Without --yes nothing is journalled and the exit code is 4."""
        write_runbook("prod", TWO_SETS + "confirm: [production]\n")
        workspace.env = "production"
        with pytest.raises(errors.ConfirmationRequired) as info:
            service.runs.run(workspace, "prod", {})
        assert info.value.exit_code == 4
        assert service.runs.history(workspace) == []
        assert service.runs.run(workspace, "prod", {}, assume_yes=True).run.status == "ok"

    def test_held_lock_refuses_and_names_the_holder(
        self,
        backend_workspace: service.Workspace,
        journal_backend: JournalBackend,
        write_runbook: Write,
    ) -> None:
        """A live holder means exit 3 with its run id, actor, host and start time."""
        workspace = backend_workspace
        write_runbook("two", TWO_SETS)
        backend = journal_backend.locks(workspace.journal)
        lease = backend.acquire("two/local", run_id="other-run", actor="alice")
        holder = backend.holder("two/local")
        try:
            with pytest.raises(errors.LockHeld) as info:
                service.runs.run(workspace, "two", {})
        finally:
            lease.release()
        message = str(info.value)
        assert holder is not None
        assert f"held by run other-run (actor alice on {holder.host}, started " in message
        assert holder.acquired_at in message
        assert info.value.exit_code == 3
        assert service.runs.history(workspace) == []

    def test_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(
        self,
        backend_workspace: service.Workspace,
        journal_backend: JournalBackend,
        write_runbook: Write,
    ) -> None:
        """A holder whose process is gone does not block a rollback."""
        workspace = backend_workspace
        write_runbook("two", TWO_SETS)
        backend = journal_backend.locks(workspace.journal, pid=2**22 + 12345)
        backend.acquire("two/local", run_id="dead-run", actor="bob")
        result = service.runs.run(workspace, "two", {})
        assert result.run.status == "ok"
        warnings = [e.message for e in sink_of(workspace).events if e.kind == "warning"]
        assert warnings
        assert "took over stale lock 'two/local' from run dead-run" in warnings[0]
        events = workspace.journal.events(result.run.id)
        assert any(e.kind == "warning" for e in events)


class TestInterruptAndResume:
    def test_interrupt_journals_releases_the_lock_and_resume_finishes(
        self,
        backend_workspace: service.Workspace,
        journal_backend: JournalBackend,
        write_runbook: Write,
    ) -> None:
        """Ctrl-C mid-step: interrupted, lock free, resume completes without re-applying."""
        workspace = backend_workspace
        write_runbook(
            "slow",
            """
            apiVersion: crystal-runbook/v1
            kind: Runbook
            name: slow
            lock: "slow"
            steps:
              - {id: a, uses: fake.set, with: {key: a, value: "1"}}
              - {id: b, uses: fake.set, with: {key: b, value: "2", verify_delay: 2}}
              - {id: c, uses: fake.set, with: {key: c, value: "3"}}
        """,
        )
        sink = sink_of(workspace)
        stop = threading.Event()

        def ctrl_c_in_b() -> None:  # Ctrl-C while b verifies, however slow the journal is
            while not stop.wait(0.01):
                if "verifying" in sink.statuses("b"):
                    _thread.interrupt_main()
                    return

        watcher = threading.Thread(target=ctrl_c_in_b)
        watcher.start()
        try:
            result = service.runs.run(workspace, "slow", {})
        finally:
            stop.set()
            watcher.join()
        assert result.run.status == "interrupted"
        assert result.exit_code == 130
        assert [s.status for s in result.run.steps] == ["ok", "interrupted", "pending"]
        assert journal_backend.locks(workspace.journal).holder("slow") is None
        write_runbook("slow", "this file changed; resume uses the journalled text\n")
        resumed = service.runs.resume(workspace, result.run.id[:6])
        assert resumed.run.status == "ok"
        assert [s.status for s in resumed.run.steps] == ["ok", "ok", "ok"]
        assert sorted(line.split()[0] for line in fakes.applies(workspace.state_dir)) == [
            "a=1",
            "b=2",
            "c=3",
        ]

    def test_resume_after_failure_reruns_only_the_failed_step(
        self, workspace: service.Workspace, write_runbook: Write
    ) -> None:
        """Fix the cause, resume: done steps are not applied again."""
        write_runbook(
            "gate",
            """
            apiVersion: crystal-runbook/v1
            kind: Runbook
            name: gate
            steps:
              - {id: a, uses: fake.set, with: {key: a, value: "1"}}
              - {id: wait-gate, uses: fake.gate, with: {key: gate}, timeout: 0.3s}
              - {id: c, uses: fake.set, with: {key: c, value: "3"}}
        """,
        )
        failed = service.runs.run(workspace, "gate", {})
        assert failed.run.status == "failed"
        fakes.set_state(workspace.state_dir, "gate", "open")
        resumed = service.runs.resume(workspace, failed.run.id)
        assert resumed.run.status == "ok"
        assert [line.split()[0] for line in fakes.applies(workspace.state_dir)] == ["a=1", "c=3"]
        assert service.runs.resume(workspace, failed.run.id).run.status == "ok"  # nothing left to do


class TestSecrets:
    def test_secrets_never_reach_the_journal(
        self, workspace: service.Workspace, write_runbook: Write, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Environment secrets and secret parameters are masked in every journal row."""
        token = "xoxb-1234567890-abcdefghijkl"  # noqa: S105 - a fake token for the test
        monkeypatch.setenv("SLACK_BOT_TOKEN", token)
        fake_url = "postgresql://crystal:hunter2pass@db/crystal"
        monkeypatch.setenv("CRYSTAL_DATABASE_URL", fake_url)
        write_runbook(
            "leak",
            """
            apiVersion: crystal-runbook/v1
            kind: Runbook
            name: leak
            params:
              note: {type: string}
              api_key: {type: string, secret: true}
            steps:
              - {id: a, uses: fake.output, with: {values: {note: "{{ params.note }}", key: "{{ params.api_key }}"}}}
              - {id: b, uses: fake.fail, with: {message: "{{ params.note }}"}}
        """,
        )
        ws = service.Workspace(
            state_dir=workspace.state_dir,
            runbooks_dir=workspace.runbooks_dir,
            inventory_dir=workspace.inventory_dir,
            action_modules=("crystal_runbook.testing",),
            database_url=None,  # the URL is only a secret in the environment here
        )
        note = f"token {token} db {fake_url}"
        service.runs.run(ws, "leak", {"note": note, "api_key": "s3cr3t-value-42"})
        ws.close()
        dump = "\n".join(sqlite3.connect(workspace.state_dir / "journal.db").iterdump())
        for secret in (token, "hunter2pass", "s3cr3t-value-42"):
            assert secret not in dump
        assert "*****" in dump


class Warmed(fakes.FakeNoop):
    """A read-only fake whose ``warm`` records the thread and the time it ran on."""

    name = "fake.warmed"
    calls: ClassVar[list[tuple[str, float]]] = []

    def warm(self) -> None:
        Warmed.calls.append((threading.current_thread().name, time.time()))


class TestWarmUp:
    """While a step waits for its change to settle, the later steps' actions warm up."""

    def test_later_actions_warm_during_the_wait(
        self, workspace: service.Workspace, write_runbook: Write
    ) -> None:
        """The read-only step after a slow verify was warmed on another thread, during it."""
        Warmed.calls.clear()
        workspace.registry.register(Warmed)
        write_runbook(
            "settle",
            """
            apiVersion: crystal-runbook/v1
            kind: Runbook
            name: settle
            steps:
              - {id: a, uses: fake.set, with: {key: a, value: "1", verify_delay: 0.5}}
              - {id: b, uses: fake.warmed}
        """,
        )
        result = service.runs.run(workspace, "settle", {})
        assert result.run.status == "ok", result.run.error
        assert len(Warmed.calls) == 1
        thread, at = Warmed.calls[0]
        assert thread == "warm-up"
        step_a = result.run.steps[0]
        assert step_a.started_at is not None
        assert step_a.ended_at is not None
        assert journal.parse_iso(step_a.started_at).timestamp() <= at
        assert at <= journal.parse_iso(step_a.ended_at).timestamp() + 0.001

    def test_a_failing_warm_up_is_harmless(
        self, workspace: service.Workspace, write_runbook: Write
    ) -> None:
        """An action whose warm-up raises still runs: warming is only an optimisation."""

        class Broken(fakes.FakeNoop):
            name = "fake.broken-warm"

            def warm(self) -> None:
                raise RuntimeError("cannot warm")

        workspace.registry.register(Broken)
        write_runbook(
            "settle",
            """
            apiVersion: crystal-runbook/v1
            kind: Runbook
            name: settle
            steps:
              - {id: a, uses: fake.set, with: {key: a, value: "1", verify_delay: 0.1}}
              - {id: b, uses: fake.broken-warm}
        """,
        )
        result = service.runs.run(workspace, "settle", {})
        assert result.run.status == "ok", result.run.error
