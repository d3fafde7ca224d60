"""The live progress message: one Slack message per run, updated in place as the run goes
(issue 11 item 3), over real HTTP to the local Slack server, with the sandbox."""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from crystal_runbook.engine import journal
from crystal_runbook.notify import outbox as outbox_mod
from crystal_runbook.testing.slack_server import Message
from tests.conftest import REPO
from tests.integration.slackapp.conftest import (
    ALICE,
    BIN,
    CHANNEL,
    Stack,
    buttons,
    dump,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

GOOD = "registry.local/maia:1.4.2"
ROUNDS = 3
"""Rounds of the speed comparison (Slack up and Slack down at the same time)."""
ROLLBACK_STEPS = ("announce", "undo", "legacy-mode", "healthy", "users-notified", "document")


def cli(stack: Stack, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "crystal-runbook"), "--runbooks", str(REPO / "runbooks"), *args],
        cwd=stack.root,
        env=stack.env(**env),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def start_rollback(stack: Stack, **env: str) -> subprocess.Popen[str]:
    """`crystal-runbook rollback maia -o json`, started (``communicate`` to wait)."""
    return subprocess.Popen(
        [str(BIN / "crystal-runbook"), "--runbooks", str(REPO / "runbooks"),
         "rollback", "maia", "-o", "json"],
        cwd=stack.root,
        env=stack.env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def rollback(stack: Stack, **env: str) -> dict[str, Any]:
    done = cli(stack, "rollback", "maia", "-o", "json", **env)
    assert done.returncode == 0, done.stdout + done.stderr
    run: dict[str, Any] = json.loads(done.stdout)
    return run


def finished(text: str) -> int:
    """How many steps a rendered state shows as done (ok or skipped)."""
    return text.count(":white_check_mark: `") + text.count(":fast_forward: `")


def live_message(stack: Stack) -> Message:
    """The run's announcement: the top-level message that was updated in place."""
    found = [m for m in stack.slack.posted(CHANNEL) if m.thread_ts is None and "Rollback of" in m.text]
    assert len(found) == 1, [m.text for m in stack.slack.posted(CHANNEL)]
    return found[0]


def states(message: Message) -> list[str]:
    """The blocks of each update of ``message``, oldest first, as text."""
    return [str(u["blocks"]) for u in message.updates]


class TestFromSlack:
    def test_confirm_then_one_message_updated_in_place_then_its_thread(self, stack: Stack) -> None:
        """A Slack rollback: the confirm message, the run's announcement updated in place at
        most once a second up to its final state, the replies in its thread, then the result
        in the confirm's thread."""
        app = stack.serve("--slack")
        app.command("rollback maia sandbox", user_id=ALICE)
        confirm = stack.confirm_message()
        app.press("confirm", buttons(confirm)["confirm"], user_id=ALICE, user_name="alice",
                  message_ts=confirm.ts)
        run = stack.finished_run()
        assert run.status == "ok", dump(stack)
        result = wait_for(
            lambda: [m for m in stack.slack.posted(CHANNEL)
                     if m.thread_ts == confirm.ts and f"Run `{run.id}`" in m.text],
            20, "the result in the confirm's thread",
        )[0]
        live = live_message(stack)
        top = [m for m in stack.slack.posted(CHANNEL) if m.thread_ts is None]
        assert [m.ts for m in top] == [confirm.ts, live.ts]  # one message per run besides the ask
        updates = live.updates
        assert len(updates) >= 2, states(live)
        final = str(updates[-1]["blocks"])
        assert "*Done* in" in updates[-1]["text"]
        for step in ROLLBACK_STEPS:
            assert f":white_check_mark: `{step}`" in final, final
        assert updates[-1]["text"].startswith(":rewind: Rollback of *maia* in *sandbox* started by slack:U0ALICE")
        progress = [finished(s) for s in states(live)]
        assert progress == sorted(progress), progress  # in order
        assert len(set(states(live))) == len(updates)  # none twice
        gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(updates)]
        assert min(gaps) > 0.9, gaps  # at most one a second (the server's clock of receipt)
        thread = [m for m in stack.slack.posted(CHANNEL) if m.thread_ts == live.ts]
        assert [m.text.split(" ")[0] for m in thread[:2]] == [":white_check_mark:", "Incident"]
        assert thread[-1].files  # the incident document, shared in its thread as before
        calls = [
            (c.method, c.body.get("ts") or c.body.get("thread_ts"))
            for c in stack.slack.calls()
            if c.method in ("chat.postMessage", "chat.update") and c.status == 200
        ]
        first_update = calls.index(("chat.update", live.ts))
        first_reply = calls.index(("chat.postMessage", live.ts))
        assert calls.index(("chat.postMessage", None)) < first_update < first_reply, calls
        last_update = max(i for i, c in enumerate(calls) if c == ("chat.update", live.ts))
        result_at = next(i for i, c in enumerate(calls) if c == ("chat.postMessage", confirm.ts))
        assert last_update < result_at, calls  # the final state, then the result
        assert result.text.startswith(":white_check_mark: Run")
        assert stack.stop() == 0


class TestSlackFailing:
    def test_429_then_200_every_update_is_delivered_once_in_order(self, stack: Stack) -> None:
        """The first chat.update is rate-limited (Retry-After 1 s): it is sent again after
        the wait, with the latest state; no state lands twice, none out of order."""
        stack.slack.fail("chat.update", status=429, retry_after=1, times=1)
        run = rollback(stack)
        assert run["status"] == "ok"
        attempts = stack.slack.calls("chat.update")
        assert [c.status for c in attempts][:2] == [429, 200], [c.status for c in attempts]
        live = live_message(stack)
        landed = [str(c.body.get("blocks")) for c in attempts if c.status == 200]
        assert len(landed) == len(set(landed)) == len(live.updates)
        progress = [finished(str(u["blocks"])) for u in live.updates]
        assert progress == sorted(progress), progress
        assert "*Done* in" in live.updates[-1]["text"]
        waiting, _ = outbox_mod.Outbox.of(stack.root / ".crystal").waiting()
        assert waiting == []  # the parked state was superseded by what landed

    def test_slack_down_for_the_whole_run_same_speed_then_flush_delivers(
        self, tmp_path: Path
    ) -> None:
        """Slack refusing connections for the whole run: the PATCH and the verified recovery
        come as fast as with Slack up; the outbox holds the run's latest (final) state as one
        entry; `outbox flush` posts the announcement, then updates it to that state."""
        timings: dict[str, list[dict[str, float]]] = {"up": [], "down": []}
        kept: Stack | None = None
        try:
            for round_ in range(ROUNDS):
                # each round runs both at the same time, on two stacks: whatever else loads
                # the shared machine then slows both alike
                stacks = {mode: Stack(tmp_path / f"{mode}{round_}") for mode in ("up", "down")}
                try:
                    started = {
                        "up": start_rollback(stacks["up"]),
                        "down": start_rollback(stacks["down"], SLACK_API_URL="http://127.0.0.1:9/api/"),
                    }
                    for mode, proc in started.items():
                        out, err = proc.communicate(timeout=180)
                        assert proc.returncode == 0, out + err
                        run = json.loads(out)
                        assert run["status"] == "ok"
                        timings[mode].append(recovery(stacks[mode], run))
                finally:
                    for mode, stack in stacks.items():
                        if mode == "down" and round_ == ROUNDS - 1:
                            kept = stack
                        else:
                            stack.close()
            # the fastest of the rounds: the machine's noise only ever adds time
            up = {k: min(t[k] for t in timings["up"]) for k in timings["up"][0]}
            down = {k: min(t[k] for t in timings["down"]) for k in timings["down"][0]}
            # the announcement waits for Slack at most its inline budget (0.8 s, issue 17),
            # then everything runs as with Slack up; 1.5 s more for a shared 2-core machine
            tolerance = 0.8 + 1.5
            print(  # the figure for the note (pytest -s or -rP shows it)
                f"\nrollback, fastest of {ROUNDS} rounds of both at once (load average "
                f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}): "
                + "; ".join(
                    f"{k}: Slack up {up[k]:.2f} s, Slack down {down[k]:.2f} s" for k in up
                )
            )
            assert down["patch"] <= up["patch"] + tolerance, timings
            assert down["recovered"] <= up["recovered"] + tolerance, timings
            assert kept is not None
            stack = kept
            box = outbox_mod.Outbox.of(stack.root / ".crystal")
            waiting, _ = box.waiting()
            parked = [e for e in waiting if e.message.update]
            assert len(parked) == 1  # every undelivered state collapsed into the latest
            state = parked[0]
            assert state.key.endswith("._live-update.latest")
            assert "*Done* in" in state.message.text
            for step in ROLLBACK_STEPS:
                assert f":white_check_mark: `{step}`" in str(state.message.blocks)
            order = [e.origin.step_id for e in waiting]
            assert order[:2] == ["announce", "_live-update"], order  # behind what it updates
            assert stack.slack.calls() == []
            flushed = cli(stack, "outbox", "flush")
            assert flushed.returncode == 0, flushed.stdout + flushed.stderr
            live = live_message(stack)
            assert len(live.updates) == 1
            assert live.updates[0]["blocks"] == state.message.blocks
            assert box.waiting() == ([], [])
            again = cli(stack, "outbox", "flush")
            assert "nothing to deliver" in again.stderr
            assert len(live_message(stack).updates) == 1
        finally:
            if kept is not None:
                kept.close()


def recovery(stack: Stack, run: dict[str, Any]) -> dict[str, float]:
    """Seconds from the run's start to its PATCH, and to its verified recovery (healthy)."""
    started = journal.parse_iso(run["started_at"])
    patched = next(
        journal.parse_iso(r["time"])
        for r in stack.sb.requests()
        if r["method"] == "PATCH" and r["path"].endswith("/deployments/maia")
    )
    healthy = next(s for s in run["steps"] if s["id"] == "healthy")
    return {
        "patch": (patched - started).total_seconds(),
        "recovered": (journal.parse_iso(healthy["ended_at"]) - started).total_seconds(),
        "run": (journal.parse_iso(run["ended_at"]) - started).total_seconds(),
    }


class TestAMessageOfOurOwn:
    def test_a_runbook_without_an_announcement_gets_one_message_and_its_result(
        self, stack: Stack
    ) -> None:
        """`scale` (no announcement in scale.yaml) with a token: crystal-runbook posts one
        message in the service's channel, keeps it updated, and says the result in its thread."""
        done = cli(stack, "scale", "maia", "--replicas", "4", "-o", "json")
        assert done.returncode == 0, done.stdout + done.stderr
        run = json.loads(done.stdout)
        top = [m for m in stack.slack.posted(CHANNEL) if m.thread_ts is None]
        assert len(top) == 1, [m.text for m in top]
        own = top[0]
        assert own.text.startswith(":arrow_forward: `scale` of *maia* in *sandbox* started by")
        assert own.metadata
        assert own.metadata["event_payload"]["step_id"] == "_live"
        assert "*Done* in" in own.updates[-1]["text"]
        assert ":white_check_mark: `scale`" in str(own.updates[-1]["blocks"])
        replies = [m.text for m in stack.slack.posted(CHANNEL) if m.thread_ts == own.ts]
        assert len(replies) == 1
        assert replies[0].startswith(":white_check_mark: *Done* in")
        assert run["id"] in replies[0]


FAILING_SCALE = """\
apiVersion: crystal-runbook/v1
kind: Runbook
name: scale
description: A scale whose health check cannot pass (its URL answers 503).
params:
  service:  {type: string, required: true}
  replicas: {type: integer, required: true, minimum: 0}
environments: [sandbox]
lock: "{{ service.name }}/{{ env }}"
steps:
  - id: scale
    uses: k8s.scale
    with: {replicas: "{{ params.replicas }}"}
    timeout: 2m
  - id: healthy
    uses: http.health
    with: {url: "%s", expect_status: [299]}
    timeout: 2s
"""


class TestAFailedRunFromSlack:
    def test_the_failed_step_and_the_result_go_into_the_thread(
        self, stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """`/crystal scale` whose health check fails: the run's own message ends FAILED, its
        thread says which step failed and then the result, and the confirm's thread says
        the run failed."""
        runbooks = tmp_path / "failing-runbooks"
        runbooks.mkdir()
        (runbooks / "scale.yaml").write_text(FAILING_SCALE % stack.sb.health_url())
        stack.runbooks = runbooks
        monkeypatch.delenv("KUBECONFIG", raising=False)
        app, _built = stack.serve_here(monkeypatch)
        app.command("scale maia 2 sandbox", user_id=ALICE)
        confirm = stack.confirm_message()
        app.press("confirm", buttons(confirm)["confirm"], user_id=ALICE, user_name="alice",
                  message_ts=confirm.ts)
        run = stack.finished_run()
        assert run.status == "failed", run
        own = wait_for(
            lambda: next((m for m in stack.slack.posted(CHANNEL) if m.thread_ts is None
                          and m.ts != confirm.ts and m.updates
                          and "*FAILED*" in str(m.updates[-1]["blocks"])), None),
            30, "the run's message in its final state",
        )
        assert own.text.startswith(":arrow_forward: `scale` of *maia* in *sandbox* started by slack:U0ALICE")
        assert ":x: `healthy`" in str(own.updates[-1]["blocks"])
        replies = wait_for(
            lambda: (r := [m.text for m in stack.slack.posted(CHANNEL) if m.thread_ts == own.ts])
            and len(r) >= 2 and r,
            30, "the failure and the result in the thread",
        )
        assert len(replies) == 2, replies
        assert replies[0].startswith(":x: Step `healthy` failed"), replies
        assert "*FAILED*" in replies[1], replies
        assert run.id in replies[1], replies
        result = wait_for(
            lambda: [m.text for m in stack.slack.posted(CHANNEL)
                     if m.thread_ts == confirm.ts and f"Run `{run.id}`" in m.text],
            20, "the result in the confirm's thread",
        )
        assert result[0].startswith(":x:"), result
