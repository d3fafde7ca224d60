"""`slack.notify` with `file:` against the local Slack server: the incident document shared in
the announcement's thread, once, through the outbox too, and a failed upload kept for later."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from crystal_runbook import service
from crystal_runbook.engine import journal as journal_mod
from crystal_runbook.engine.registry import StepContext
from crystal_runbook.notify import outbox as outbox_mod
from crystal_runbook.testing.slack_server import SlackServer
from tests.unit.slack.helpers import make_workspace, outbox_files, step_outputs, write_runbook

pytestmark = pytest.mark.integration

SHARE = """
apiVersion: crystal-runbook/v1
kind: Runbook
name: share
params:
  service: {type: string, required: true}
steps:
  - id: announce
    uses: slack.notify
    with: {text: "Rollback of {{ service.name }} started"}
    timeout: 5s
  - id: document
    uses: incident.write
    with: {chart: false}
  - id: share-document
    uses: slack.notify
    with:
      reply_to: announce
      text: "Incident document for run {{ run.id }}"
      file: "{{ steps.document.outputs.markdown }}"
    timeout: 2s
"""


def use(server: SlackServer, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)


def run_share(root: Path) -> tuple[service.Workspace, str]:
    """Run `share` in a workspace under ``root``; the run must be ok."""
    write_runbook(root, "share", SHARE)
    ws = make_workspace(root)
    result = service.runs.run(ws, "share", {"service": "maia"})
    assert result.run.status == "ok", result.run.error
    assert ws.notifier.drain(), "a delivery was still going on 30 s after the run"
    return ws, result.run.id


def waiting(root: Path) -> dict[str, dict[str, object]]:
    return {k: v for k, v in outbox_files(root).items() if not k.startswith("sent/")}


def uploads(server: SlackServer) -> list[str]:
    """The upload flow's requests, in order."""
    flow = ("files.getUploadURLExternal", "upload", "files.completeUploadExternal")
    return [r.method for r in server.requests if r.method in flow]


class TestWithAToken:
    def test_the_document_lands_in_the_thread_of_the_announcement(
        self,
        tmp_path: Path,
        slack_server: SlackServer,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Posted, then getUploadURLExternal, the file's bytes, completeUploadExternal in the
        announcement's thread; the outputs and the incident document name the file."""
        caplog.set_level(logging.DEBUG, logger="slack_sdk")
        use(slack_server, monkeypatch)
        ws, run_id = run_share(tmp_path)
        outputs = step_outputs(ws, run_id, "share-document")
        document = Path(step_outputs(ws, run_id, "document")["markdown"])
        rendered = service.incidents.document(ws, run_id, write=False)
        ws.close()
        announce, share = slack_server.posted("#maia-incidents")[:2]
        assert share.text == f"Incident document for run {run_id}"
        assert share.thread_ts == announce.ts
        methods = [r.method for r in slack_server.requests]
        assert methods.index("files.getUploadURLExternal") > methods.index("chat.postMessage")
        assert uploads(slack_server) == [
            "files.getUploadURLExternal",
            "upload",
            "files.completeUploadExternal",
        ]
        (asked,) = slack_server.calls("files.getUploadURLExternal")
        assert asked.body["filename"] == document.name
        assert int(asked.body["length"]) == document.stat().st_size
        (sent,) = slack_server.calls("upload")
        assert list(sent.files.values()) == [document.read_bytes()]
        (completed,) = slack_server.calls("files.completeUploadExternal")
        assert (completed.body["channel_id"], completed.body["thread_ts"]) == (
            "C0CRYSTAL01",
            announce.ts,
        )
        stored = slack_server.files[outputs["file_id"]]
        assert stored.content == document.read_bytes()
        assert outputs == {
            "channel": "C0CRYSTAL01",
            "ts": share.ts,
            "permalink": slack_server.permalink("C0CRYSTAL01", share.ts),
            "file_id": stored.id,
            "file_permalink": f"https://crystal.slack.test/files/U0CRYSTALBOT/{stored.id}/"
            f"{document.name}",
        }
        assert waiting(tmp_path) == {}
        assert f"(file: {outputs['file_permalink']})" in rendered.markdown
        logged = "\n".join(r.getMessage() for r in caplog.records)
        assert "files.completeUploadExternal" in logged  # slack_sdk did log the calls
        assert slack_server.token not in logged

    def test_a_second_check_of_the_step_uploads_nothing(
        self, tmp_path: Path, slack_server: SlackServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The same step again finds the sent record, file included: no post, no upload."""
        use(slack_server, monkeypatch)
        ws, run_id = run_share(tmp_path)
        before = len(slack_server.requests)
        action = ws.registry.get("slack.notify")
        document = step_outputs(ws, run_id, "document")["markdown"]
        args = action.Args.model_validate(
            {
                "reply_to": "announce",
                "text": f"Incident document for run {run_id}",
                "file": document,
            }
        )
        ctx = StepContext(
            run_id=run_id,
            step_id="share-document",
            env="sandbox",
            actor="tester",
            service="maia",
            target={"slack_channel": "#maia-incidents"},
            state_dir=tmp_path / ".crystal",
        )
        again = action.check(args, ctx)
        first = step_outputs(ws, run_id, "share-document")
        ws.close()
        assert again.satisfied is True
        assert dict(again.outputs) == first
        assert slack_server.requests[before:] == []

    def test_resume_after_a_crash_before_the_journal_uploads_nothing_more(
        self, tmp_path: Path, slack_server: SlackServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Uploaded and recorded in the outbox, killed before the journal heard: resume's
        check finds the record, so the thread gets no second message and no second file."""
        use(slack_server, monkeypatch)
        ws, run_id = run_share(tmp_path)
        shared = step_outputs(ws, run_id, "share-document")
        run = ws.journal.get_run(run_id)
        step = next(s for s in run.steps if s.id == "share-document")
        step.status, step.outputs, step.ended_at = "applying", {}, None
        ws.journal.save_step(step, message="applying")
        run.status, run.ended_at = "interrupted", journal_mod.now_iso()
        ws.journal.update_run(run, event="interrupted")
        posts = len(slack_server.calls("chat.postMessage"))
        resumed = service.runs.resume(ws, run_id)
        assert ws.notifier.drain()
        resumed_outputs = step_outputs(ws, run_id, "share-document")
        ws.close()
        assert resumed.run.status == "ok"
        assert resumed_outputs == shared
        assert len(slack_server.calls("chat.postMessage")) == posts
        assert uploads(slack_server).count("upload") == 1
        assert len(slack_server.files) == 1


class TestThroughTheOutbox:
    def test_the_entry_keeps_the_path_and_flush_posts_then_uploads_in_the_thread(
        self,
        tmp_path: Path,
        slack_server: SlackServer,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Without a token the file's path is queued (not a copy); flush with a token posts
        the announcement, the reply in its thread, then the file there; a second flush: nothing."""
        ws, run_id = run_share(tmp_path)
        queued = Path(step_outputs(ws, run_id, "share-document")["outbox"])
        document = Path(step_outputs(ws, run_id, "document")["markdown"])
        ws.close()
        err = capsys.readouterr().err
        entry = json.loads(queued.read_text())
        assert entry["message"]["file"] == str(document.resolve())
        assert entry["parent_key"] is not None
        assert entry["parent_key"].startswith(f"{run_id}.announce.")
        assert f"file: {document.resolve()}" in err
        assert "not copied" in err
        assert not any(p.suffix == ".md" for p in queued.parent.rglob("*"))
        assert slack_server.requests == []

        use(slack_server, monkeypatch)
        ws = make_workspace(tmp_path)
        results = service.incidents.flush_outbox(ws)
        again = service.incidents.flush_outbox(ws)
        ws.close()
        assert [r.status for r in results] == ["sent", "sent"]
        assert again == []
        announce, share = slack_server.posted("#maia-incidents")[:2]
        assert share.thread_ts == announce.ts
        methods = [r.method for r in slack_server.requests]
        assert methods.index("files.getUploadURLExternal") > methods.index("chat.postMessage")
        (sent,) = slack_server.calls("upload")
        assert list(sent.files.values()) == [document.read_bytes()]
        (completed,) = slack_server.calls("files.completeUploadExternal")
        assert (completed.body["channel_id"], completed.body["thread_ts"]) == (
            "C0CRYSTAL01",
            announce.ts,
        )
        record = outbox_files(tmp_path)[f"sent/{queued.name}"]
        assert record["upload"]["file_id"] == next(iter(slack_server.files))
        assert record["delivery"]["thread_ts"] == announce.ts
        assert waiting(tmp_path) == {}


class TestAFailedUpload:
    def test_a_500_keeps_the_message_posted_and_the_upload_pending_then_flush_uploads(
        self,
        tmp_path: Path,
        slack_server: SlackServer,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """The upload URL answers 500 until the step's time is up: the step is ok with the
        message's outputs and an error, the entry waits as "posted" with the reason, and
        flush later uploads the file without posting the message again."""
        use(slack_server, monkeypatch)
        slack_server.fail("upload", status=500, times=None)
        ws, run_id = run_share(tmp_path)
        outputs = step_outputs(ws, run_id, "share-document")
        status = next(s.status for s in service.runs.show(ws, run_id).steps if s.id == "share-document")
        ws.close()
        err = capsys.readouterr().err
        share = slack_server.posted("#maia-incidents")[1]
        assert status == "ok"
        assert (outputs["ts"], outputs["channel"]) == (share.ts, "C0CRYSTAL01")
        assert "upload URL answered HTTP 500" in outputs["error"]
        assert "file_id" not in outputs
        assert "WARNING: Slack file NOT UPLOADED" in err
        assert "the message is posted" in err
        kept = json.loads(Path(outputs["outbox"]).read_text())
        assert kept["status"] == outbox_mod.POSTED
        assert "HTTP 500" in kept["last_error"]
        assert kept["delivery"]["ts"] == share.ts
        assert kept["upload"] is None
        assert slack_server.calls("files.completeUploadExternal") == []

        slack_server.clear_faults()
        posts = len(slack_server.calls("chat.postMessage"))
        ws = make_workspace(tmp_path)
        results = service.incidents.flush_outbox(ws)
        ws.close()
        assert [r.status for r in results] == ["sent"]
        assert len(slack_server.calls("chat.postMessage")) == posts
        (completed,) = slack_server.calls("files.completeUploadExternal")
        assert completed.body["thread_ts"] == slack_server.posted()[0].ts
        assert waiting(tmp_path) == {}

    def test_a_crash_between_post_and_record_is_found_then_the_file_uploaded(
        self, tmp_path: Path, slack_server: SlackServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An entry left "sending" (Slack took the message, the process died before the
        outbox heard): flush finds the message by its key, posts no copy, uploads the file."""
        use(slack_server, monkeypatch)
        slack_server.fail("files.getUploadURLExternal", error="missing_scope", times=None)
        ws, run_id = run_share(tmp_path)
        queued = Path(step_outputs(ws, run_id, "share-document")["outbox"])
        ws.close()
        box = outbox_mod.Outbox.of(tmp_path / ".crystal")
        posted = box.get(queued.stem)
        assert posted is not None
        assert posted.status == outbox_mod.POSTED
        assert posted.last_error is not None
        assert "lacks the scope this method needs (missing_scope)" in posted.last_error
        box.write(posted.with_(status=outbox_mod.SENDING, delivery=None))
        slack_server.clear_faults()
        posts = len(slack_server.calls("chat.postMessage"))
        ws = make_workspace(tmp_path)
        results = service.incidents.flush_outbox(ws)
        ws.close()
        assert [r.status for r in results] == ["sent"]
        assert "found on Slack" in results[0].summary
        assert len(slack_server.calls("chat.postMessage")) == posts
        (completed,) = slack_server.calls("files.completeUploadExternal")
        assert completed.body["thread_ts"] == slack_server.posted()[0].ts
