"""Forged, stale, oversized, foreign, replayed, unauthorized or hostile: refused, nothing runs."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import pytest

from crystal_runbook.testing import slack_requests
from crystal_runbook.testing.slack_requests import SlackAppClient
from tests.integration.slackapp.conftest import ALICE, BOB, MALLORY, Stack, buttons, wait_for

pytestmark = pytest.mark.integration

Shared = tuple[Stack, SlackAppClient]


def body(text: str, **fields: str) -> bytes:
    return urlencode(slack_requests.slash_command(text, **fields)).encode()


class TestSignature:
    @pytest.mark.parametrize("kind", ["command", "button"])
    def test_bad_signature_is_401(self, untouched: Shared, kind: str) -> None:
        """A slash command or a button press signed with another secret is refused before
        it is parsed."""
        _, app = untouched
        data = body("rollback maia sandbox")
        if kind == "button":
            payload = slack_requests.block_actions("confirm", "any-token", user_id=ALICE)
            data = urlencode({"payload": json.dumps(payload)}).encode()
        headers = slack_requests.sign("not-the-secret", data)
        assert app.post(data, headers=headers).status == 401

    def test_a_tampered_body_is_401(self, untouched: Shared) -> None:
        """Signed for one text, sent with another: refused."""
        _, app = untouched
        headers = slack_requests.sign(app.secret, body("help"))
        assert app.post(body("rollback maia sandbox"), headers=headers).status == 401

    @pytest.mark.parametrize("skew", [-301, 301, -10_000])
    def test_stale_timestamp_is_401(self, untouched: Shared, skew: int) -> None:
        """A well-signed request more than 300 s off (a replay) is refused."""
        _, app = untouched
        answer = app.post(body("rollback maia sandbox"), timestamp=int(time.time()) + skew)
        assert answer.status == 401

    @pytest.mark.parametrize("keep", ["X-Slack-Request-Timestamp", "X-Slack-Signature", None])
    def test_missing_headers_are_401(self, untouched: Shared, keep: str | None) -> None:
        """Without both signature headers nothing is even looked at."""
        _, app = untouched
        data = body("rollback maia sandbox")
        headers = {k: v for k, v in slack_requests.sign(app.secret, data).items() if k == keep}
        assert app.post(data, headers=headers).status == 401

    def test_oversized_body_is_400(self, untouched: Shared) -> None:
        """A body over 64 KB is refused without being read, signed or not."""
        _, app = untouched
        data = body("rollback maia sandbox " + "x" * 70_000)
        assert app.post(data).status == 400

    def test_the_endpoint_takes_only_post(self, untouched: Shared) -> None:
        """GET /slack/events is 405; /healthz answers 200."""
        stack, app = untouched
        assert app.client.get(app.url).status_code == 405
        health = app.client.get(f"http://127.0.0.1:{stack.port}/healthz")
        assert health.status_code == 200
        assert health.json()["status"] == "ok"


class TestCommands:
    @pytest.mark.parametrize(
        ("user", "text", "expected"),
        [
            (MALLORY, "rollback maia sandbox", "you are not allowed to run 'rollback' in 'sandbox'"),
            (ALICE, "rollback maia staging", "service 'maia' has no environment 'staging'"),
            (ALICE, "rollback nope sandbox", "unknown service 'nope'"),
            (ALICE, "rollback maia prod", "its environments: production, sandbox"),
            (ALICE, "deploy maia", "unknown command 'deploy'"),
            (ALICE, "status now please", "extra arguments"),
            (ALICE, "scale maia 3 sandbox extra", "extra arguments"),
            (ALICE, "rollback maia sandbox " + "x" * 979, "1001 characters long; at most 1000"),
            (ALICE, "rollback maia; rm -rf /", "shell syntax ';'"),
            (ALICE, "rollback $(id)", "shell syntax '$('"),
            (ALICE, "rollback `id`", "shell syntax '`'"),
            (ALICE, "rollback maia sandbox `id`", "shell syntax '`'"),
            (ALICE, "rollback maia\nsandbox", "control character (a newline)"),
            (ALICE, "rollback maia\x00", "control character (NUL)"),
            (ALICE, "rollback maia &amp;&amp; reboot", "shell syntax '&&'"),
        ],
    )
    def test_bad_input_gets_a_clear_ephemeral_error(
        self, untouched: Shared, user: str, text: str, expected: str
    ) -> None:
        """Each bad command is answered ephemerally with what was wrong, and journalled."""
        stack, app = untouched
        answer = app.command(text, user_id=user)
        assert answer.status == 200
        assert answer.body["response_type"] == "ephemeral"
        assert expected in answer.text, answer.text
        assert answer.text.startswith(":no_entry:")
        refusal = wait_for(
            lambda: [e for e in stack.refusals() if expected[:30] in e.data.get("reason", "")]
        )[-1]
        assert refusal.data["user"] == user

    def test_user_not_in_the_production_channel_rule_is_refused(self, untouched: Shared) -> None:
        """Production allows Alice only from its incident channel."""
        _, app = untouched
        answer = app.command("rollback maia production", user_id=ALICE, channel_id="C0ELSEWHERE")
        assert "not allowed from this channel" in answer.text


class TestButtons:
    def test_foreign_and_replayed_presses_are_refused(self, untouched: Shared) -> None:
        """Bob cannot confirm Alice's rollback; after her Cancel, every replay is refused."""
        stack, app = untouched
        assert "Planning" in app.command("rollback maia sandbox", user_id=ALICE).text
        confirm = stack.confirm_message()
        token = buttons(confirm)["confirm"]
        where = {"message_ts": confirm.ts, "response_url": stack.slack.response_url("buttons")}
        app.press("confirm", token, user_id=BOB, **where)
        app.press("confirm", "forged-token", user_id=ALICE, **where)
        app.press("cancel", token, user_id=ALICE, **where)
        payload = json.dumps(slack_requests.block_actions("confirm", token, user_id=ALICE, **where))
        replay = urlencode({"payload": payload}).encode()
        assert app.post(replay).status == 200
        assert app.post(replay).status == 200
        answers = wait_for(lambda: len(stack.slack.answers("buttons")) >= 4 and stack.slack.answers("buttons"))
        texts = " | ".join(a["text"] for a in answers)  # answered by parallel workers: any order
        assert "only <@U0ALICE>, who asked for it, can confirm this" in texts
        assert "this button is not known here" in texts
        assert texts.count("already decided (cancelled by <@U0ALICE>)") == 2
        assert all(a["response_type"] == "ephemeral" for a in answers)
        reasons = [e.data["reason"] for e in stack.refusals()]
        assert any("only <@U0ALICE>" in r for r in reasons)


class TestRateLimit:
    def test_the_101st_command_in_a_minute_is_refused_and_others_pass(
        self, untouched: Shared
    ) -> None:
        """100 commands from one user pass; the 101st says when to retry; another user passes."""
        _, app = untouched
        for i in range(100):
            assert app.command("help", user_id="U0BUSY").text.startswith("*crystal-runbook*"), i
        refused = app.command("help", user_id="U0BUSY")
        assert refused.text.startswith(":no_entry: slow down: more than 100 per minute")
        assert "retry in" in refused.text
        assert app.command("help", user_id="U0CALM").text.startswith("*crystal-runbook*")
