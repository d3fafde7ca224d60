"""`slack.notify` and `outbox flush` against the local Slack server: delivery, retries,
refusals explained, fallback to the outbox, and no message posted twice."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from crystal_runbook import service
from crystal_runbook.engine.registry import StepContext
from crystal_runbook.notify import outbox as outbox_mod
from crystal_runbook.notify import slackweb
from crystal_runbook.testing.slack_server import SlackServer
from tests.unit.slack.helpers import make_workspace, outbox_files, step_outputs, write_runbook

pytestmark = pytest.mark.integration


def use(server: SlackServer, monkeypatch: pytest.MonkeyPatch, *, token: str | None = None) -> None:
    for name, value in server.env(token=token).items():
        monkeypatch.setenv(name, value)


def run(root: Path, runbook: str = "announce", **params: str) -> tuple[service.Workspace, str]:
    ws = make_workspace(root)
    result = service.runs.run(ws, runbook, {"service": "maia", **params})
    assert result.run.status == "ok", result.run.error
    assert ws.notifier.drain(), "a delivery was still going on 30 s after the run"
    return ws, result.run.id


def waiting(root: Path) -> dict[str, dict[str, object]]:
    return {k: v for k, v in outbox_files(root).items() if not k.startswith("sent/")}


class TestDelivery:
    def test_posts_then_gets_the_permalink(
        self, tmp_path: Path, slack_server: SlackServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With a token: chat.postMessage, chat.getPermalink; outputs channel, ts, permalink."""
        use(slack_server, monkeypatch)
        ws, run_id = run(tmp_path)
        outputs = step_outputs(ws, run_id, "announce")
        ws.close()
        announce = slack_server.posted("#maia-incidents")[0]
        assert outputs == {
            "channel": "C0CRYSTAL01",
            "ts": announce.ts,
            "permalink": slack_server.permalink("C0CRYSTAL01", announce.ts),
        }
        assert [r.method for r in slack_server.requests] == [
            "chat.postMessage",
            "chat.getPermalink",
            "chat.postMessage",
            "chat.getPermalink",
        ]
        assert announce.text == "Rollback of maia in sandbox started by tester: practice"
        assert announce.metadata is not None
        assert announce.metadata["event_payload"]["run_id"] == run_id
        assert waiting(tmp_path) == {}
        assert len(outbox_files(tmp_path)) == 2  # both delivered, recorded in sent/

    def test_reply_to_posts_in_the_thread_of_the_step(
        self, tmp_path: Path, slack_server: SlackServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """`reply_to: announce` answers in the announce message's thread."""
        use(slack_server, monkeypatch)
        ws, _ = run(tmp_path)
        ws.close()
        announce, summary = slack_server.posted("#maia-incidents")
        assert summary.thread_ts == announce.ts
        assert summary.text == "Rollback of maia done"

    def test_a_second_check_of_the_same_step_does_not_post_again(
        self, tmp_path: Path, slack_server: SlackServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The check finds the delivery of this run and step: apply is not needed again."""
        use(slack_server, monkeypatch)
        ws = make_workspace(tmp_path)
        action = ws.registry.get("slack.notify")
        args = action.Args.model_validate({"text": "once"})
        ctx = StepContext(
            run_id="0123456789ab",
            step_id="announce",
            env="sandbox",
            actor="tester",
            service="maia",
            target={"slack_channel": "#maia-incidents"},
            state_dir=tmp_path / ".crystal",
            deadline=time.monotonic() + 5,
        )
        outcome = action.apply(args, ctx, action.check(args, ctx))
        again = action.check(args, ctx)
        ws.close()
        assert again.satisfied is True
        assert dict(again.outputs) == dict(outcome.outputs)
        assert len(slack_server.calls("chat.postMessage")) == 1


class TestRetries:
    def test_429_waits_for_retry_after(
        self, tmp_path: Path, slack_server: SlackServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A rate limit is honoured: the retry comes after Retry-After, then it is delivered."""
        use(slack_server, monkeypatch)
        slack_server.fail("chat.postMessage", status=429, retry_after=1)
        started = time.monotonic()
        ws, run_id = run(tmp_path)
        elapsed = time.monotonic() - started
        outputs = step_outputs(ws, run_id, "announce")
        ws.close()
        first, second = slack_server.calls("chat.postMessage")[:2]
        assert (first.status, second.status) == (429, 200)
        assert elapsed >= 1.0
        assert "ts" in outputs
        assert len(slack_server.posted()) == 2  # announce and summary, each once

    def test_5xx_is_retried_and_looked_up_before_posting_again(
        self, tmp_path: Path, slack_server: SlackServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A 500 may have posted the message: the retry looks for it first, then posts once."""
        use(slack_server, monkeypatch)
        slack_server.fail("chat.postMessage", status=500, times=2)
        ws, _ = run(tmp_path)
        ws.close()
        methods = [r.method for r in slack_server.requests]
        assert methods[:4] == [
            "chat.postMessage",  # 500
            "conversations.list",  # #maia-incidents -> C0CRYSTAL01
            "conversations.history",  # not there
            "chat.postMessage",  # 500
        ]
        assert [m.text for m in slack_server.posted()] == [
            "Rollback of maia in sandbox started by tester: practice",
            "Rollback of maia done",
        ]

    def test_a_message_posted_by_a_failed_call_is_found_not_posted_again(
        self, tmp_path: Path, slack_server: SlackServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Slack took the message but answered 500: the retry finds it by its metadata key."""
        use(slack_server, monkeypatch)
        slack_server.fail("chat.postMessage", status=500, after_effect=True)
        ws, run_id = run(tmp_path)
        outputs = step_outputs(ws, run_id, "announce")
        ws.close()
        announce = slack_server.posted()[0]
        assert len(slack_server.posted()) == 2  # announce once, summary once
        assert outputs["ts"] == announce.ts
        assert len(slack_server.calls("chat.postMessage")) == 2

    def test_a_dropped_connection_is_retried(
        self, tmp_path: Path, slack_server: SlackServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A reset connection is temporary: retried, then delivered."""
        use(slack_server, monkeypatch)
        slack_server.fail("chat.postMessage", drop=True)
        ws, run_id = run(tmp_path)
        outputs = step_outputs(ws, run_id, "announce")
        ws.close()
        assert outputs["channel"] == "C0CRYSTAL01"
        assert len(slack_server.posted()) == 2


class TestFallback:
    def test_invalid_auth_is_not_retried_explained_and_queued(
        self,
        tmp_path: Path,
        slack_server: SlackServer,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """A refused token fails once, loudly, and the run goes on with the message queued."""
        bad = "xoxb-9999-revoked-token-abcdef"  # fake secret for the test
        use(slack_server, monkeypatch, token=bad)
        ws, run_id = run(tmp_path)
        outputs = step_outputs(ws, run_id, "announce")
        ws.close()
        err = capsys.readouterr().err
        assert len(slack_server.calls("chat.postMessage")) == 2  # one per step, no retry
        assert set(outputs) == {"outbox", "error"}
        assert outputs["error"] == (
            "posting to #maia-incidents: Slack refused the bot token (invalid_auth)"
        )
        assert "WARNING: Slack notification NOT DELIVERED" in err
        assert "SLACK_BOT_TOKEN is not a valid bot token" in err
        kept = json.loads(Path(outputs["outbox"]).read_text())
        assert kept["status"] == "pending"
        assert "invalid_auth" in kept["last_error"]
        journal = (tmp_path / ".crystal" / "journal.db").read_bytes()
        for where in (err, json.dumps(outbox_files(tmp_path))):
            assert bad not in where
        assert bad.encode() not in journal

    def test_channel_not_found_names_the_channel_and_the_fix(
        self,
        tmp_path: Path,
        slack_server: SlackServer,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """An unknown channel says which one and where it is configured; not retried."""
        use(slack_server, monkeypatch)
        write_runbook(
            tmp_path,
            "lost",
            """
            apiVersion: crystal-runbook/v1
            kind: Runbook
            name: lost
            params:
              service: {type: string, required: true}
            steps:
              - {id: announce, uses: slack.notify, with: {text: hello, channel: "#nowhere"}}
            """,
        )
        ws, run_id = run(tmp_path, "lost")
        outputs = step_outputs(ws, run_id, "announce")
        ws.close()
        err = capsys.readouterr().err
        assert (
            "Slack has no channel '#nowhere' that the bot can see (channel_not_found)"
            in (outputs["error"])
        )
        assert "slack_channel" in err
        assert "/invite" in err
        assert len(slack_server.calls("chat.postMessage")) == 1

    def test_slack_down_falls_back_within_the_step_timeout(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Nothing listening: retried until the step's timeout, then queued; the run is ok."""
        with SlackServer() as gone:
            use(gone, monkeypatch)
        write_runbook(
            tmp_path,
            "down",
            """
            apiVersion: crystal-runbook/v1
            kind: Runbook
            name: down
            params:
              service: {type: string, required: true}
            steps:
              - {id: announce, uses: slack.notify, with: {text: hello}, timeout: 2s}
              - {id: after, uses: fake.set, with: {key: a, value: "1"}}
            """,
        )
        started = time.monotonic()
        ws, run_id = run(tmp_path, "down")
        elapsed = time.monotonic() - started
        outputs = step_outputs(ws, run_id, "announce")
        events = [e.message for e in ws.journal.events(run_id) if e.kind == "progress"]
        ws.close()
        assert 0.5 < elapsed < 3.5
        assert "cannot reach the Slack Web API" in outputs["error"]
        assert any("retrying in" in m for m in events)
        assert Path(outputs["outbox"]).exists()

    def test_a_slack_that_refuses_connections_is_given_up_quickly(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Nothing listening and a 20 s step: a few quick tries (REFUSED_SECONDS), then queued."""
        with SlackServer() as gone:
            use(gone, monkeypatch)
        write_runbook(
            tmp_path,
            "refused",
            """
            apiVersion: crystal-runbook/v1
            kind: Runbook
            name: refused
            params:
              service: {type: string, required: true}
            steps:
              - {id: announce, uses: slack.notify, with: {text: hello}, timeout: 20s}
              - {id: after, uses: fake.set, with: {key: a, value: "1"}}
            """,
        )
        started = time.monotonic()
        ws, run_id = run(tmp_path, "refused")
        outputs = step_outputs(ws, run_id, "announce")
        ws.close()  # waits for deliveries still going on, as the end of a command does
        elapsed = time.monotonic() - started
        assert elapsed < slackweb.REFUSED_SECONDS + 2.5, elapsed  # was about 8 s
        assert outputs.get("error") or outputs.get("pending"), outputs
        assert Path(outputs["outbox"]).exists()

    def test_a_retry_after_longer_than_the_step_is_not_waited_out(
        self, tmp_path: Path, slack_server: SlackServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A 30 s Retry-After in a 2 s step: queued at once rather than holding the rollback."""
        use(slack_server, monkeypatch)
        slack_server.fail("chat.postMessage", status=429, retry_after=30, times=None)
        write_runbook(
            tmp_path,
            "limited",
            """
            apiVersion: crystal-runbook/v1
            kind: Runbook
            name: limited
            params:
              service: {type: string, required: true}
            steps:
              - {id: announce, uses: slack.notify, with: {text: hello}, timeout: 2s}
            """,
        )
        started = time.monotonic()
        ws, run_id = run(tmp_path, "limited")
        outputs = step_outputs(ws, run_id, "announce")
        ws.close()
        assert time.monotonic() - started < 1.5
        assert "Retry-After 30 s" in outputs["error"]
        assert len(slack_server.calls("chat.postMessage")) == 1


class TestFlush:
    def test_flush_delivers_in_order_keeps_threads_and_is_idempotent(
        self, tmp_path: Path, slack_server: SlackServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Queued without a token, delivered by flush, moved to sent/; a second flush: nothing."""
        ws, _ = run(tmp_path)
        ws.close()
        assert len(waiting(tmp_path)) == 2
        use(slack_server, monkeypatch)
        ws = make_workspace(tmp_path)
        results = service.incidents.flush_outbox(ws)
        again = service.incidents.flush_outbox(ws)
        ws.close()
        assert [r.status for r in results] == ["sent", "sent"]
        assert again == []
        announce, summary = slack_server.posted("#maia-incidents")
        assert summary.thread_ts == announce.ts
        assert waiting(tmp_path) == {}
        sent = [v for k, v in outbox_files(tmp_path).items() if k.startswith("sent/")]
        assert sorted(s["delivery"]["ts"] for s in sent) == sorted([announce.ts, summary.ts])

    def test_a_reply_waits_for_its_undelivered_parent(
        self, tmp_path: Path, slack_server: SlackServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """If the first message cannot be delivered, its reply is not posted out of its thread."""
        ws, _ = run(tmp_path)
        ws.close()
        use(slack_server, monkeypatch)
        slack_server.fail("chat.postMessage", error="channel_not_found")
        ws = make_workspace(tmp_path)
        results = service.incidents.flush_outbox(ws)
        later = service.incidents.flush_outbox(ws)
        ws.close()
        assert [r.status for r in results] == ["failed", "skipped"]
        assert "waits for" in results[1].summary
        assert [r.status for r in later] == ["sent", "sent"]
        announce, summary = slack_server.posted()
        assert summary.thread_ts == announce.ts

    def test_a_reply_posted_before_its_parent_was_known_is_not_posted_again(
        self, tmp_path: Path, slack_server: SlackServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Slack posts both messages but never answers: the reply went to the channel (its
        parent's ts was unknown); flush finds it there instead of posting it again in the
        thread (found by the chaos suite: every notice exactly once)."""
        use(slack_server, monkeypatch)
        slack_server.slow("chat.postMessage", 3.0, times=None)
        write_runbook(
            tmp_path,
            "unanswered",
            """
            apiVersion: crystal-runbook/v1
            kind: Runbook
            name: unanswered
            params:
              service: {type: string, required: true}
            steps:
              - {id: announce, uses: slack.notify, with: {text: started}, timeout: 2s}
              - {id: done, uses: slack.notify, with: {text: finished, reply_to: announce}, timeout: 2s}
            """,
        )
        ws, _ = run(tmp_path, "unanswered")
        ws.close()
        assert [m.text for m in slack_server.posted()] == ["started", "finished"]
        slack_server.clear_faults()
        ws = make_workspace(tmp_path)
        results = service.incidents.flush_outbox(ws)
        ws.close()
        assert [r.status for r in results] == ["sent", "sent"], [r.summary for r in results]
        assert [m.text for m in slack_server.posted()] == ["started", "finished"]
        assert waiting(tmp_path) == {}

    def test_a_crash_after_posting_is_found_by_flush(
        self, tmp_path: Path, slack_server: SlackServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An entry left "sending" (posted, then the process died) is looked up, not reposted."""
        use(slack_server, monkeypatch)
        ws, _ = run(tmp_path)
        ws.close()
        box = outbox_mod.Outbox.of(tmp_path / ".crystal")
        delivered, _ = box.delivered()
        for entry in delivered:  # make it look as if the process died before recording it
            box.write(entry.with_(status=outbox_mod.SENDING, delivery=None))
            (box.sent_dir / f"{entry.key}.json").unlink()
        ws = make_workspace(tmp_path)
        results = service.incidents.flush_outbox(ws)
        ws.close()
        assert [r.status for r in results] == ["sent", "sent"]
        assert all("found on Slack" in r.summary for r in results)
        assert len(slack_server.calls("chat.postMessage")) == 2  # the original two only
