"""A rollback from Slack end to end: signed command, Confirm button, sandbox rolled back."""

from __future__ import annotations

import time

import pytest

from crystal_runbook.testing import slack_requests
from tests.integration.slackapp.conftest import (
    ALICE,
    BOB,
    CHANNEL,
    Stack,
    buttons,
    dump,
    wait_for,
)

pytestmark = pytest.mark.integration

GOOD, CURRENT = "registry.local/maia:1.4.2", "registry.local/maia:1.5.0"


def thread_of(stack: Stack, ts: str) -> list[str]:
    return [m.text for m in stack.slack.posted(CHANNEL) if m.thread_ts == ts]


class TestRollbackFromSlack:
    def test_signed_command_confirm_and_the_sandbox_rolls_back(self, stack: Stack) -> None:
        """Acknowledged in under 3 s; Confirm starts the run; the sandbox ends on revision 1's image."""
        app = stack.serve("--slack")
        assert stack.cluster.image() == CURRENT
        answer = app.command(
            "rollback maia sandbox bad release",
            user_id=ALICE,
            response_url=stack.slack.response_url("command"),
        )
        assert answer.status == 200, dump(stack)
        assert answer.seconds < 3.0
        assert answer.body["response_type"] == "ephemeral"
        assert "Planning `rollback maia sandbox bad release`" in answer.text
        confirm = stack.confirm_message()
        assert "<@U0ALICE> asks to run `rollback maia sandbox bad release`" in confirm.text
        text = str(confirm.blocks)
        assert "revision: 2 -&gt; 1" in text  # what will change, from the plan (Slack-escaped)
        assert set(buttons(confirm)) == {"confirm", "cancel"}
        assert stack.runs() == []  # nothing runs before Confirm
        pressed = app.press(
            "confirm",
            buttons(confirm)["confirm"],
            user_id=ALICE,
            user_name="alice",
            message_ts=confirm.ts,
            response_url=stack.slack.response_url("press"),
        )
        assert pressed.status == 200
        assert pressed.seconds < 3.0
        run = stack.finished_run()
        assert run.status == "ok", dump(stack)
        assert run.actor == "slack:U0ALICE (alice)"
        assert run.params["reason"] == "bad release"
        assert run.meta["slack"]["confirmed_by"] == ALICE
        stack.cluster.wait_rolled_out()
        assert stack.cluster.image() == GOOD
        assert stack.cluster.env_var("CRYSTAL_MODE") == "legacy"
        result = wait_for(
            lambda: [t for t in thread_of(stack, confirm.ts) if f"Run `{run.id}`" in t], 20,
            "the result in the thread",
        )
        assert "ok in" in result[0]
        # what Slack received, in order: the confirm message, its update, the run's
        # announcement and outcome (slack.notify), the result in the confirm's thread
        calls = [c for c in stack.slack.calls() if c.method in ("chat.postMessage", "chat.update")]
        posts = [(c.method, c.body.get("thread_ts"), str(c.body.get("text"))) for c in calls]
        assert posts[0][0] == "chat.postMessage", posts
        assert posts[0][2].startswith(":warning: <@U0ALICE> asks"), posts
        assert posts[1][0] == "chat.update", posts
        announce = next(i for i, p in enumerate(posts) if "Rollback of *maia* in *sandbox* started" in p[2])
        outcome = next(i for i, p in enumerate(posts) if "done and verified" in p[2])
        assert 1 < announce < outcome < len(posts) - 1, posts
        assert posts[-1][:2] == ("chat.postMessage", confirm.ts), posts
        assert f"Run `{run.id}`" in posts[-1][2], posts
        updated = next(m for m in stack.slack.posted(CHANNEL) if m.ts == confirm.ts)
        assert "Confirmed by <@U0ALICE>" in str(updated.updates[-1]["blocks"])
        for request in stack.slack.requests:  # the bot token never lands in a recording
            assert stack.slack.token not in str(request.body)
        assert stack.slack.token not in dump(stack)
        assert "crystal-test-signing-secret" not in dump(stack)
        assert stack.stop() == 0

    def test_production_needs_a_second_person_and_the_invoker_cannot_approve_twice(
        self, stack: Stack
    ) -> None:
        """approvers: 2: Alice's Confirm asks for an Approve; hers is refused; Bob's starts it."""
        app = stack.serve("--slack")
        answer = app.command("rollback maia production", user_id=ALICE)
        assert "Planning" in answer.text, answer.body
        confirm = stack.confirm_message()
        token = buttons(confirm)["confirm"]
        common = {"message_ts": confirm.ts, "response_url": stack.slack.response_url("press")}
        assert app.press("confirm", token, user_id=ALICE, **common).status == 200
        asking = wait_for(
            lambda: (m := next(x for x in stack.slack.posted(CHANNEL) if x.ts == confirm.ts)).updates
            and m,
            20,
            "the Approve button",
        )
        assert set(buttons(asking)) == {"approve", "cancel"}
        app.press("approve", token, user_id=ALICE, **common)
        app.press("confirm", token, user_id=ALICE, **common)
        answers = wait_for(lambda: len(stack.slack.answers("press")) >= 2 and stack.slack.answers("press"))
        texts = " | ".join(a["text"] for a in answers)  # answered by parallel workers: any order
        assert "cannot approve your own request" in texts
        assert "already confirmed" in texts
        time.sleep(0.5)
        assert stack.runs() == []  # still waiting for the second person
        assert app.press("approve", token, user_id=BOB, user_name="bob", **common).status == 200
        run = stack.finished_run()
        assert run.status == "ok", dump(stack)
        assert (run.meta["slack"]["confirmed_by"], run.meta["slack"]["approved_by"]) == (ALICE, BOB)
        assert run.env == "production"
        assert stack.cluster.image() == GOOD
        refused = [e.data.get("reason", "") for e in stack.refusals()]
        assert any("cannot approve your own request" in r for r in refused)


class TestSocketMode:
    def test_the_same_rollback_through_the_websocket(self, stack: Stack) -> None:
        """`serve --socket-mode`: the command and the Confirm arrive as envelopes; the sandbox rolls back."""
        stack.serve("--socket-mode", SLACK_SIGNING_SECRET="", SLACK_APP_TOKEN=stack.slack.app_token)
        socket = stack.slack.socket
        assert socket.connected(20), dump(stack)
        assert stack.slack.calls("apps.connections.open")[0].authorized
        payload = slack_requests.slash_command("rollback maia sandbox", user_id=ALICE)
        started = time.perf_counter()
        ack = socket.send("slash_commands", payload)
        assert time.perf_counter() - started < 3.0
        assert "Planning `rollback maia sandbox`" in ack["payload"]["text"]
        confirm = stack.confirm_message()
        press = slack_requests.block_actions(
            "confirm", buttons(confirm)["confirm"], user_id=ALICE, message_ts=confirm.ts
        )
        socket.send("interactive", press, accepts=False)
        run = stack.finished_run()
        assert run.status == "ok", dump(stack)
        assert run.actor.startswith("slack:U0ALICE")
        assert stack.cluster.image() == GOOD
        assert stack.stop() == 0
        assert stack.slack.app_token not in dump(stack)


class TestShutdown:
    def test_sigterm_interrupts_a_long_run_journals_it_and_exits_0(self, stack: Stack) -> None:
        """SIGTERM: no new commands; a run past the grace is journalled interrupted; exit 0;
        `crystal-runbook resume` then finishes it."""
        stack.sb.ready_delay = 30.0  # the rollout's verification waits long
        app = stack.serve("--slack", "--grace", "1s")
        app.command("rollback maia sandbox", user_id=ALICE)
        confirm = stack.confirm_message()
        app.press("confirm", buttons(confirm)["confirm"], user_id=ALICE, message_ts=confirm.ts)
        wait_for(
            lambda: any(s.status == "verifying" for r in stack.runs() for s in r.steps),
            30,
            "the rollout verification",
        )
        started = time.monotonic()
        assert stack.stop() == 0, dump(stack)
        assert time.monotonic() - started < 20
        (run,) = stack.runs()
        assert run.status == "interrupted", dump(stack)
        assert "interrupting" in dump(stack)

        # `resume` continues it from the journal (a replica that leads the scheduler would)
        stack.sb.ready_delay = 0.1
        resumed = stack.cluster.cli("resume", run.id, "--yes")
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        (run,) = stack.runs()
        assert run.status == "ok", dump(stack)
        assert stack.cluster.image() == GOOD


class TestDrillFromSlack:
    def test_a_drill_runs_as_the_cli_runs_it_and_restores_the_baseline(self, stack: Stack) -> None:
        """`/crystal drill maia sandbox`: plan, Confirm, then the same drill as `crystal-runbook
        drill` (journalled as a drill, triggered from Slack); the sandbox ends on its baseline."""
        app = stack.serve("--slack")
        answer = app.command("drill maia sandbox", user_id=ALICE, response_url=stack.slack.response_url("command"))
        assert answer.seconds < 3.0
        assert "Planning `drill maia sandbox`" in answer.text, answer.body
        confirm = stack.confirm_message()
        assert "<@U0ALICE> asks to run `drill maia sandbox`" in confirm.text
        assert "revision: 2 -&gt; 1" in str(confirm.blocks)  # the rollback phase (Slack-escaped)
        assert stack.runs() == []
        app.press("confirm", buttons(confirm)["confirm"], user_id=ALICE, user_name="alice",
                  message_ts=confirm.ts)
        run = stack.finished_run(timeout=90)
        assert run.status == "ok", dump(stack)
        assert run.drill
        assert run.runbook == "drill"
        assert run.actor == "slack:U0ALICE (alice)"
        assert run.meta["drill"]["trigger"] == "slack"
        assert run.meta["slack"]["confirmed_by"] == ALICE
        stack.cluster.wait_rolled_out()
        assert stack.cluster.image() == CURRENT  # rolled back, then restored
        wait_for(lambda: [t for t in thread_of(stack, confirm.ts) if f"Run `{run.id}`" in t], 20,
                 "the result in the thread")

    def test_production_drills_need_drills_yaml_even_from_slack(self, stack: Stack) -> None:
        """Allowed by access.yaml but not by drills.yaml: refused before any confirm message."""
        (stack.root / "inventory" / "access.yaml").write_text(
            "environments:\n  production:\n    allow:\n"
            f"      - {{commands: [drill], users: [{ALICE}], channels: ['*']}}\n"
        )
        app = stack.serve("--slack")
        app.command("drill maia production", user_id=ALICE, response_url=stack.slack.response_url("command"))
        answer = wait_for(lambda: stack.slack.answers("command"), 20, "the refusal")[0]
        assert "does not allow drills of maia there" in answer["text"], answer
        assert [m for m in stack.slack.posted(CHANNEL) if buttons(m)] == []
        assert stack.runs() == []
        assert any("does not allow drills" in str(e.data.get("reason")) for e in stack.refusals())
