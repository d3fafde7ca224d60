"""Every `/crystal` command over real HTTP to a running `serve --slack` (issue 11 item 2):
the read-only ones answer only the invoker, `scale` is a mutation like `rollback`, and the
setup check of docs/slack.md (a signed `/crystal help` from curl) works as written."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from crystal_runbook.testing.slack_requests import SlackAppClient
from tests.conftest import REPO
from tests.integration.slackapp.conftest import (
    ALICE,
    SECRET,
    Stack,
    buttons,
    dump,
    wait_for,
)

pytestmark = pytest.mark.integration

Shared = tuple[Stack, SlackAppClient]


class TestReadOnly:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("help", "*crystal-runbook* — emergency rollback and incident runbooks"),
            ("status", "No run in progress in sandbox"),
            ("runs", "No runs yet."),
            ("runs maia", "No runs yet of maia."),
        ],
    )
    def test_answered_in_the_acknowledgement_only_to_the_invoker(
        self, untouched: Shared, text: str, expected: str
    ) -> None:
        """help, status and runs answer at once, ephemerally, and post nothing in the channel."""
        stack, app = untouched
        posted = len(stack.slack.posted())
        answer = app.command(text, user_id=ALICE)
        assert answer.status == 200
        assert answer.seconds < 3.0
        assert answer.body["response_type"] == "ephemeral"
        assert answer.text.startswith(expected), answer.text
        assert len(stack.slack.posted()) == posted

    def test_help_says_where_the_user_may_run_what(self, untouched: Shared) -> None:
        """The help lists every command and the environments access.yaml allows this user."""
        _, app = untouched
        text = str(app.command("help", user_id=ALICE).body)
        for usage in ("rollback SERVICE [ENV] [reason…]", "scale SERVICE REPLICAS [ENV]",
                      "health SERVICE [ENV]", "logs SERVICE [ENV] [grep", "status",
                      "runs [SERVICE]", "drill SERVICE [ENV]", "help"):
            assert f"/crystal {usage}" in text, text
        assert "You may run here: rollback: sandbox, production, scale: sandbox," in text, text  # C0CRYSTAL01 is production's channel
        elsewhere = str(app.command("help", user_id=ALICE, channel_id="C0ELSEWHERE").body)
        assert "You may run here: rollback: sandbox, scale: sandbox," in elsewhere, elsewhere

    def test_health_is_answered_later_through_the_response_url(self, untouched: Shared) -> None:
        """`health maia sandbox`: acknowledged at once, then the report, ephemeral, to the invoker."""
        stack, app = untouched
        url = stack.slack.response_url("health")
        answer = app.command("health maia sandbox", user_id=ALICE, response_url=url)
        assert answer.seconds < 3.0
        assert answer.text.startswith(":hourglass_flowing_sand: Checking `health maia sandbox`")
        report = wait_for(lambda: stack.slack.answers("health"), 30, "the health report")[0]
        assert report["response_type"] == "ephemeral"
        assert report["text"].startswith(":white_check_mark: maia in sandbox: healthy"), report

    def test_logs_are_the_last_lines_in_a_code_block(self, untouched: Shared) -> None:
        """`logs maia sandbox GET`: the last lines that match, in a code block, ephemeral."""
        stack, app = untouched
        url = stack.slack.response_url("logs")
        answer = app.command("logs maia sandbox GET", user_id=ALICE, response_url=url)
        assert answer.text.startswith(":hourglass_flowing_sand: Reading the logs of")
        report = wait_for(lambda: stack.slack.answers("logs"), 30, "the log lines")[0]
        assert report["response_type"] == "ephemeral"
        found = re.match(r"The last (\d+) log lines of maia in sandbox matching `GET`:", report["text"])
        assert found, report["text"]
        assert 1 <= int(found.group(1)) <= 50
        code = str(report["blocks"])
        assert "```" in code, code
        assert code.count("GET") >= int(found.group(1)), code


class TestScale:
    def test_scale_is_planned_confirmed_and_run_like_the_cli(self, stack: Stack) -> None:
        """`scale maia 5 sandbox`: the confirm message shows the replicas change; after
        Confirm the Deployment has 5 replicas, the run is journalled with the Slack actor,
        and `status`/`runs` show it."""
        app = stack.serve("--slack")
        before = int(stack.cluster.deployment()["spec"]["replicas"])
        assert before != 5
        assert "Planning `scale maia 5 sandbox`" in app.command("scale maia 5 sandbox", user_id=ALICE).text
        confirm = stack.confirm_message()
        # escaped for Slack on the wire (-&gt;), which Slack shows as ->
        assert f"replicas: {before} -&gt; 5" in str(confirm.blocks), confirm.blocks
        assert stack.runs() == []  # nothing before Confirm
        app.press("confirm", buttons(confirm)["confirm"], user_id=ALICE, user_name="alice",
                  message_ts=confirm.ts)
        run = stack.finished_run()
        assert run.status == "ok", dump(stack)
        assert (run.runbook, run.actor, run.params["replicas"]) == ("scale", "slack:U0ALICE (alice)", 5)
        assert int(stack.cluster.deployment()["spec"]["replicas"]) == 5
        listed = str(app.command("runs maia", user_id=ALICE).body)
        assert f"`{run.id}`" in listed, listed
        assert "scale maia in sandbox: *ok*" in listed, listed
        assert app.command("status", user_id=ALICE).text.startswith("No run in progress")
        assert stack.stop() == 0


class TestDocumentedCheck:
    @pytest.mark.skipif(not (shutil.which("curl") and shutil.which("openssl")),
                        reason="needs curl and openssl (scripts/test.sh installs them)")
    def test_the_curl_check_of_docs_slack_md_answers_help(self, untouched: Shared) -> None:
        """docs/slack.md's signed `/crystal help` with curl and openssl gets the ephemeral
        help from a running `serve --slack`; the same request signed with another secret
        gets 401."""
        stack, _ = untouched
        doc = (REPO / "docs" / "slack.md").read_text()
        section = doc[doc.index("Check it from any HTTP client"):]
        script = section[section.index("```sh\n") + 6:section.index("```\n", section.index("```sh\n") + 6)]
        script = script.replace("http://127.0.0.1:3000/", f"http://127.0.0.1:{stack.port}/")
        assert f"127.0.0.1:{stack.port}/slack/events" in script, script

        def run(secret: str, *extra: str) -> str:
            done = subprocess.run(
                ["bash", "-c", "set -e\n" + script.rstrip() + " " + " ".join(extra)],
                env={"PATH": "/usr/bin:/bin", "SLACK_SIGNING_SECRET": secret},
                capture_output=True, text=True, timeout=30, check=False,
            )
            assert done.returncode == 0, done.stderr
            return done.stdout

        answer = json.loads(run(SECRET))
        assert answer["response_type"] == "ephemeral"
        assert answer["text"].startswith("*crystal-runbook* — "), answer
        assert "`/crystal rollback SERVICE [ENV] [reason…]`" in str(answer["blocks"])
        assert run("not-the-secret", "-o /dev/null -w '%{http_code}'") == "401"
