"""`scale`, `logs`, `health`, Lease locks and retries against the sandbox."""

from __future__ import annotations

import json
import signal
import time

import pytest

from crystal_runbook.sandbox import Fault
from tests.integration.kube.conftest import TERMINATION, Cluster, wait_until

pytestmark = pytest.mark.integration


@TERMINATION
class TestScale:
    def test_scale_waits_for_available_replicas_and_repeats_as_no_change(
        self, cluster: Cluster
    ) -> None:
        """Replicas reach the target and are available; a second run changes nothing."""
        out = cluster.cli("scale", "maia", "--replicas", "6", "-o", "json")
        assert out.returncode == 0, out.stderr
        dep = cluster.deployment()
        assert dep["spec"]["replicas"] == 6
        assert dep["status"]["availableReplicas"] == 6
        assert json.loads(out.stdout)["steps"][0]["outputs"]["from_replicas"] == 3
        before = cluster.request_count()
        again = json.loads(cluster.cli("scale", "maia", "--replicas", "6", "-o", "json").stdout)
        assert again["steps"][0]["changed"] is False
        assert cluster.mutations(before) == []

    def test_hpa_bounds_warn_or_adjust(self, cluster: Cluster) -> None:
        """An HPA with maxReplicas 4 would undo a scale to 8: warn; --hpa adjust raises minReplicas."""
        hpa = {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "maia", "namespace": "crystal"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "maia"},
                "minReplicas": 2,
                "maxReplicas": 4,
            },
        }
        cluster.kubectl("apply", "-f", "-", stdin=json.dumps(hpa))
        plan = cluster.cli("scale", "maia", "--replicas", "8", "--dry-run")
        assert (
            "HorizontalPodAutoscaler maia keeps replicas within 2..4 and will undo this"
            in plan.stdout
        )
        raised = cluster.cli("scale", "maia", "--replicas", "3", "--hpa", "adjust")
        assert raised.returncode == 0, raised.stderr
        got = json.loads(cluster.kubectl("get", "hpa", "maia", "-o", "json").stdout)
        assert got["spec"]["minReplicas"] == 2  # 3 is within 2..4: nothing to adjust
        raised = cluster.cli("scale", "maia", "--replicas", "6", "--hpa", "adjust", "-o", "json")
        assert raised.returncode == 0, raised.stderr
        got = json.loads(cluster.kubectl("get", "hpa", "maia", "-o", "json").stdout)
        assert got["spec"]["minReplicas"] == 4

    @pytest.mark.parametrize(
        ("replicas", "code", "message"),
        [
            ("1001", 2, "--replicas 1001 is more than 1000"),
            ("-1", 2, "below its minimum 0"),
            ("many", 2, "'many' is not a valid int"),
        ],
    )
    def test_bad_replica_counts_are_refused(
        self, cluster: Cluster, replicas: str, code: int, message: str
    ) -> None:
        """Over 1000 needs --force; negative and non-numbers are bad input."""
        before = cluster.request_count()
        out = cluster.cli("scale", "maia", "--replicas", replicas)
        assert out.returncode == code
        assert message in out.stdout + out.stderr
        assert cluster.mutations(before) == []


@TERMINATION
class TestLogsAndHealth:
    def test_logs_prefix_every_pod_and_grep(self, cluster: Cluster) -> None:
        """One call shows every pod's lines, prefixed, filtered by --grep."""
        time.sleep(0.5)  # let the pods write a few lines
        out = cluster.cli("logs", "maia", "--tail", "3")
        assert out.returncode == 0, out.stderr
        pods = {line.split("/", 1)[0] for line in out.stdout.splitlines()}
        assert len(pods) == 3
        grepped = cluster.cli("logs", "maia", "--grep", "request served")
        assert grepped.stdout
        assert all("request served" in line for line in grepped.stdout.splitlines())
        bad = cluster.cli("logs", "maia", "--grep", "([unclosed")
        assert bad.returncode == 2
        assert "--grep: not a regular expression" in bad.stderr

    def test_follow_picks_up_the_pods_of_a_rollout(self, cluster: Cluster) -> None:
        """`logs -f` keeps going across a rollback and shows lines of the new pods."""
        old_pods = set(
            cluster.kubectl("get", "pods", "-l", "app=maia", "-o", "name").stdout.split()
        )
        proc = cluster.popen("logs", "maia", "-f", "--tail", "1")
        try:
            time.sleep(1.0)
            assert cluster.cli("rollback", "maia").returncode == 0
            new_pods = wait_until(
                lambda: (
                    set(
                        cluster.kubectl(
                            "get", "pods", "-l", "app=maia", "-o", "name"
                        ).stdout.split()
                    )
                    - old_pods
                )
            )
            time.sleep(1.5)
        finally:
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=15)
        seen = {line.split("/", 1)[0] for line in out.splitlines() if "/" in line}
        assert {p.removeprefix("pod/") for p in new_pods} & seen, err
        assert proc.returncode == 0, err

    def test_health_reports_url_and_rollout_and_fails_on_a_stuck_rollout(
        self, cluster: Cluster
    ) -> None:
        """Exit 0 healthy; exit 1 when the rollout is stuck, with JSON saying why."""
        ok = cluster.cli("health", "maia", "-o", "json")
        assert ok.returncode == 0, ok.stderr
        report = json.loads(ok.stdout)
        assert report["healthy"] is True
        assert {c["name"] for c in report["checks"]} == {"health_url", "deployment"}
        cluster.kubectl("set", "image", "deployment/maia", "maia=registry.local/maia:9.9.9-crash")
        bad = cluster.cli("health", "maia", "-o", "json")
        assert bad.returncode == 1
        deployment = next(c for c in json.loads(bad.stdout)["checks"] if c["name"] == "deployment")
        assert deployment["ok"] is False


class TestLocks:
    def test_a_lease_held_from_another_machine_refuses_with_exit_3(self, cluster: Cluster) -> None:
        """Two engineers, two machines, one cluster: the second exits 3 and names the first."""
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": "crystal-runbook-maia-sandbox",
                "namespace": "crystal",
                "annotations": {
                    "crystal-runbook.io/run-id": "aaaabbbbcccc",
                    "crystal-runbook.io/actor": "alice",
                    "crystal-runbook.io/host": "laptop-alice",
                    "crystal-runbook.io/acquired-at": now,
                },
            },
            "spec": {
                "holderIdentity": "aaaabbbbcccc alice@laptop-alice",
                "leaseDurationSeconds": 30,
                "acquireTime": now,
                "renewTime": now,
            },
        }
        cluster.kubectl("apply", "-f", "-", stdin=json.dumps(lease))
        out = cluster.cli("rollback", "maia")
        assert out.returncode == 3
        assert "held by run aaaabbbbcccc (actor alice on laptop-alice" in out.stderr
        assert cluster.image() == "registry.local/maia:1.5.0"

    def test_an_expired_lease_is_taken_over_and_ours_is_released(self, cluster: Cluster) -> None:
        """A lease not renewed for longer than its duration is stale: take it, warn, release."""
        old = "2020-01-01T00:00:00.000000Z"
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": "crystal-runbook-maia-sandbox",
                "namespace": "crystal",
                "annotations": {
                    "crystal-runbook.io/run-id": "deadbeef0000",
                    "crystal-runbook.io/actor": "bob",
                    "crystal-runbook.io/host": "gone",
                },
            },
            "spec": {
                "holderIdentity": "deadbeef0000 bob@gone",
                "leaseDurationSeconds": 30,
                "acquireTime": old,
                "renewTime": old,
            },
        }
        cluster.kubectl("apply", "-f", "-", stdin=json.dumps(lease))
        out = cluster.cli("rollback", "maia")
        assert out.returncode == 0, out.stderr
        assert "took over stale lock 'maia/sandbox' from run deadbeef0000" in out.stderr
        leases = cluster.kubectl("get", "leases", "-o", "name").stdout
        assert "crystal-runbook-maia-sandbox" not in leases

    def test_a_free_lease_is_taken_in_one_request(self, cluster: Cluster) -> None:
        """No Lease yet: one POST creates it, with no read first (the rollback's critical path)."""
        since = cluster.request_count()
        out = cluster.cli("rollback", "maia")
        assert out.returncode == 0, out.stderr
        leases = [
            (r["method"], r["status"])
            for r in cluster.sb.requests()[since:]
            if "/leases" in r["path"]
        ]
        assert leases[0] == ("POST", 201)
        assert [m for m, _ in leases].count("POST") == 1

    def test_the_lease_exists_while_the_run_holds_it(self, cluster: Cluster) -> None:
        """During a rollback the Lease names the run; afterwards it is gone."""
        cluster.sb.ready_delay = 2.0
        proc = cluster.popen("rollback", "maia", "-o", "json")
        lease = wait_until(
            lambda: (
                cluster.kubectl(
                    "get", "lease", "crystal-runbook-maia-sandbox", "-o", "json", check=False
                ).stdout
            )
        )
        holder = json.loads(lease)["spec"]["holderIdentity"]
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert holder.startswith(json.loads(out)["id"] + " oncall@")
        assert (
            cluster.kubectl("get", "lease", "crystal-runbook-maia-sandbox", check=False).returncode
            != 0
        )


class TestRetries:
    def test_429_and_500_are_retried_and_the_rollback_completes(self, cluster: Cluster) -> None:
        """Rate limits and server errors from the API are retried within the step's time."""
        cluster.sb.faults.add(
            Fault(kind="status", status=429, path="/deployments/maia$", count=2, retry_after=0.2)
        )
        cluster.sb.faults.add(Fault(kind="status", status=500, path="/replicasets", count=2))
        out = cluster.cli("rollback", "maia")
        assert out.returncode == 0, out.stdout + out.stderr
        assert cluster.image() == "registry.local/maia:1.4.2"
        statuses = [r["status"] for r in cluster.sb.requests()]
        assert statuses.count(429) == 2
        assert statuses.count(500) == 2

    def test_403_is_not_retried(self, cluster: Cluster) -> None:
        """A permission error fails at once with an RBAC hint."""
        cluster.sb.faults.add(Fault(kind="status", status=403, path="/deployments/maia$"))
        started = time.monotonic()
        out = cluster.cli("rollback", "maia")
        assert out.returncode == 1
        assert "403" in out.stdout
        assert "RBAC" in out.stdout
        assert time.monotonic() - started < 10
        # once by each step that reads the Deployment in the preflight (undo, legacy-mode):
        # each check asked once, none retried
        assert [r["status"] for r in cluster.sb.requests()].count(403) == 2


class TestSetEnv:
    def test_plan_masks_secret_looking_values_and_apply_is_idempotent(
        self, cluster: Cluster
    ) -> None:
        """`k8s.set_env` shows old -> new, masks API_TOKEN-like values, and repeats as no change."""
        runbooks = cluster.root / "own-runbooks"
        runbooks.mkdir()
        (runbooks / "set-token.yaml").write_text(
            "apiVersion: crystal-runbook/v1\nkind: Runbook\nname: set-token\n"
            "params:\n  service: {type: string, required: true}\n"
            "steps:\n  - id: env\n    uses: k8s.set_env\n"
            "    with: {env: {API_TOKEN: s3cr3t-value-77, CRYSTAL_WEIGHT: '0.5'}}\n"
        )
        plan = cluster.cli("--runbooks", str(runbooks), "plan", "set-token", "-p", "service=maia")
        assert plan.returncode == 0, plan.stderr
        assert "env[maia].API_TOKEN: ***** -> *****" in plan.stdout
        assert "env[maia].CRYSTAL_WEIGHT: '0.3' -> '0.5'" in plan.stdout
        assert "s3cr3t-value-77" not in plan.stdout
        done = cluster.cli(
            "--runbooks", str(runbooks), "run", "set-token", "-p", "service=maia", "-o", "json"
        )
        assert done.returncode == 0, done.stderr
        assert "s3cr3t-value-77" not in done.stdout + done.stderr
        assert cluster.env_var("API_TOKEN") == "s3cr3t-value-77"
        assert cluster.env_var("CRYSTAL_WEIGHT") == "0.5"
        before = cluster.request_count()
        again = json.loads(
            cluster.cli(
                "--runbooks", str(runbooks), "run", "set-token", "-p", "service=maia", "-o", "json"
            ).stdout
        )
        assert again["steps"][0]["changed"] is False
        assert cluster.mutations(before) == []
