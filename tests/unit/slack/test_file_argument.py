"""`slack.notify`'s `file:`: its arguments, the check-time refusal of a file that cannot be
shared, and how the outbox keeps a file's path and its upload (no token, no server)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from crystal_runbook import errors, service
from crystal_runbook.actions import slack as slack_action
from crystal_runbook.engine.registry import StepContext
from crystal_runbook.notify import outbox as outbox_mod
from tests.unit.slack.helpers import (
    clear_slack_env,
    make_workspace,
    outbox_files,
    step_outputs,
    write_runbook,
)


@pytest.fixture(autouse=True)
def _no_slack(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_slack_env(monkeypatch)


def context(root: Path, run_id: str = "0123456789ab", step_id: str = "share") -> StepContext:
    return StepContext(
        run_id=run_id,
        step_id=step_id,
        env="sandbox",
        actor="tester",
        service="maia",
        target={"slack_channel": "#maia-incidents"},
        state_dir=root / ".crystal",
    )


class TestArguments:
    @pytest.mark.parametrize(
        ("given", "message"),
        [
            ({"text": "x", "file": ""}, "at least 1 character"),
            ({"text": "x", "file": "d/" * 500 + "x"}, "at most 1000 characters"),
            ({"text": "x", "file_title": "Incident"}, "file_title needs file"),
            ({"text": "x", "file": "a.md", "file_title": "t" * 251}, "at most 250 characters"),
            ({"text": "x", "file": "a\0.md"}, "cannot contain a NUL"),
            ({"text": "x", "file": ["a.md", "b.md"]}, "should be a valid string"),
        ],
    )
    def test_bad_file_arguments_are_refused_before_anything_runs(
        self, given: dict[str, object], message: str
    ) -> None:
        """`file:` is a path of at most 1000 characters; `file_title:` only names a file."""
        with pytest.raises(ValueError, match=message):
            slack_action.NotifyArgs.model_validate(given)

    def test_a_file_and_its_title_are_accepted(self) -> None:
        """The longest allowed path and a title pass; without them there is no file."""
        path = "d/" * 499 + "ab"
        args = slack_action.NotifyArgs.model_validate(
            {"text": "x", "file": path, "file_title": "Incident document"}
        )
        assert (len(path), args.file, args.file_title) == (1000, path, "Incident document")
        assert slack_action.NotifyArgs.model_validate({"text": "x"}).file is None

    def test_the_outputs_name_the_shared_file(self) -> None:
        """Later steps may use the file's id and permalink (validate checks output names)."""
        assert {"file_id", "file_permalink"} <= set(slack_action.Notify.outputs)


class TestCheckTime:
    def _check(self, root: Path, file: str) -> errors.PermanentActionError:
        ws = make_workspace(root)
        action = ws.registry.get("slack.notify")
        args = action.Args.model_validate({"text": "the document", "file": file})
        try:
            with pytest.raises(errors.PermanentActionError) as caught:
                action.check(args, context(root))
        finally:
            ws.close()
        assert outbox_files(root) == {}  # nothing queued, nothing printed as sent
        return caught.value

    def test_a_missing_file_says_which_path_and_what_to_give(self, tmp_path: Path) -> None:
        """A path that does not exist is named, with the step, and the hint says what fits."""
        missing = tmp_path / "incidents" / "nope.md"
        error = self._check(tmp_path, str(missing))
        assert error.message == f"`file: {missing}`: no such file"
        assert error.hint is not None
        assert "steps.document.outputs.markdown" in error.hint

    def test_a_relative_path_says_where_it_was_looked_for(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A relative path is relative to the working directory, and the error says which."""
        monkeypatch.chdir(tmp_path)
        error = self._check(tmp_path, "incident.md")
        assert f"relative to the working directory, {tmp_path}" in error.message

    def test_a_directory_is_not_a_file(self, tmp_path: Path) -> None:
        """A directory cannot be uploaded."""
        (tmp_path / "incidents").mkdir()
        error = self._check(tmp_path, str(tmp_path / "incidents"))
        assert "not a regular file" in error.message

    def test_an_empty_file_is_refused(self, tmp_path: Path) -> None:
        """Slack refuses empty uploads: say so now, not after the message is posted."""
        (tmp_path / "empty.md").touch()
        error = self._check(tmp_path, str(tmp_path / "empty.md"))
        assert "the file is empty" in error.message

    def test_a_file_over_5_mb_is_refused_with_what_to_do(self, tmp_path: Path) -> None:
        """One byte over the limit is refused with its size; exactly the limit is fine."""
        big = tmp_path / "big.log"
        with big.open("wb") as handle:
            handle.truncate(slack_action.MAX_FILE_BYTES + 1)
        error = self._check(tmp_path, str(big))
        assert "the file is 5.0 MB, more than the 5 MB slack.notify uploads" in error.message
        assert error.hint is not None
        assert "link it in `text:`" in error.hint
        with big.open("wb") as handle:
            handle.truncate(slack_action.MAX_FILE_BYTES)
        ws = make_workspace(tmp_path)
        action = ws.registry.get("slack.notify")
        args = action.Args.model_validate({"text": "the log", "file": str(big)})
        fits = action.check(args, context(tmp_path))
        ws.close()
        assert fits.satisfied is False
        assert f"then upload {big}" in fits.summary

    def test_a_run_with_a_missing_file_fails_that_step_clearly(self, tmp_path: Path) -> None:
        """In a run the bad path refuses the step with the message before anything is sent
        (no traceback, no "unexpected" error), and nothing is queued for it."""
        write_runbook(
            tmp_path,
            "share",
            """
            apiVersion: crystal-runbook/v1
            kind: Runbook
            name: share
            params:
              service: {type: string, required: true}
            steps:
              - id: share
                uses: slack.notify
                with: {text: "the document", file: "{{ env }}/missing.md"}
            """,
        )
        ws = make_workspace(tmp_path)
        result = service.runs.run(ws, "share", {"service": "maia"})
        ws.close()
        assert result.run.status == "refused"  # found by the preflight, before any side effect
        (step,) = result.run.steps
        assert step.error is not None
        assert step.error.startswith(
            "step 'share' (slack.notify) refused: `file: sandbox/missing.md`: no such file"
        )
        assert "unexpected" not in step.error
        assert outbox_files(tmp_path) == {}

    def test_once_queued_the_file_is_not_needed_again_by_the_check(self, tmp_path: Path) -> None:
        """A repeat of a step that already queued its message and file is satisfied even if
        the file has gone since (it is `flush`'s business then)."""
        doc = tmp_path / "incident.md"
        doc.write_text("# maia\n")
        ws = make_workspace(tmp_path)
        action = ws.registry.get("slack.notify")
        args = action.Args.model_validate({"text": "the document", "file": str(doc)})
        ctx = context(tmp_path)
        action.apply(args, ctx, action.check(args, ctx))
        doc.unlink()
        again = action.check(args, ctx)
        ws.close()
        assert again.satisfied is True
        assert len(outbox_files(tmp_path)) == 1


class TestOutbox:
    def test_the_entry_keeps_the_absolute_path_and_the_console_says_it_is_not_copied(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A relative `file:` is stored absolute (flush may run elsewhere); no copy is made."""
        monkeypatch.chdir(tmp_path)
        (tmp_path / "incident.md").write_text("# maia\n")
        write_runbook(
            tmp_path,
            "share",
            """
            apiVersion: crystal-runbook/v1
            kind: Runbook
            name: share
            params:
              service: {type: string, required: true}
            steps:
              - id: share
                uses: slack.notify
                with: {text: "the document", file: incident.md, file_title: "Incident"}
            """,
        )
        ws = make_workspace(tmp_path)
        result = service.runs.run(ws, "share", {"service": "maia"})
        outputs = step_outputs(ws, result.run.id, "share")
        ws.close()
        err = capsys.readouterr().err
        assert result.run.status == "ok"
        assert set(outputs) == {"outbox"}
        message = json.loads(Path(outputs["outbox"]).read_text())["message"]
        assert (message["file"], message["file_title"]) == (
            str(tmp_path / "incident.md"),
            "Incident",
        )
        assert f"  file: {tmp_path / 'incident.md'}" in err
        assert "not copied" in err
        kept = [p for p in (tmp_path / ".crystal" / "outbox").rglob("*") if p.is_file()]
        assert kept == [Path(outputs["outbox"])]  # the entry only: no copy of the file

    def test_a_file_makes_another_key_and_no_file_keeps_the_old_one(self) -> None:
        """Keys of messages without a file are what they were before files existed, so
        entries already on disk are still found; another file is another notification."""
        origin = outbox_mod.Origin("3fa2c1d09b7e", "announce")
        plain = outbox_mod.Message("#maia-incidents", "Rollback of maia started")
        body = json.dumps(
            ["#maia-incidents", "Rollback of maia started", None, None, None],
            sort_keys=True,
            separators=(",", ":"),
        )
        old = f"3fa2c1d09b7e.announce.{hashlib.sha256(body.encode()).hexdigest()[:12]}"
        with_file = outbox_mod.Message(plain.channel, plain.text, file="/s/a.md")
        other_file = outbox_mod.Message(plain.channel, plain.text, file="/s/b.md")
        keys = {outbox_mod.make_key(origin, m) for m in (plain, with_file, other_file)}
        assert outbox_mod.make_key(origin, plain) == old
        assert len(keys) == 3

    def test_a_posted_entry_waits_and_its_upload_is_recorded_when_sent(
        self, tmp_path: Path
    ) -> None:
        """Message on Slack, file not yet: "posted", still waiting; then sent with both."""
        box = outbox_mod.Outbox.of(tmp_path)
        message = outbox_mod.Message("#maia-incidents", "the document", file="/s/a.md")
        origin = outbox_mod.Origin("3fa2c1d09b7e", "share")
        waiting = outbox_mod.Entry(
            key=outbox_mod.make_key(origin, message),
            message=message,
            origin=origin,
            created_at=outbox_mod.now(),
        )
        delivery = outbox_mod.Delivery("C0CRYSTAL01", "1.000002", "https://x/p2", "t", "1.000001")
        posted = box.mark_posted(waiting, delivery)
        assert box.path(posted) == tmp_path / "outbox" / f"{waiting.key}.json"
        assert [e.status for e in box.waiting()[0]] == [outbox_mod.POSTED]
        assert box.get(waiting.key) == posted
        share = outbox_mod.FileShare("F1", "https://x/files/F1/a.md", "t")
        sent = box.mark_sent(posted, delivery, upload=share)
        assert box.waiting() == ([], [])
        assert box.get(waiting.key) == sent
        assert sent.outputs() == {
            "channel": "C0CRYSTAL01",
            "ts": "1.000002",
            "permalink": "https://x/p2",
            "file_id": "F1",
            "file_permalink": "https://x/files/F1/a.md",
        }

    def test_an_entry_written_before_files_existed_still_reads(self, tmp_path: Path) -> None:
        """Old outbox files (no file, upload or thread fields) load with the defaults."""
        box = outbox_mod.Outbox.of(tmp_path)
        old = {
            "version": 1,
            "key": "3fa2c1d09b7e.announce.000000000000",
            "status": "sent",
            "created_at": "2026-01-16T03:00:00.000Z",
            "origin": {"run_id": "3fa2c1d09b7e", "step_id": "announce"},
            "message": {"channel": "#m", "text": "t", "blocks": None, "thread_ts": None},
            "delivery": {"channel": "C1", "ts": "1.000001", "permalink": None, "at": "t"},
        }
        box.sent_dir.mkdir(parents=True)
        (box.sent_dir / f"{old['key']}.json").write_text(json.dumps(old))
        found = box.get(str(old["key"]))
        assert found is not None
        assert (found.message.file, found.upload, found.upload_attempts) == (None, None, 0)
        assert found.delivery is not None
        assert found.delivery.thread_ts is None
