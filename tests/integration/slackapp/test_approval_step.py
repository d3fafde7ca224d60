"""A runbook's `approval` step in a run started from Slack: Approve and Reject buttons in the
confirm message's thread, under the same rules as the confirmation (issue 11 item 6)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from crystal_runbook.testing.slack_requests import SlackAppClient
from tests.integration.slackapp.conftest import (
    ALICE,
    BOB,
    CHANNEL,
    MALLORY,
    Stack,
    buttons,
    wait_for,
)

pytestmark = pytest.mark.integration

GOOD, CURRENT = "registry.local/maia:1.4.2", "registry.local/maia:1.5.0"
RUNBOOK = """\
apiVersion: crystal-runbook/v1
kind: Runbook
name: rollback
description: A rollback that asks a person before it patches (the approval step from Slack).
params:
  service:     {type: string, required: true}
  to_revision: {type: integer, default: 0, minimum: 0}
  reason:      {type: string, default: ""}
environments: [sandbox, production]
lock: "{{ service.name }}/{{ env }}"
steps:
  - id: go-ahead
    uses: approval
    with: {prompt: "Roll back {{ service.name }} in {{ env }} now?"}
  - id: undo
    uses: k8s.rollout_undo
    with: {to_revision: "{{ params.to_revision }}"}
    timeout: 2m
"""


@pytest.fixture
def gated(stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Stack, SlackAppClient]:
    """`serve --slack` (in this process) whose `rollback` runbook starts with an approval."""
    runbooks = tmp_path / "gated-runbooks"
    runbooks.mkdir()
    (runbooks / "rollback.yaml").write_text(RUNBOOK)
    stack.runbooks = runbooks
    monkeypatch.delenv("KUBECONFIG", raising=False)
    client, _built = stack.serve_here(monkeypatch)
    return stack, client


def confirmed(stack: Stack, app: SlackAppClient, env: str) -> tuple[str, dict[str, str]]:
    """Alice asks for the rollback in ``env`` and confirms it (Bob approves it where two
    people are needed); returns the confirm message's ts and the press fields."""
    app.command(f"rollback maia {env}", user_id=ALICE)
    confirm = stack.confirm_message()
    token = buttons(confirm)["confirm"]
    common = {"message_ts": confirm.ts, "response_url": stack.slack.response_url("press")}
    app.press("confirm", token, user_id=ALICE, user_name="alice", **common)
    if env == "production":
        wait_for(lambda: next(m for m in stack.slack.posted(CHANNEL) if m.ts == confirm.ts).updates,
                 20, "the Approve button of the confirmation")
        app.press("approve", token, user_id=BOB, user_name="bob", **common)
    return confirm.ts, common


def approval_message(stack: Stack, thread: str):  # type: ignore[no-untyped-def]
    """The approval step's message (Approve and Reject) in the confirm message's thread."""

    def found():  # type: ignore[no-untyped-def]
        return next(
            (m for m in stack.slack.posted(CHANNEL)
             if m.thread_ts == thread and set(buttons(m)) == {"approve", "reject"}),
            None,
        )

    return wait_for(found, 30, "the approval step's buttons")


def refusals_of(stack: Stack, user: str) -> list[str]:
    return [str(e.data.get("reason")) for e in stack.refusals() if e.data.get("user") == user]


class TestApprovalStepFromSlack:
    def test_an_allowed_second_person_approves_and_the_run_goes_on(
        self, gated: tuple[Stack, SlackAppClient]
    ) -> None:
        """The step waits with its buttons in the thread; a stranger's Approve is refused;
        Bob's Approve lets the rollback patch the sandbox."""
        stack, app = gated
        thread, common = confirmed(stack, app, "sandbox")
        asking = approval_message(stack, thread)
        assert "Approval needed: Roll back maia in sandbox now?" in asking.text
        run = wait_for(stack.runs, 20, "the run")[0]
        assert run.status == "running"
        assert stack.cluster.image() == CURRENT  # nothing patched while it waits
        token = buttons(asking)["approve"]
        app.press("approve", token, user_id=MALLORY, user_name="mallory", **common)
        wait_for(lambda: refusals_of(stack, MALLORY), 10, "Mallory's refusal")
        assert "not allowed" in refusals_of(stack, MALLORY)[0]
        assert stack.runs()[0].status == "running"
        app.press("approve", token, user_id=BOB, user_name="bob", **common)
        run = stack.finished_run()
        assert run.status == "ok", run.error
        assert [s.status for s in run.steps] == ["ok", "ok"]
        stack.cluster.wait_rolled_out()
        assert stack.cluster.image() == GOOD
        decided = next(m for m in stack.slack.posted(CHANNEL) if m.ts == asking.ts)
        assert "Approved by <@U0BOB>" in decided.text
        approved = [e for e in stack.journal().events("slack") if e.status == "approved"]
        assert any(e.data.get("user") == BOB and e.data.get("kind") == "approval" for e in approved)
        in_run = [e for e in stack.journal().events(run.id) if e.kind == "approval"]
        assert [(e.step_id, e.status, e.data.get("user")) for e in in_run] == [
            ("go-ahead", "approved", BOB)
        ]

    def test_where_two_people_are_needed_the_invoker_cannot_approve_the_step(
        self, gated: tuple[Stack, SlackAppClient]
    ) -> None:
        """approvers: 2 (production): Alice's Approve of her own run's step is refused;
        Bob's goes through."""
        stack, app = gated
        thread, common = confirmed(stack, app, "production")
        asking = approval_message(stack, thread)
        assert "other than <@U0ALICE>" in str(asking.blocks)
        token = buttons(asking)["approve"]
        app.press("approve", token, user_id=ALICE, user_name="alice", **common)
        wait_for(lambda: any("cannot approve your own request" in r for r in refusals_of(stack, ALICE)),
                 10, "Alice's refusal")
        time.sleep(0.3)
        assert stack.runs()[0].status == "running"
        assert stack.cluster.image() == CURRENT
        app.press("approve", token, user_id=BOB, user_name="bob", **common)
        run = stack.finished_run()
        assert run.status == "ok", run.error
        assert run.env == "production"
        assert stack.cluster.image() == GOOD

    def test_unanswered_buttons_expire_and_the_run_stops_before_the_patch(
        self, stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Nobody presses: the approval expires (here after 1 s instead of 10 minutes), its
        message says so, the step fails, nothing is patched, and a late press is refused."""
        runbooks = tmp_path / "gated-runbooks"
        runbooks.mkdir()
        (runbooks / "rollback.yaml").write_text(RUNBOOK)
        stack.runbooks = runbooks
        monkeypatch.delenv("KUBECONFIG", raising=False)
        app, built = stack.serve_here(monkeypatch)
        assert built.commands is not None
        app.command("rollback maia sandbox", user_id=ALICE)
        confirm = stack.confirm_message()
        built.commands.approvals.expiry = 1.0  # the store's own setting; the confirm keeps 600 s
        common = {"message_ts": confirm.ts, "response_url": stack.slack.response_url("press")}
        app.press("confirm", buttons(confirm)["confirm"], user_id=ALICE, **common)
        asking = approval_message(stack, confirm.ts)
        late = buttons(asking)["approve"]
        run = stack.finished_run(timeout=30)
        assert run.status == "failed"
        assert run.steps[0].status == "failed"
        assert "approval expired in Slack" in (run.steps[0].error or "")
        assert run.steps[1].status == "pending"
        assert stack.cluster.image() == CURRENT
        expired = wait_for(
            lambda: (m := next(x for x in stack.slack.posted(CHANNEL) if x.ts == asking.ts)).updates
            and m, 10, "the expiry note",
        )
        assert "Expired" in expired.text
        app.press("approve", late, user_id=BOB, **common)
        wait_for(lambda: any("expired" in r for r in refusals_of(stack, BOB)), 10, "the late press refused")
        assert any(e.status == "expired" for e in stack.journal().events("slack"))
