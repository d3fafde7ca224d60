"""The outbox's files: keys, atomic writes, delivery records, locks, broken files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crystal_runbook.notify import outbox as outbox_mod
from crystal_runbook.notify import slackapi

ORIGIN = outbox_mod.Origin(run_id="3fa2c1d09b7e", step_id="announce", env="sandbox")
MESSAGE = outbox_mod.Message(channel="#maia-incidents", text="Rollback of maia started")


def entry(
    *, origin: outbox_mod.Origin = ORIGIN, message: outbox_mod.Message = MESSAGE, at: str = ""
) -> outbox_mod.Entry:
    return outbox_mod.Entry(
        key=outbox_mod.make_key(origin, message),
        message=message,
        origin=origin,
        created_at=at or outbox_mod.now(),
    )


class TestKeys:
    def test_same_message_of_the_same_step_has_the_same_key(self) -> None:
        """The key depends only on run, step and message, so any process finds it again."""
        again = outbox_mod.Message(channel="#maia-incidents", text="Rollback of maia started")
        assert outbox_mod.make_key(ORIGIN, MESSAGE) == outbox_mod.make_key(ORIGIN, again)
        assert outbox_mod.make_key(ORIGIN, MESSAGE).startswith("3fa2c1d09b7e.announce.")

    @pytest.mark.parametrize(
        ("origin", "message"),
        [
            (outbox_mod.Origin("3fa2c1d09b7f", "announce"), MESSAGE),
            (outbox_mod.Origin("3fa2c1d09b7e", "summary"), MESSAGE),
            (ORIGIN, outbox_mod.Message(channel="#maia-incidents", text="Rollback of maia done")),
            (ORIGIN, outbox_mod.Message(channel="#general", text="Rollback of maia started")),
            (
                ORIGIN,
                outbox_mod.Message(channel="#maia-incidents", text=MESSAGE.text, thread_ts="1.2"),
            ),
        ],
    )
    def test_another_run_step_or_message_is_another_key(
        self, origin: outbox_mod.Origin, message: outbox_mod.Message
    ) -> None:
        """A different run, step, text, channel or thread is a different notification."""
        assert outbox_mod.make_key(origin, message) != outbox_mod.make_key(ORIGIN, MESSAGE)

    def test_keys_are_safe_file_names(self) -> None:
        """Odd run ids (plan, health, a path) cannot escape the outbox directory."""
        key = outbox_mod.make_key(outbox_mod.Origin("../../etc", "a/b"), MESSAGE)
        assert "/" not in key
        assert not key.startswith(".")


class TestFiles:
    def test_write_then_mark_sent_moves_the_file_to_sent(self, tmp_path: Path) -> None:
        """A delivered notification leaves outbox/ and is recorded in outbox/sent/."""
        box = outbox_mod.Outbox.of(tmp_path)
        waiting = entry()
        path = box.write(waiting)
        assert path == tmp_path / "outbox" / f"{waiting.key}.json"
        assert box.get(waiting.key) == waiting
        delivery = outbox_mod.Delivery("C0CRYSTAL01", "1700000000.000100", "https://x/p1", "t")
        sent = box.mark_sent(waiting, delivery)
        assert not path.exists()
        assert box.path(sent) == tmp_path / "outbox" / "sent" / f"{waiting.key}.json"
        found = box.get(waiting.key)
        assert found is not None
        assert (found.status, found.delivery) == ("sent", delivery)
        assert box.waiting() == ([], [])

    def test_waiting_is_oldest_first_and_reports_broken_files(self, tmp_path: Path) -> None:
        """`flush` delivers in order; a file it cannot read is named, not skipped silently."""
        box = outbox_mod.Outbox.of(tmp_path)
        late = entry(message=outbox_mod.Message("#a", "second"), at="2030-01-01T00:00:02.000Z")
        early = entry(message=outbox_mod.Message("#a", "first"), at="2030-01-01T00:00:01.000Z")
        box.write(late)
        box.write(early)
        (box.root / "garbage.json").write_text("{not json")
        waiting, broken = box.waiting()
        assert [e.message.text for e in waiting] == ["first", "second"]
        assert [b.path.name for b in broken] == ["garbage.json"]

    def test_files_are_plain_json_with_a_version(self, tmp_path: Path) -> None:
        """An on-call engineer can read an entry with cat and jq."""
        box = outbox_mod.Outbox.of(tmp_path)
        data = json.loads(box.write(entry()).read_text())
        assert data["version"] == 1
        assert data["status"] == "pending"
        assert data["message"]["text"] == "Rollback of maia started"
        assert data["origin"]["run_id"] == "3fa2c1d09b7e"

    def test_of_step_finds_the_delivered_message_of_a_step(self, tmp_path: Path) -> None:
        """`reply_to` finds the step's message, preferring the delivered one."""
        box = outbox_mod.Outbox.of(tmp_path)
        first = entry()
        box.mark_sent(first, outbox_mod.Delivery("C1", "1.000001", None, "t"))
        box.write(entry(message=outbox_mod.Message("#maia-incidents", "another text")))
        found = box.of_step(ORIGIN.run_id, "announce")
        assert found is not None
        assert found.key == first.key
        assert box.of_step(ORIGIN.run_id, "summary") is None


class TestClaim:
    def test_a_second_claim_waits_then_gives_up(self, tmp_path: Path) -> None:
        """Only one process delivers a notification at a time (flock on its lock file)."""
        box = outbox_mod.Outbox.of(tmp_path)
        with box.claim("k", wait=0) as first:
            assert first is True
            with box.claim("k", wait=0.1) as second:
                assert second is False
            with box.claim("other", wait=0) as unrelated:
                assert unrelated is True
        with box.claim("k", wait=0) as again:
            assert again is True


class TestSettings:
    def test_no_token_is_the_embedded_default(self) -> None:
        """Without SLACK_BOT_TOKEN notifications go to the console and the outbox."""
        settings = slackapi.SlackSettings.from_env({})
        assert settings.configured is False
        assert settings.api_url == "https://slack.com/api/"
        assert settings.problem is None

    def test_api_url_gets_its_trailing_slash(self) -> None:
        """slack_sdk joins base URL and method as strings: without the slash it misses /api/."""
        settings = slackapi.SlackSettings.from_env(
            {"SLACK_BOT_TOKEN": "xoxb-1-2", "SLACK_API_URL": "http://127.0.0.1:9/api"}
        )
        assert settings.api_url == "http://127.0.0.1:9/api/"
        assert settings.configured is True

    def test_token_from_a_file_and_never_in_repr(self, tmp_path: Path) -> None:
        """SLACK_BOT_TOKEN_FILE names a file holding the token; repr() never shows it."""
        (tmp_path / "token").write_text("xoxb-from-a-file-123456\n")  # fake secret for the test
        settings = slackapi.SlackSettings.from_env(
            {"SLACK_BOT_TOKEN_FILE": str(tmp_path / "token")}
        )
        assert settings.token == "xoxb-from-a-file-123456"  # noqa: S105 - a fake token
        assert "xoxb" not in repr(settings)

    @pytest.mark.parametrize(
        ("environ", "problem"),
        [
            ({"SLACK_BOT_TOKEN_FILE": "/nonexistent/token"}, "cannot read /nonexistent/token"),
            ({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_API_URL": "slack.com/api"}, "not an http(s) URL"),
        ],
    )
    def test_bad_settings_are_a_problem_not_an_exception(
        self, environ: dict[str, str], problem: str
    ) -> None:
        """A broken Slack setting must not stop a rollback: it is kept and said instead."""
        settings = slackapi.SlackSettings.from_env(environ)
        assert settings.configured is False
        assert settings.problem is not None
        assert problem in settings.problem


class TestTolerantOutbox:
    """While a step sends, an outbox that cannot be kept is reported, never raised."""

    def test_park_and_unpark_report_what_cannot_be_removed(self, tmp_path: Path) -> None:
        """The earlier delivered state's record and the parked file are directories here:
        removing them fails, and each failure goes to ``on_error`` with the path."""
        failures: list[str] = []
        box = outbox_mod.TolerantOutbox(
            tmp_path / "outbox", on_error=lambda what, _exc: failures.append(what)
        )
        update = entry()
        (box.sent_dir / f"{update.key}.json").mkdir(parents=True)
        parked = box.root / f"{update.key}.json"
        assert box.park(update) == parked
        assert parked.exists()  # parked all the same
        parked.unlink()
        parked.mkdir()
        box.unpark(update.key)
        assert failures == [
            f"drop {box.sent_dir / f'{update.key}.json'}",
            f"drop {box.root / f'{update.key}.json'}",
        ]
