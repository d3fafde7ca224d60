"""`slack.notify` on the embedded default (no SLACK_BOT_TOKEN): console, outbox, once per step."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crystal_runbook import errors, service
from crystal_runbook.actions import slack as slack_action
from crystal_runbook.engine.registry import StepContext
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


class TestEmbeddedDefault:
    def test_message_goes_to_stderr_and_one_outbox_file(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Without a token the run is ok, the message is printed and queued, outputs name it."""
        ws = make_workspace(tmp_path)
        result = service.runs.run(ws, "announce", {"service": "maia"})
        ws.close()
        assert result.run.status == "ok"
        err = capsys.readouterr().err
        assert "SLACK_BOT_TOKEN is not set" in err
        assert "| Rollback of maia in sandbox started by tester: practice" in err
        files = outbox_files(tmp_path)
        assert len(files) == 2
        outputs = step_outputs(make_workspace(tmp_path), result.run.id, "announce")
        assert set(outputs) == {"outbox"}
        queued = json.loads(Path(outputs["outbox"]).read_text())
        assert queued["status"] == "pending"
        assert queued["message"]["channel"] == "#maia-incidents"
        assert queued["origin"] == {
            "run_id": result.run.id,
            "step_id": "announce",
            "env": "sandbox",
            "service": "maia",
            "actor": "tester",
        }

    def test_json_logs_get_one_json_line_per_message(
        self,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """With CRYSTAL_LOG_FORMAT=json stderr stays a stream of JSON lines."""
        monkeypatch.setenv("CRYSTAL_LOG_FORMAT", "json")
        ws = make_workspace(tmp_path)
        service.runs.run(ws, "announce", {"service": "maia"})
        ws.close()
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
        notices = [line for line in lines if line["kind"] == "notification"]
        assert [n["step"] for n in notices] == ["announce", "summary"]
        assert notices[0]["data"]["text"].startswith("Rollback of maia in sandbox")
        assert notices[0]["data"]["channel"] == "#maia-incidents"
        assert Path(notices[0]["data"]["outbox"]).exists()

    def test_a_reply_remembers_the_message_it_answers(self, tmp_path: Path) -> None:
        """`reply_to` in the outbox keeps the parent's key, so `flush` can thread it later."""
        ws = make_workspace(tmp_path)
        result = service.runs.run(ws, "announce", {"service": "maia"})
        parent = Path(step_outputs(ws, result.run.id, "announce")["outbox"])
        reply = Path(step_outputs(ws, result.run.id, "summary")["outbox"])
        ws.close()
        assert json.loads(reply.read_text())["parent_key"] == parent.stem

    def test_the_step_channel_overrides_the_inventory(self, tmp_path: Path) -> None:
        """`channel:` wins over target.slack_channel; without either the message still queues."""
        write_runbook(
            tmp_path,
            "two",
            """
            apiVersion: crystal-runbook/v1
            kind: Runbook
            name: two
            params:
              service: {type: string, required: true}
            steps:
              - {id: mine, uses: slack.notify, with: {text: hi, channel: "#general"}}
              - {id: default, uses: slack.notify, with: {text: hi}}
            """,
        )
        sandbox = make_workspace(tmp_path)
        run = service.runs.run(sandbox, "two", {"service": "maia"}).run
        quiet = make_workspace(tmp_path, env="quiet")
        silent = service.runs.run(quiet, "two", {"service": "maia"}).run
        channels = {
            (o["origin"]["env"], o["origin"]["step_id"]): o["message"]["channel"]
            for o in outbox_files(tmp_path).values()
        }
        sandbox.close()
        quiet.close()
        assert (run.status, silent.status) == ("ok", "ok")
        assert channels == {
            ("sandbox", "mine"): "#general",
            ("sandbox", "default"): "#maia-incidents",
            ("quiet", "mine"): "#general",
            ("quiet", "default"): None,
        }

    def test_plan_describes_and_writes_nothing(self, tmp_path: Path) -> None:
        """`plan` says the message would be printed and queued, and queues nothing."""
        ws = make_workspace(tmp_path)
        _, planned = service.runs.plan(ws, "announce", {"service": "maia"})
        ws.close()
        assert planned[0].status == "change"
        assert planned[0].summary.startswith(
            "would print and queue for #maia-incidents in the outbox (SLACK_BOT_TOKEN is not set)"
        )
        assert outbox_files(tmp_path) == {}


class TestConsoleShowsTextAsRead:
    def test_plan_preview_shows_placeholders_and_typed_text_unescaped(self, tmp_path: Path) -> None:
        """`plan` shows `(run <run.id>)` and a reason `a<b & c` as typed, not Slack's `&lt;`."""
        ws = make_workspace(tmp_path)
        write_runbook(
            tmp_path,
            "announce",
            """
            apiVersion: crystal-runbook/v1
            kind: Runbook
            name: announce
            params:
              service: {type: string, required: true}
              reason: {type: string, default: "practice"}
            steps:
              - id: announce
                uses: slack.notify
                with: {text: "Rollback by {{ run.actor }}: {{ params.reason }} (run {{ run.id }})"}
            """,
        )
        _, planned = service.runs.plan(ws, "announce", {"service": "maia", "reason": "a<b & c"})
        ws.close()
        summary = planned[0].summary
        assert summary.endswith("Rollback by tester: a<b & c (run <run.id>)"), summary
        assert "&lt;" not in summary
        assert "&amp;" not in summary

    def test_console_shows_text_as_read_and_the_wire_keeps_slack_escaping(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """stderr and the journal show `a<b & c`; the queued message (Slack's wire form) escapes it."""
        ws = make_workspace(tmp_path)
        result = service.runs.run(
            ws, "announce", {"service": "maia", "reason": "<!channel> a<b & c"}
        )
        ws.close()
        assert result.run.status == "ok"
        err = capsys.readouterr().err
        assert "| Rollback of maia in sandbox started by tester: <!channel> a<b & c" in err
        assert "&lt;" not in err
        outputs = step_outputs(make_workspace(tmp_path), result.run.id, "announce")
        queued = json.loads(Path(outputs["outbox"]).read_text())
        assert queued["message"]["text"].endswith(": &lt;!channel&gt; a&lt;b &amp; c")


class TestOutboxPathsAreAbsolute:
    def test_journal_and_outputs_name_the_outbox_by_its_absolute_path(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A run from inside the state dir's parent, with a relative state dir, journals
        `/…/.crystal/outbox/…`, not a path that only means something from that directory."""
        monkeypatch.chdir(tmp_path)
        ws = make_workspace(Path("."))
        result = service.runs.run(ws, "announce", {"service": "maia"})
        ws.close()
        assert result.run.status == "ok"
        monkeypatch.chdir("/")
        again = make_workspace(tmp_path)
        run = service.runs.show(again, result.run.id)
        events = [e.message for e in again.journal.events(result.run.id) if e.step_id == "announce"]
        again.close()
        announce = next(s for s in run.steps if s.id == "announce")
        outbox = str(tmp_path / ".crystal" / "outbox") + "/"
        assert announce.outputs["outbox"].startswith(outbox), announce.outputs
        assert Path(announce.outputs["outbox"]).is_file()
        queued = [m for m in events if "queued for" in m]
        assert queued, events
        assert all(f"in {outbox}" in m for m in queued), queued


class TestOncePerRunAndStep:
    def _context(self, ws_root: Path, run_id: str) -> StepContext:
        return StepContext(
            run_id=run_id,
            step_id="announce",
            env="sandbox",
            actor="tester",
            service="maia",
            target={"slack_channel": "#maia-incidents"},
            state_dir=ws_root / ".crystal",
            deadline=time.monotonic() + 5,
        )

    def test_check_finds_the_earlier_notification_of_the_step(self, tmp_path: Path) -> None:
        """After an apply (or a crash just after it), the check is satisfied: no second copy."""
        ws = make_workspace(tmp_path)
        action = ws.registry.get("slack.notify")
        args = action.Args.model_validate({"text": "Rollback started"})
        ctx = self._context(tmp_path, "aaaaaaaaaaaa")
        assert action.check(args, ctx).satisfied is False
        outcome = action.apply(args, ctx, action.check(args, ctx))
        again = action.check(args, ctx)
        other_run = action.check(args, self._context(tmp_path, "bbbbbbbbbbbb"))
        ws.close()
        assert again.satisfied is True
        assert dict(again.outputs) == dict(outcome.outputs)
        assert other_run.satisfied is False
        assert len(outbox_files(tmp_path)) == 1

    def test_without_the_service_layer_it_says_what_is_missing(self, tmp_path: Path) -> None:
        """A bare registry has no notifier wired in: a clear configuration error, not a crash."""
        action = slack_action.Notify()
        args = action.Args.model_validate({"text": "x"})
        with pytest.raises(errors.ConfigurationError, match="no notifier wired in"):
            action.check(args, self._context(tmp_path, "cccccccccccc"))


class TestSecrets:
    def test_secret_values_are_masked_in_console_outbox_and_journal(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A secret in a message (here through a parameter) is masked everywhere it is kept."""
        monkeypatch.setenv("MAIA_DB_PASSWORD", "hunter2-very-secret")
        ws = make_workspace(tmp_path)
        service.runs.run(ws,
            "announce", {"service": "maia", "reason": "pw hunter2-very-secret xoxb-1234-abcdefgh"}  # fake secret for the test
        )
        ws.close()
        err = capsys.readouterr().err
        stored = json.dumps(outbox_files(tmp_path))
        journal = (tmp_path / ".crystal" / "journal.db").read_bytes()
        for secret in ("hunter2-very-secret", "xoxb-1234-abcdefgh"):  # fake secret for the test
            assert secret not in err
            assert secret not in stored
            assert secret.encode() not in journal
        assert "pw ***** *****" in stored


class TestArguments:
    @pytest.mark.parametrize(
        ("given", "message"),
        [
            ({"text": ""}, "at least 1 character"),
            ({"text": "x", "channel": "two words"}, "should match pattern"),
            ({"text": "x", "thread_ts": "yesterday"}, "should match pattern"),
            ({"text": "x", "thread_ts": "1700000000.000100", "reply_to": "announce"}, "not both"),
            ({"text": "x", "colour": "red"}, "Extra inputs are not permitted"),
        ],
    )
    def test_bad_arguments_are_refused_before_anything_runs(
        self, given: dict[str, str], message: str
    ) -> None:
        """`with:` is validated against the action's model (so `validate` catches typos)."""
        with pytest.raises(ValueError, match=message):
            slack_action.NotifyArgs.model_validate(given)

    def test_an_empty_thread_is_no_thread(self) -> None:
        """A template that renders to "" means "not a reply" rather than an error."""
        args = slack_action.NotifyArgs.model_validate(
            {"text": "x", "thread_ts": "", "reply_to": ""}
        )
        assert (args.thread_ts, args.reply_to) == (None, None)


class TestFlushWithoutToken:
    def test_flush_without_a_token_refuses_and_names_what_waits(self, tmp_path: Path) -> None:
        """Nothing can be delivered without a token: exit 2 with the count and what to do."""
        ws = make_workspace(tmp_path)
        service.runs.run(ws, "announce", {"service": "maia"})
        with pytest.raises(errors.ConfigurationError, match="2 notification") as caught:
            service.incidents.flush_outbox(ws)
        ws.close()
        assert caught.value.exit_code == 2
        assert "SLACK_BOT_TOKEN=xoxb-" in str(caught.value.hint)

    def test_flush_of_an_empty_outbox_needs_no_token(self, tmp_path: Path) -> None:
        """Nothing waiting: nothing to do, whatever the settings."""
        ws = make_workspace(tmp_path)
        assert service.incidents.flush_outbox(ws) == []
        ws.close()


def test_an_embedded_run_never_imports_slack_sdk(tmp_path: Path) -> None:
    """The embedded default pays nothing for Slack: slack_sdk is not even imported."""
    make_workspace(tmp_path).close()
    probe = (
        "import sys\n"
        "from crystal_runbook.cli import main\n"
        "try:\n"
        "    main(['run', 'announce', '-p', 'service=maia'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code in (0, None), exc.code\n"
        "try:\n"
        "    main(['outbox', 'list'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code in (0, None), exc.code\n"
        "print(sorted(m for m in sys.modules if m.startswith('slack_sdk')))\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "CRYSTAL_ACTION_MODULES": "crystal_runbook.testing",
        "CRYSTAL_ACTOR": "tester",
    }
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
