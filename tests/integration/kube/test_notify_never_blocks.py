"""Notifications never stand between the on-call engineer and the rollback (issue 17, point 1).

A rollback against the sandbox whose `announce` cannot be delivered, queued or even written:
an outbox that is a file, an outbox on a full disk, a Slack that accepts connections and
never answers. Each time the rollback PATCHes once, the announcement holds it up less than
a second, the run is ok, and the incident document says honestly that users were not told.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crystal_runbook.engine import journal
from crystal_runbook.testing import disks
from crystal_runbook.testing.blackhole import BlackHole
from crystal_runbook.testing.slack_server import SlackServer, slack_server
from tests.integration.kube.conftest import Cluster

__all__ = ["slack_server"]  # the product's own fixture, used below

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

INLINE_BUDGET = 1.0
"""Seconds a notification step may hold the run up (the issue's bound)."""


@pytest.fixture
def channel(cluster: Cluster) -> Cluster:
    """The cluster's inventory with a Slack channel, so a token makes real posts."""
    services = cluster.root / "inventory" / "services.yaml"
    text = services.read_text()
    services.write_text(
        text.replace(
            "        health_url:", "        slack_channel: '#maia-incidents'\n        health_url:"
        )
    )
    return cluster


def rollback(cluster: Cluster, **env: str) -> tuple[dict[str, Any], str]:
    done = cluster.cli("rollback", "maia", "-o", "json", **env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return json.loads(done.stdout), done.stderr


def deployment_patches(cluster: Cluster) -> list[int]:
    return [
        r["status"]
        for r in cluster.sb.requests()
        if r["method"] == "PATCH" and r["path"].endswith("/deployments/maia")
    ]


def seconds(step: dict[str, Any]) -> float:
    started, ended = journal.parse_iso(step["started_at"]), journal.parse_iso(step["ended_at"])
    return (ended - started).total_seconds()


def users_notified(run: dict[str, Any]) -> dict[str, Any]:
    document = Path(next(s for s in run["steps"] if s["id"] == "document")["outputs"]["json"])
    items = json.loads(document.read_text())["verification"]
    return next(i for i in items if i["item"] == "Users notified")


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KB filesystem, full."""
    try:
        with disks.small_disk(tmp_path / "full", size_kb=64) as mounted:
            disks.fill(mounted)
            yield mounted
    except disks.Unavailable as exc:
        pytest.skip(str(exc))


class TestOutboxCannotBeWritten:
    """Without a token the outbox is where messages wait; when it cannot be written the
    rollback still goes on, and the message is printed loudly."""

    def test_outbox_that_is_a_file(self, channel: Cluster) -> None:
        """`outbox` is a file: one PATCH, run ok, 'NOT QUEUED' said, users notified: failed."""
        channel.state.mkdir(parents=True, exist_ok=True)
        (channel.state / "outbox").write_text("not a directory\n")
        run, stderr = rollback(channel)
        assert deployment_patches(channel) == [200]
        steps = {s["id"]: s for s in run["steps"]}
        assert steps["announce"]["status"] == "ok"
        assert "not queued in the outbox" in steps["announce"]["outputs"]["error"]
        assert "cannot write" in steps["announce"]["outputs"]["error"]
        assert seconds(steps["announce"]) < INLINE_BUDGET
        assert "WARNING: Slack notification NOT QUEUED" in stderr
        assert "Rollback of *maia* in *sandbox* started by oncall" in stderr  # still printed
        check = users_notified(run)
        assert check["state"] == "failed"
        assert "printed on the console only" in check["detail"]

    def test_outbox_on_a_full_disk(self, channel: Cluster, full_disk: Path) -> None:
        """ENOSPC from a real full filesystem: the same as above, with the kernel's words."""
        channel.state.mkdir(parents=True, exist_ok=True)
        (channel.state / "outbox").symlink_to(full_disk)
        run, stderr = rollback(channel)
        assert deployment_patches(channel) == [200]
        announce = next(s for s in run["steps"] if s["id"] == "announce")
        assert "No space left on device" in announce["outputs"]["error"]
        assert seconds(announce) < INLINE_BUDGET
        assert "WARNING: Slack notification NOT QUEUED" in stderr
        assert users_notified(run)["state"] == "failed"

    def test_full_outbox_with_a_token_still_posts(
        self, channel: Cluster, full_disk: Path, slack_server: SlackServer
    ) -> None:
        """With a token and a full disk, the messages still reach Slack, once each."""
        channel.state.mkdir(parents=True, exist_ok=True)
        (channel.state / "outbox").symlink_to(full_disk)
        run, _ = rollback(channel, **slack_server.env())
        assert deployment_patches(channel) == [200]
        announce = next(s for s in run["steps"] if s["id"] == "announce")
        assert announce["outputs"]["ts"]
        texts = [m.text for m in slack_server.posted("#maia-incidents")]
        assert sum("started by oncall" in t for t in texts) == 1
        assert users_notified(run)["state"] == "passed"


class TestSlackNeverAnswers:
    """A token is set and Slack accepts connections but never answers."""

    def test_the_patch_is_not_held_back(self, channel: Cluster) -> None:
        """announce waits under a second; the PATCH goes out; users notified: failed, kept."""
        with BlackHole() as hole:
            env = {
                "SLACK_BOT_TOKEN": "xoxb-1111111111-faketoken-never-answered",  # fake secret for the test
                "SLACK_API_URL": hole.url + "/api/",
            }
            run, stderr = rollback(channel, **env)
            assert hole.accepted >= 1  # it did try Slack
        assert deployment_patches(channel) == [200]
        steps = {s["id"]: s for s in run["steps"]}
        announce = steps["announce"]
        assert seconds(announce) < INLINE_BUDGET
        patched_at = next(
            journal.parse_iso(r["time"])
            for r in channel.sb.requests()
            if r["method"] == "PATCH" and r["path"].endswith("/deployments/maia")
        )
        held = (patched_at - journal.parse_iso(announce["started_at"])).total_seconds()
        assert held < INLINE_BUDGET + 1.0  # the announcement, then undo's check: not 10 s
        # the background delivery ended before the command did, and the journal says how
        assert "cannot reach the Slack Web API" in announce["outputs"]["error"]
        assert Path(announce["outputs"]["outbox"]).exists()
        assert "NOT DELIVERED" in stderr
        check = users_notified(run)
        assert check["state"] == "failed"
        assert "cannot reach the Slack Web API" in check["detail"]
