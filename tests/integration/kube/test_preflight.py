"""Refusals before side effects against the sandbox: nothing announced, changed or documented."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crystal_runbook.testing.slack_server import SlackServer, slack_server
from tests.integration.kube.conftest import Cluster

pytestmark = pytest.mark.integration

__all__ = ["slack_server"]

GOOD, CURRENT = "registry.local/maia:1.4.2", "registry.local/maia:1.5.0"


def with_channel(cluster: Cluster) -> None:
    """Give maia a Slack channel in both environments of the test inventory."""
    path = cluster.root / "inventory" / "services.yaml"
    path.write_text(
        path.read_text().replace(
            "        health_url:", '        slack_channel: "#maia-incidents"\n        health_url:'
        )
    )


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


def assert_refused_quietly(cluster: Cluster, run_id: str, step: str) -> dict[str, object]:
    """The journal says `refused` at ``step``; `runs` and `runs show` say so too."""
    shown = cluster.cli("runs", "show", run_id, "-o", "json")
    doc = json.loads(shown.stdout)
    assert doc["status"] == "refused"
    statuses = {s["id"]: s["status"] for s in doc["steps"]}
    assert statuses[step] == "refused"
    assert {s for s, v in statuses.items() if v != "pending"} == {step}
    assert [s["phase"] for s in doc["steps"]] == ["main"] * len(doc["steps"])  # no on_failure
    listed = cluster.cli("runs").stdout
    assert any(run_id in line and "refused" in line for line in listed.splitlines())
    text = cluster.cli("runs", "show", run_id).stdout
    assert "status:  refused" in text
    return doc


class TestSecondRollback:
    def test_sends_no_slack_message_writes_no_document_keeps_no_lease(
        self, cluster: Cluster, slack_server: SlackServer
    ) -> None:
        """The Done-when of issue 9: the refused rollback is silent, unchanged and journalled."""
        with_channel(cluster)
        first = cluster.cli("rollback", "maia", **slack_server.env())
        assert first.returncode == 0, first.stdout + first.stderr
        calls = len(slack_server.calls())
        assert calls > 0  # the first one did talk to Slack
        documents = files(cluster.state / "incidents")
        before = cluster.request_count()
        again = cluster.cli("rollback", "maia", "-o", "json", **slack_server.env())
        assert again.returncode == 1, again.stderr
        run = json.loads(again.stdout)
        assert run["status"] == "refused"
        assert slack_server.calls()[calls:] == []
        assert files(cluster.state / "incidents") == documents
        assert cluster.mutations(before) == []
        leases = cluster.kubectl("get", "leases", "-o", "name").stdout.strip()
        assert leases == ""  # taken for the check, released: none is kept
        assert cluster.image() == GOOD
        doc = assert_refused_quietly(cluster, run["id"], "undo")
        assert "already rolled back from revision 2" in str(doc["error"])
        text = cluster.cli("rollback", "maia")
        assert text.returncode == 1
        assert "refused before any change" in text.stdout
        assert "--to-revision N" in text.stdout


class TestRefusedBeforeTheAnnouncement:
    @pytest.mark.parametrize(
        ("setup", "args", "says"),
        [
            ("pause", ["--to-revision", "1"], "is paused"),
            ("", ["--to-revision", "9"], "revision 9 not found in its history"),
            ("missing", [], "404"),
        ],
        ids=["paused", "unknown-revision", "no-such-deployment"],
    )
    def test_nothing_is_queued_or_changed(
        self, cluster: Cluster, setup: str, args: list[str], says: str
    ) -> None:
        """Paused, unknown revision, no such deployment: exit 1, no outbox entry, no patch."""
        with_channel(cluster)
        if setup == "pause":
            cluster.kubectl("rollout", "pause", "deployment/maia")
        if setup == "missing":
            path = cluster.root / "inventory" / "services.yaml"
            path.write_text(path.read_text().replace("deployment: maia", "deployment: nope"))
        before = cluster.request_count()
        out = cluster.cli("rollback", "maia", *args, "-o", "json")
        assert out.returncode == 1, out.stderr
        run = json.loads(out.stdout)
        assert says in str(run["error"])
        assert files(cluster.state / "outbox") == []
        assert files(cluster.state / "incidents") == []
        assert cluster.mutations(before) == []
        assert_refused_quietly(cluster, run["id"], "undo")


class TestIncidentCount:
    def test_a_refused_rollback_is_not_an_incident(self, cluster: Cluster) -> None:
        """Release, refused rollback (paused), rollback: the document counts one incident."""
        released = cluster.cli(
            "run", "release", "-p", "service=maia", "-p", "image=registry.local/maia:1.6.0"
        )
        assert released.returncode == 0, released.stdout + released.stderr
        cluster.kubectl("rollout", "pause", "deployment/maia")
        assert cluster.cli("rollback", "maia").returncode == 1
        cluster.kubectl("rollout", "resume", "deployment/maia")
        done = cluster.cli("rollback", "maia", "-o", "json")
        assert done.returncode == 0, done.stdout + done.stderr
        run = json.loads(done.stdout)
        document = next(s for s in run["steps"] if s["id"] == "document")
        incident = json.loads(Path(document["outputs"]["json"]).read_text())
        assert incident["review"]["incidents_during_deployment"] == 1
