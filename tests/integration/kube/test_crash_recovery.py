"""A crash never blocks the emergency rollback, and resume never undoes someone else's rollback."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime

import pytest

from crystal_runbook.kube.lease import lease_name
from tests.integration.kube.conftest import Cluster, wait_until

pytestmark = pytest.mark.integration

GOOD, CURRENT, NEW = "registry.local/maia:1.4.2", "registry.local/maia:1.5.0", "registry.local/maia:1.6.0"

GATED = """\
apiVersion: crystal-runbook/v1
kind: Runbook
name: gated-release
params:
  service: {type: string, required: true}
  image: {type: string, required: true}
lock: "{{ service.name }}/{{ env }}"
steps:
  - id: image
    uses: k8s.set_image
    with: {image: "{{ params.image }}"}
    timeout: 2m
  - id: gate
    name: go/no-go gate that does not pass
    uses: http.health
    with: {contains: "text the service never says"}
    retry: {attempts: 2, delay: 0.1s}
"""


def patched(cluster: Cluster, since: int) -> bool:
    return any(
        r["method"] == "PATCH" and r["path"].endswith("/deployments/maia")
        for r in cluster.sb.requests()[since:]
    )


def events(cluster: Cluster, run_id: str) -> list[tuple[str, str]]:
    with sqlite3.connect(cluster.state / "journal.db") as conn:
        return conn.execute(
            "SELECT status, message FROM events WHERE run_id = ? ORDER BY seq", (run_id,)
        ).fetchall()


class TestKilledRelease:
    def test_rollback_at_once_then_resume_refuses_to_redeploy_then_force_does(
        self, cluster: Cluster
    ) -> None:
        """kill -9 right after the release's PATCH; rollback is not blocked by its Lease;
        resume of the release names the rollback and deploys nothing; --force redeploys."""
        cluster.sb.ready_delay = 3.0
        before = cluster.request_count()
        proc = cluster.popen("run", "release", "-p", "service=maia", "-p", f"image={NEW}")
        try:
            wait_until(lambda: patched(cluster, before), timeout=30)
            proc.kill()
        finally:
            proc.communicate(timeout=10)
        cluster.sb.ready_delay = 0.1
        release_id = json.loads(cluster.cli("runs", "-o", "json").stdout)[0]["id"]
        lease = cluster.kubectl("get", "lease", lease_name("maia/sandbox"), "-o", "json")
        assert json.loads(lease.stdout)["metadata"]["annotations"][
            "crystal-runbook.io/run-id"
        ] == release_id  # the dead run's Lease is still there, not expired
        started = time.monotonic()
        rolled = cluster.cli("rollback", "maia", "-o", "json")
        assert rolled.returncode == 0, rolled.stdout + rolled.stderr
        assert time.monotonic() - started < 25
        rollback = json.loads(rolled.stdout)
        assert f"took over stale lock 'maia/sandbox' from run {release_id}" in rolled.stderr
        assert any("took over stale lock" in m for _, m in events(cluster, rollback["id"]))
        assert cluster.image() == CURRENT
        assert cluster.kubectl("get", "leases", "-o", "name").stdout.strip() == ""

        before = cluster.request_count()
        refused = cluster.cli("resume", release_id)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert f"run {rollback['id']} (rollback by oncall, ok at" in refused.stderr
        assert "step image: it was changing" in refused.stderr
        assert f"'{CURRENT}' -> '{NEW}'" in refused.stderr  # what differs now
        assert f"resume {release_id} --force" in refused.stderr
        assert cluster.mutations(before) == []
        assert cluster.image() == CURRENT
        shown = json.loads(cluster.cli("runs", "show", release_id, "-o", "json").stdout)
        assert shown["status"] != "ok"

        forced = cluster.cli("resume", release_id, "--force", "-o", "json")
        assert forced.returncode == 0, forced.stdout + forced.stderr
        assert json.loads(forced.stdout)["status"] == "ok"
        assert cluster.image() == NEW
        assert any(status == "resume forced" for status, _ in events(cluster, release_id))


class TestFailedGate:
    def test_resume_after_a_rollback_does_not_mark_the_release_ok(self, cluster: Cluster) -> None:
        """The release failed its gate, a rollback restored the service: resume refuses
        (exit 1) instead of passing the gate on the old image and calling the release ok."""
        (cluster.root / "runbooks").mkdir(exist_ok=True)
        (cluster.root / "runbooks" / "gated-release.yaml").write_text(GATED)
        gated = str(cluster.root / "runbooks" / "gated-release.yaml")
        failed = cluster.cli("run", gated, "-p", "service=maia", "-p", f"image={NEW}", "-o", "json")
        assert failed.returncode == 1
        release = json.loads(failed.stdout)
        assert [s["status"] for s in release["steps"]] == ["ok", "failed"]
        rolled = cluster.cli("rollback", "maia", "-o", "json")
        assert rolled.returncode == 0, rolled.stdout + rolled.stderr
        rollback_id = json.loads(rolled.stdout)["id"]
        resumed = cluster.cli("resume", release["id"])
        assert resumed.returncode == 1
        assert f"run {rollback_id} (rollback by oncall" in resumed.stderr
        assert "step image: it changed" in resumed.stderr
        shown = json.loads(cluster.cli("runs", "show", release["id"], "-o", "json").stdout)
        assert shown["status"] == "failed"
        assert cluster.image() == CURRENT


def foreign_lease(cluster: Cluster, run_id: str, *, actor: str = "alice") -> str:
    """Apply a Lease on maia/sandbox held by ``run_id`` from another host, renewed just now,
    for an hour; the time it says it was taken."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": lease_name("maia/sandbox"),
            "namespace": "crystal",
            "annotations": {
                "crystal-runbook.io/run-id": run_id,
                "crystal-runbook.io/actor": actor,
                "crystal-runbook.io/host": "far-away-laptop",
                "crystal-runbook.io/pid": "4242",
                "crystal-runbook.io/acquired-at": now,
            },
        },
        "spec": {
            "holderIdentity": f"{run_id} {actor}@far-away-laptop",
            "leaseDurationSeconds": 3600,
            "acquireTime": now,
            "renewTime": now,
        },
    }
    cluster.kubectl("apply", "--validate=false", "-f", "-", stdin=json.dumps(lease))
    return now


class TestBreakLock:
    def test_a_live_holder_on_another_host_needs_break_lock_confirmed(
        self, cluster: Cluster
    ) -> None:
        """exit 3 naming the holder; --break-lock without --yes is exit 4; with it the rollback
        runs and the journal names the actor and the previous holder."""
        now = foreign_lease(cluster, "0a0b0c0d0e0f")
        held = cluster.cli("rollback", "maia")
        assert held.returncode == 3
        assert "held by run 0a0b0c0d0e0f (actor alice on far-away-laptop" in held.stderr
        unconfirmed = cluster.cli("rollback", "maia", "--break-lock")
        assert unconfirmed.returncode == 4
        assert "--break-lock takes over 'maia/sandbox' from run 0a0b0c0d0e0f" in unconfirmed.stderr
        assert cluster.image() == CURRENT
        broken = cluster.cli("rollback", "maia", "--break-lock", "--yes", "-o", "json")
        assert broken.returncode == 0, broken.stdout + broken.stderr
        assert cluster.image() == GOOD
        run_id = json.loads(broken.stdout)["id"]
        journalled = [m for _, m in events(cluster, run_id) if "broke lock" in m]
        assert journalled == [
            "broke lock 'maia/sandbox' held by run 0a0b0c0d0e0f (alice on far-away-laptop, "
            f"since {now}): --break-lock by oncall"
        ]

    def test_a_lease_left_by_a_run_the_journal_shows_ended_is_taken_over_at_once(
        self, cluster: Cluster
    ) -> None:
        """A live-looking Lease from another host whose run the journal shows ended (its
        release was lost) does not block the next run: taken over at once, with a warning."""
        scaled = cluster.cli("scale", "maia", "--replicas", "4", "-o", "json")
        assert scaled.returncode == 0, scaled.stdout + scaled.stderr
        ended = json.loads(scaled.stdout)["id"]
        foreign_lease(cluster, ended, actor="oncall")
        rolled = cluster.cli("rollback", "maia", "-o", "json")
        assert rolled.returncode == 0, rolled.stdout + rolled.stderr  # not exit 3 for an hour
        assert f"took over stale lock 'maia/sandbox' from run {ended} (oncall on far-away-laptop" in (
            rolled.stderr
        )
        run_id = json.loads(rolled.stdout)["id"]
        assert any(f"from run {ended}" in m for _, m in events(cluster, run_id))
        assert cluster.image() == GOOD
        assert cluster.kubectl("get", "leases", "-o", "name").stdout.strip() == ""
