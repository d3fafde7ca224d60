"""The installed command line with Slack: kill -9 mid-post then resume, `outbox list|flush`."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from crystal_runbook.testing.slack_server import SlackServer
from tests.conftest import Cli
from tests.unit.slack.helpers import ANNOUNCE, SERVICES

pytestmark = pytest.mark.integration
OFF = {"CRYSTAL_LIVE_PROGRESS": "off"}
"""Only `slack.notify`'s messages (the live progress message is tested in slackapp/)."""


@pytest.fixture
def workspace(cli: Cli) -> Cli:
    cli.write("inventory/services.yaml", SERVICES)
    cli.write("runbooks/announce.yaml", ANNOUNCE)
    return cli


def test_resume_after_kill_during_the_post_does_not_post_twice(
    workspace: Cli, slack_server: SlackServer
) -> None:
    """Killed after Slack took the message but before it answered: resume finds it, posts no copy."""
    slack_server.slow("chat.postMessage", 3.0)
    proc = workspace.popen("run", "announce", "-p", "service=maia", **slack_server.env(), **OFF)
    deadline = time.monotonic() + 20
    while not slack_server.posted() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert slack_server.posted(), "the run never reached Slack"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=10)
    runs = json.loads(workspace("runs", "-o", "json").stdout)
    assert runs[0]["status"] == "interrupted"  # killed: its process is gone
    resumed = workspace("resume", runs[0]["id"], "-o", "json", **slack_server.env(), **OFF)
    assert resumed.returncode == 0, resumed.stderr
    steps = {s["id"]: s for s in json.loads(resumed.stdout)["steps"]}
    announce, summary = slack_server.posted("#maia-incidents")
    assert announce.text.startswith("Rollback of maia in sandbox")
    assert steps["announce"]["outputs"]["ts"] == announce.ts
    assert summary.thread_ts == announce.ts
    assert len(slack_server.posted()) == 2


def test_outbox_list_and_flush(workspace: Cli, slack_server: SlackServer) -> None:
    """Queued without a token, listed, refused without one (exit 2), flushed once with one."""
    assert workspace("run", "announce", "-p", "service=maia").returncode == 0
    listed = workspace("outbox", "list", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    entries = json.loads(listed.stdout)
    assert [e["origin"]["step_id"] for e in entries] == ["announce", "summary"]
    assert {e["status"] for e in entries} == {"pending"}
    assert all(os.path.exists(e["path"]) for e in entries)
    assert "2 waiting" in listed.stderr
    refused = workspace("outbox", "flush")
    assert refused.returncode == 2
    assert "SLACK_BOT_TOKEN is not set: 2 notification(s) wait" in refused.stderr
    flushed = workspace("outbox", "flush", **slack_server.env())
    assert flushed.returncode == 0, flushed.stderr
    assert flushed.stdout.count("sent ") == 2
    again = workspace("outbox", "flush", **slack_server.env())
    assert (again.returncode, again.stdout) == (0, "")
    assert "nothing to deliver" in again.stderr
    sent = json.loads(workspace("outbox", "--sent", "-o", "json").stdout)
    assert [e["status"] for e in sent] == ["sent", "sent"]
    assert len(slack_server.posted()) == 2
    for output in (listed, refused, flushed, again):
        assert slack_server.token not in output.stdout + output.stderr


def test_flush_that_cannot_deliver_exits_1_with_the_reason(
    workspace: Cli, slack_server: SlackServer
) -> None:
    """A refused delivery stays in the outbox, with its reason, and flush exits 1."""
    assert workspace("run", "announce", "-p", "service=maia").returncode == 0
    wrong = "xoxb-1111-not-the-right-one"  # fake secret for the test
    out = workspace("outbox", "flush", **slack_server.env(token=wrong))
    assert out.returncode == 1
    assert "failed" in out.stdout
    assert "invalid_auth" in out.stdout
    listed = workspace("outbox", "list")
    assert "last error:" in listed.stdout
    assert "Slack refused the bot token (invalid_auth)" in listed.stdout
