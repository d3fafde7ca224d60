"""One rollback, one PATCH, whatever the network does; the document tells what the run did
(issue 17, points 2 and 3).

The sandbox's fault switch slows the rollback's PATCH beyond the client's request timeout
(kube.client.REQUEST_TIMEOUT), so the client retries a PATCH the server is still applying;
a kill -9 in the middle of it, or right after it, is followed by `resume`. Each time the
request log shows exactly one PATCH of the Deployment answered 200, the step is journalled
as this run's change, and the incident document lists the revision, image and env changes.
"""

from __future__ import annotations

import json
import signal
from typing import Any

import pytest

from crystal_runbook import sandbox
from crystal_runbook.kube import client as kube_client
from tests.integration.kube.conftest import Cluster, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]

GOOD, CURRENT = "registry.local/maia:1.4.2", "registry.local/maia:1.5.0"
SLOWER_THAN_THE_CLIENT = kube_client.REQUEST_TIMEOUT + 1.0
DEPLOYMENT_PATH = "/deployments/maia$"


def patch_statuses(cluster: Cluster) -> list[int]:
    return [
        r["status"]
        for r in cluster.sb.requests()
        if r["method"] == "PATCH" and r["path"].endswith("/deployments/maia")
    ]


def slow_patches(cluster: Cluster, *, count: int) -> None:
    """The next ``count`` PATCHes of the Deployment take longer than the client waits."""
    cluster.sb.faults.add(
        sandbox.Fault(
            kind="latency",
            latency=SLOWER_THAN_THE_CLIENT,
            method="PATCH",
            path=DEPLOYMENT_PATH,
            count=count,
        )
    )


def journal_status(cluster: Cluster, step: str) -> str | None:
    listed = cluster.cli("runs", "-o", "json")
    runs = json.loads(listed.stdout or "[]")
    if not runs:
        return None
    shown = json.loads(cluster.cli("runs", "show", runs[0]["id"], "-o", "json").stdout)
    return next((s["status"] for s in shown["steps"] if s["id"] == step), None)


def kill_9(proc: Any) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)


def only_run(cluster: Cluster) -> str:
    runs = json.loads(cluster.cli("runs", "-o", "json").stdout)
    assert len(runs) == 1
    return str(runs[0]["id"])


def document(cluster: Cluster, run_id: str) -> dict[str, Any]:
    shown = cluster.cli("incident", "show", run_id, "--format", "json")
    assert shown.returncode == 0, shown.stderr
    return dict(json.loads(shown.stdout))


def rollback_changes(doc: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {c["field"]: (c["before"], c["after"]) for c in doc["changes"] if c["step"] == "undo"}


EXPECTED_CHANGES = {
    "revision": (2, 1),
    "image[maia]": (CURRENT, GOOD),
    "env[maia].CRYSTAL_MODE": ("hybrid", "legacy"),
}


class TestSlowApi:
    """A PATCH slower than the client's timeout is retried; it takes effect once."""

    def test_timeout_retry_then_422_patches_once(self, cluster: Cluster) -> None:
        """Two PATCHes outlive the client; the third gets 422 and the re-read finds it done."""
        slow_patches(cluster, count=2)
        done = cluster.cli("rollback", "maia", "-o", "json", timeout=200)
        assert done.returncode == 0, done.stdout + done.stderr
        statuses = patch_statuses(cluster)
        assert statuses.count(200) == 1, statuses
        assert len(statuses) >= 2  # it was retried: the retries met the resourceVersion test
        run = json.loads(done.stdout)
        undo = next(s for s in run["steps"] if s["id"] == "undo")
        assert undo["changed"] is True
        assert (cluster.image(), cluster.revision()) == (GOOD, 3)
        assert rollback_changes(document(cluster, run["id"])) == EXPECTED_CHANGES

    def test_kill_9_while_the_patch_is_in_flight_then_resume(self, cluster: Cluster) -> None:
        """Killed while the server still holds the PATCH; resume's own PATCH meets 422 and
        the re-read finds this run's rollback: one 200, changes documented."""
        slow_patches(cluster, count=2)
        proc = cluster.popen("rollback", "maia")
        wait_until(lambda: journal_status(cluster, "undo") == "applying", timeout=60)
        wait_until(lambda: any(f["fired"] for f in cluster.sb.faults.describe()), timeout=30)
        kill_9(proc)
        run_id = only_run(cluster)
        resumed = cluster.cli("resume", run_id, "-o", "json", timeout=200)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        statuses = patch_statuses(cluster)
        assert statuses.count(200) == 1, statuses
        undo = next(s for s in json.loads(resumed.stdout)["steps"] if s["id"] == "undo")
        assert undo["changed"] is True
        assert cluster.revision() == 3
        assert rollback_changes(document(cluster, run_id)) == EXPECTED_CHANGES


class TestResumeAfterThePatch:
    """Stopped right after the PATCH, the resumed run's document says what it changed."""

    @pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
    def test_document_lists_the_rollback_after_resume(
        self, cluster: Cluster, sig: signal.Signals
    ) -> None:
        """The check after resume finds the target running: it is this run's change."""
        cluster.sb.ready_delay = 3.0  # the rollout takes a while: stop the run inside it
        proc = cluster.popen("rollback", "maia")
        wait_until(lambda: patch_statuses(cluster) == [200], timeout=60)
        proc.send_signal(sig)
        proc.communicate(timeout=20)
        cluster.sb.ready_delay = 0.1
        run_id = only_run(cluster)
        resumed = cluster.cli("resume", run_id, "-o", "json")
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert patch_statuses(cluster) == [200]
        undo = next(s for s in json.loads(resumed.stdout)["steps"] if s["id"] == "undo")
        assert undo["changed"] is True
        assert "applied by this run" in undo["summary"]
        doc = document(cluster, run_id)
        assert rollback_changes(doc) == EXPECTED_CHANGES
        shown = cluster.cli("incident", "show", run_id).stdout
        assert "rolled back from revision 2 to 1" in shown
        assert "already running" not in shown
        assert "nothing was changed" not in shown
