"""`crystal-runbook readiness` on the sandbox: fails on a fresh journal, passes after a drill."""

from __future__ import annotations

import json

import pytest

from crystal_runbook.testing import SlackServer
from tests.integration.drills.conftest import Factory

pytestmark = pytest.mark.integration

LINES = ["drill", "rollback-time", "previous-revision", "triggers", "slack", "locks", "document"]


def test_fails_on_a_fresh_journal_and_passes_after_one_drill(make_drills: Factory) -> None:
    """Every line is ✓ or ✗ with evidence; a drill turns the failing ones into ✓."""
    drills = make_drills(metrics=True, slack=True)
    with SlackServer() as slack:
        env = {"SLACK_BOT_TOKEN": slack.token, "SLACK_API_URL": slack.url}
        fresh = drills.cli("readiness", "maia", "-o", "json", **env)
        assert fresh.returncode == 1, fresh.stderr
        report = json.loads(fresh.stdout)
        assert report["ready"] is False
        assert [line["key"] for line in report["lines"]] == LINES
        assert report["failing"] == ["drill", "rollback-time", "previous-revision", "document"]
        by_key = {line["key"]: line for line in report["lines"]}
        assert by_key["drill"]["evidence"] == "no drill in the journal yet"
        assert "nothing in the journal shows its pods Ready" in by_key["previous-revision"]["evidence"]
        assert by_key["triggers"]["ok"] is True
        assert "5 rollback rule(s)" in by_key["triggers"]["evidence"]
        assert by_key["slack"]["evidence"].startswith("auth.test ok")
        assert by_key["locks"]["ok"] is True
        text = drills.cli("readiness", "maia", **env)
        assert text.returncode == 1
        assert "NOT READY (4 of 7 items fail)" in text.stdout
        crossed = [line for line in text.stdout.splitlines() if line.startswith(" ✗")]
        assert len(crossed) == 4

        drill = drills.json("drill", "maia", **env)
        assert drill["drill"]["verdict"] == "pass"
        assert slack.calls("chat.postMessage"), "the drill announced nothing on Slack"

        after = drills.cli("readiness", "maia", "-o", "json", **env)
        assert after.returncode == 0, after.stdout
        report = json.loads(after.stdout)
        assert report["ready"] is True
        by_key = {line["key"]: line for line in report["lines"]}
        assert all(line["ok"] for line in report["lines"])
        assert by_key["drill"]["evidence"].startswith(f"drill {drill['id']} passed")
        assert by_key["drill"]["age_seconds"] < 120
        assert f"drill {drill['id']}" in by_key["previous-revision"]["evidence"]
        assert by_key["rollback-time"]["evidence"].startswith("p95 ")
        assert f"drill {drill['id']} wrote" in by_key["document"]["evidence"]
        assert len(slack.calls("auth.test")) >= 3
        text = drills.cli("readiness", "maia", **env)
        assert text.returncode == 0
        assert "maia in sandbox: READY" in text.stdout
        assert text.stdout.count(" ✓ ") == 7


def test_without_a_token_waiting_notifications_fail_the_slack_line(make_drills: Factory) -> None:
    """No token and the drill's notices wait in the outbox: the Slack line says so."""
    drills = make_drills()
    assert drills.json("drill", "maia")["drill"]["verdict"] == "pass"
    report = json.loads(drills.cli("readiness", "maia", "-o", "json").stdout)
    slack = next(line for line in report["lines"] if line["key"] == "slack")
    assert slack["ok"] is False
    assert "SLACK_BOT_TOKEN is not set and 3 notification(s) wait in" in slack["evidence"]
    assert slack["at"] is not None
