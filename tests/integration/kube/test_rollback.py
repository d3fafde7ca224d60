"""`crystal-runbook rollback` against the sandbox, checked with real kubectl."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.kube.conftest import TERMINATION, Cluster, wait_until

pytestmark = [pytest.mark.integration, TERMINATION]

GOOD, CURRENT = "registry.local/maia:1.4.2", "registry.local/maia:1.5.0"


class TestRollback:
    def test_rolls_back_in_legacy_mode_with_one_rollout(self, cluster: Cluster) -> None:
        """Previous image, CRYSTAL_MODE=legacy, exactly one new revision, verified and journalled."""
        assert (cluster.image(), cluster.revision()) == (CURRENT, 2)
        done = cluster.cli("rollback", "maia", "--reason", "p99 above 2s", "-o", "json")
        assert done.returncode == 0, done.stderr
        run = json.loads(done.stdout)
        assert run["status"] == "ok"
        assert run["params"]["reason"] == "p99 above 2s"
        steps = {s["id"]: s for s in run["steps"]}
        undo = steps["undo"]
        assert undo["outputs"]["from_revision"] == 2
        assert undo["outputs"]["to_revision"] == 1
        assert undo["outputs"]["to_images"] == {"maia": GOOD}
        assert undo["outputs"]["to_env"]["CRYSTAL_MODE"] == "legacy"
        assert cluster.image() == GOOD
        assert cluster.env_var("CRYSTAL_MODE") == "legacy"
        assert cluster.revision() == 3  # one rollout: legacy mode came in the same patch
        dep = cluster.deployment()
        assert dep["status"]["updatedReplicas"] == dep["status"]["availableReplicas"] == 3
        annotations = dep["metadata"]["annotations"]
        assert annotations["crystal-runbook.io/rolled-back-from-revision"] == "2"
        assert annotations["crystal-runbook.io/rollback-run"] == run["id"]
        pods = json.loads(cluster.kubectl("get", "pods", "-l", "app=maia", "-o", "json").stdout)
        images = {
            p["spec"]["containers"][0]["image"]
            for p in pods["items"]
            if p["metadata"].get("deletionTimestamp") is None
        }
        assert images == {GOOD}
        assert {i: s["status"] for i, s in steps.items()} == {
            "announce": "ok",
            "undo": "ok",
            "legacy-mode": "ok",
            "healthy": "ok",
            "errors-ceased": "skipped",
            "performance-restored": "skipped",
            "users-notified": "ok",
            "document": "ok",
            "share-document": "ok",
        }
        assert steps["legacy-mode"]["changed"] is False  # legacy mode was already active
        assert steps["announce"]["outputs"]["outbox"]  # no Slack token: the outbox has it
        assert steps["document"]["outputs"]["markdown"].endswith(f"-maia-{run['id']}.md")
        shared = json.loads(Path(steps["share-document"]["outputs"]["outbox"]).read_text())
        assert shared["message"]["file"] == steps["document"]["outputs"]["markdown"]

    def test_the_patch_follows_one_read(self, cluster: Cluster) -> None:
        """Before the PATCH: the Lease (one POST), one read of the Deployment and its
        ReplicaSets shared by the preflight, the check and the apply, and legacy mode's own
        preflight read of the Deployment; nothing else."""
        since = cluster.request_count()
        done = cluster.cli("rollback", "maia")
        assert done.returncode == 0, done.stderr
        requests = cluster.sb.requests()[since:]
        patch = next(
            i
            for i, r in enumerate(requests)
            if r["method"] == "PATCH" and r["path"].endswith("/deployments/maia")
        )
        before = sorted(
            (r["method"], r["path"].rsplit("/", 1)[-1])
            for r in requests[:patch]
            if not r["path"].startswith("/_sandbox") and "/proxy/" not in r["path"]
        )
        assert before == [
            ("GET", "maia"),
            ("GET", "maia"),
            ("GET", "replicasets"),
            ("POST", "leases"),
        ]
        assert [r["method"] for r in requests[patch:]].count("PATCH") == 1

    def test_second_rollback_refuses_instead_of_flipping_back(self, cluster: Cluster) -> None:
        """kubectl would flip back to the bad release; we stop and say why (exit 1)."""
        assert cluster.cli("rollback", "maia").returncode == 0
        before = cluster.request_count()
        again = cluster.cli("rollback", "maia")
        assert again.returncode == 1
        assert "already rolled back from revision 2 by run" in again.stdout
        assert "pass --to-revision N to go further back" in again.stdout
        assert cluster.mutations(before) == []
        assert cluster.image() == GOOD

    def test_explicit_revision_goes_there_and_a_repeat_changes_nothing(
        self, cluster: Cluster
    ) -> None:
        """--to-revision N works; the same request again is satisfied without a mutation."""
        first = cluster.cli("rollback", "maia", "--to-revision", "1")
        assert first.returncode == 0, first.stderr
        before = cluster.request_count()
        second = cluster.cli("rollback", "maia", "--to-revision", "3", "-o", "json")
        assert second.returncode == 0, second.stderr
        run = json.loads(second.stdout)
        undo = next(s for s in run["steps"] if s["id"] == "undo")
        assert undo["changed"] is False
        assert "already runs revision 3's template" in undo["summary"]
        assert cluster.mutations(before) == []

    def test_dry_run_shows_the_diff_and_changes_nothing(self, cluster: Cluster) -> None:
        """`--dry-run` is the plan: revision, image and env diff, no mutation."""
        before = cluster.request_count()
        plan = cluster.cli("rollback", "maia", "--dry-run", "--env", "production")
        assert plan.returncode == 4, plan.stderr  # all checks fine; only --yes is missing
        assert "revision: 2 -> 1" in plan.stdout
        assert f"image[maia]: '{CURRENT}' -> '{GOOD}'" in plan.stdout
        assert "env[maia].CRYSTAL_MODE: 'hybrid' -> 'legacy'" in plan.stdout
        assert "no change: step undo already sets env[maia].CRYSTAL_MODE" in plan.stdout
        assert "production needs confirmation" in plan.stdout
        assert (
            cluster.cli("rollback", "maia", "--dry-run", "--env", "production", "--yes").returncode
            == 0
        )
        assert cluster.mutations(before, exclude_leases=False) == []
        assert cluster.image() == CURRENT

    def test_production_needs_yes(self, cluster: Cluster) -> None:
        """Exit 4 without --yes; nothing changed; with --yes it rolls back."""
        refused = cluster.cli("rollback", "maia", "--env", "production")
        assert refused.returncode == 4
        assert cluster.image() == CURRENT
        assert cluster.cli("rollback", "maia", "--env", "production", "--yes").returncode == 0
        assert cluster.image() == GOOD


class TestRefusals:
    def test_paused_deployment_is_refused_before_any_change(self, cluster: Cluster) -> None:
        """A paused Deployment would not roll out: refuse, say how to resume."""
        cluster.kubectl("rollout", "pause", "deployment/maia")
        before = cluster.request_count()
        out = cluster.cli("rollback", "maia")
        assert out.returncode == 1
        assert "is paused" in out.stdout
        assert "rollout resume deployment/maia" in out.stdout
        assert cluster.mutations(before) == []

    def test_unknown_revision_is_refused_with_the_history(self, cluster: Cluster) -> None:
        """Revision 9 does not exist: say which do."""
        before = cluster.request_count()
        out = cluster.cli("rollback", "maia", "--to-revision", "9")
        assert out.returncode == 1
        assert "revision 9 not found in its history" in out.stdout
        assert "revisions kept: 1, 2" in out.stdout
        assert cluster.mutations(before) == []

    def test_no_history_is_refused(self, cluster: Cluster) -> None:
        """A Deployment with one revision has nothing to roll back to."""
        manifest = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "solo", "namespace": "crystal"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "solo"}},
                "template": {
                    "metadata": {"labels": {"app": "solo"}},
                    "spec": {"containers": [{"name": "solo", "image": "registry.local/solo:1.0"}]},
                },
            },
        }
        cluster.kubectl("apply", "--validate=false", "-f", "-", stdin=json.dumps(manifest))
        cluster.root.joinpath("inventory/services.yaml").write_text(
            cluster.root.joinpath("inventory/services.yaml")
            .read_text()
            .replace("deployment: maia", "deployment: solo")
        )
        wait_until(lambda: cluster.kubectl("get", "rs", "-l", "app=solo", "-o", "name").stdout)
        out = cluster.cli("rollback", "maia")
        assert out.returncode == 1
        assert "no rollout history found" in out.stdout

    def test_unreachable_cluster_fails_with_a_clear_message(self, cluster: Cluster) -> None:
        """API server down: exit 1, says it cannot reach it and what to check."""
        cluster.sb.stop()
        out = cluster.cli("rollback", "maia", "--to-revision", "1", timeout=120)
        assert out.returncode == 1
        assert "cannot reach the API server" in out.stdout + out.stderr


class TestStuckRollouts:
    def test_crash_image_fails_fast_naming_the_pods_and_rollback_recovers(
        self, cluster: Cluster
    ) -> None:
        """A `-crash` release never gets Ready: rollout_status fails within the grace, not at 5 min."""
        cluster.kubectl("set", "image", "deployment/maia", "maia=registry.local/maia:1.6.0-crash")
        status = cluster.cli(
            "run", "health-check", "-p", "service=maia", "-p", "crash_grace=2s", "-o", "json"
        )
        assert status.returncode == 1
        run = json.loads(status.stdout)
        rollout_step = run["steps"][1]
        assert rollout_step["status"] == "failed"
        assert (
            "CrashLoopBackOff" in rollout_step["error"] or "cannot succeed" in rollout_step["error"]
        )
        shown = json.loads(cluster.cli("runs", "show", run["id"], "-o", "json").stdout)
        assert shown["status"] == "failed"
        back = cluster.cli("rollback", "maia", "-o", "json")
        assert back.returncode == 0, back.stdout + back.stderr
        undo = next(s for s in json.loads(back.stdout)["steps"] if s["id"] == "undo")
        assert undo["outputs"]["to_images"] == {"maia": CURRENT}
        cluster.wait_rolled_out()


class TestResume:
    def test_kill_9_during_verification_then_resume_does_not_patch_again(
        self, cluster: Cluster
    ) -> None:
        """The patch took effect before the kill; resume's check sees it and only verifies."""
        cluster.sb.ready_delay = 3.0
        proc = cluster.popen("rollback", "maia")
        wait_until(
            lambda: any(
                r["method"] == "PATCH" and r["path"].endswith("/deployments/maia")
                for r in cluster.sb.requests()
            ),
            timeout=30,
        )
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
        cluster.sb.ready_delay = 0.1
        runs = json.loads(cluster.cli("runs", "-o", "json").stdout)
        assert runs[0]["status"] == "interrupted"  # killed: its process is gone
        before = cluster.request_count()
        resumed = cluster.cli("resume", runs[0]["id"], "-o", "json")
        assert resumed.returncode == 0, resumed.stderr
        doc = json.loads(resumed.stdout)
        assert doc["status"] == "ok"
        deployment_patches = [
            r for r in cluster.mutations(before) if r["path"].endswith("/deployments/maia")
        ]
        assert deployment_patches == []
        assert cluster.image() == GOOD
        assert cluster.revision() == 3


class TestVerifiedByMetrics:
    def test_rollback_of_a_burning_release_proves_errors_ceased(self, cluster: Cluster) -> None:
        """With a metrics source, the trigger rules that fired must be clear before `ok`."""
        inventory = cluster.root / "inventory"
        text = (inventory / "services.yaml").read_text()
        (inventory / "services.yaml").write_text(
            text.replace(
                "        health_url:",
                f"        metrics: {{source: scrape, url: {cluster.sb.metrics_url()}}}\n"
                "        health_url:",
            )
        )
        (inventory / "triggers.yaml").write_text((REPO / "inventory" / "triggers.yaml").read_text())
        cluster.kubectl("set", "image", "deployment/maia", "maia=registry.local/maia:1.5.1-bad")
        cluster.wait_rolled_out()
        done = cluster.cli("rollback", "maia", "-o", "json", timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        run = json.loads(done.stdout)
        by_id = {s["id"]: s for s in run["steps"]}
        assert by_id["errors-ceased"]["status"] == "ok"
        assert by_id["errors-ceased"]["outputs"]["rule"] == "error-rate"
        assert by_id["errors-ceased"]["outputs"]["value"] < 0.05
        assert by_id["performance-restored"]["outputs"]["value"] < 2
        assert cluster.image() == CURRENT
