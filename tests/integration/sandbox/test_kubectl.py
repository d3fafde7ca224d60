"""Conformance: real kubectl 1.37 against the sandbox, checked by the objects it leaves.

Each test drives kubectl as an operator would and then reads the resulting objects (template
image, revision annotations, replica counts, pod readiness), not only exit codes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from crystal_runbook import sandbox

from .conftest import Kubectl, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

REVISION = "deployment.kubernetes.io/revision"


def image_of(obj: dict[str, Any]) -> str:
    return str(obj["spec"]["template"]["spec"]["containers"][0]["image"])


def replicasets(kubectl: Kubectl) -> dict[str, dict[str, Any]]:
    """The maia ReplicaSets keyed by their revision annotation."""
    items = kubectl.json("get", "rs", "-l", "app=maia")["items"]
    return {rs["metadata"]["annotations"][REVISION]: rs for rs in items}


def ready_pods(kubectl: Kubectl, selector: str = "app=maia") -> list[dict[str, Any]]:
    """Pods that serve: Ready and not terminating (a terminating pod stays Ready during its
    grace period, as on a real cluster)."""
    pods = kubectl.json("get", "pods", "-l", selector)["items"]
    return [
        p
        for p in pods
        if not p["metadata"].get("deletionTimestamp")
        and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in p["status"].get("conditions", [])
        )
    ]


class TestGet:
    """kubectl get, in table, JSON and jsonpath forms."""

    def test_table_output_has_the_usual_columns(self, kubectl: Kubectl) -> None:
        """`get deploy,rs,pods` prints server-side tables with READY/UP-TO-DATE/STATUS."""
        out = kubectl.run("get", "deploy,rs,pods").stdout
        assert "READY   UP-TO-DATE   AVAILABLE" in out
        assert "deployment.apps/maia   3/3" in out
        assert out.count("Running") == 3
        assert "DESIRED   CURRENT   READY" in out

    def test_json_and_jsonpath(self, kubectl: Kubectl) -> None:
        """`-o json` is the stored object; `-o jsonpath` picks fields out of it."""
        deployment = kubectl.json("get", "deployment", "maia")
        assert image_of(deployment) == "registry.local/maia:1.5.0"
        assert deployment["metadata"]["annotations"][REVISION] == "2"
        assert deployment["metadata"]["generation"] == 2
        assert deployment["status"]["observedGeneration"] == 2
        env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        assert {e["name"]: e["value"] for e in env} == {
            "CRYSTAL_MODE": "hybrid",
            "CRYSTAL_WEIGHT": "0.3",
        }
        path = "{.spec.replicas}/{.status.readyReplicas}"
        assert kubectl.run("get", "deploy", "maia", "-o", f"jsonpath={path}").stdout == "3/3"

    def test_label_and_field_selectors(self, kubectl: Kubectl) -> None:
        """-l with set-based requirements and --field-selector filter on the server."""
        assert (
            len(kubectl.json("get", "pods", "-l", "app in (maia,other),tier notin (db)")["items"])
            == 3
        )
        assert kubectl.json("get", "pods", "-l", "app!=maia")["items"] == []
        running = kubectl.json("get", "pods", "--field-selector", "status.phase=Running")["items"]
        assert len(running) == 3
        assert (
            kubectl.json("get", "pods", "--field-selector", "status.phase=Pending")["items"] == []
        )
        name = running[0]["metadata"]["name"]
        one = kubectl.json("get", "pods", "--field-selector", f"metadata.name={name}")["items"]
        assert [p["metadata"]["name"] for p in one] == [name]

    def test_missing_object_is_a_not_found_error(self, kubectl: Kubectl) -> None:
        """A GET of an unknown name fails with kubectl's NotFound message."""
        proc = kubectl.run("get", "deployment", "nope", check=False)
        assert proc.returncode == 1
        assert 'deployments.apps "nope" not found' in proc.stderr


class TestApply:
    """kubectl apply (client-side, validated on the server) creates and then patches."""

    MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: registry.local/web:IMAGE
        env: [{name: A, value: "1"}]
"""

    def test_apply_creates_then_updates(self, kubectl: Kubectl, tmp_path: Path) -> None:
        """The second apply changes the image: generation 2, a second ReplicaSet, new pods."""
        manifest = tmp_path / "web.yaml"
        manifest.write_text(self.MANIFEST.replace("IMAGE", "1.0"))
        assert "deployment.apps/web created" in kubectl.run("apply", "-f", str(manifest)).stdout
        kubectl.run("rollout", "status", "deployment/web", "--timeout=20s")
        manifest.write_text(self.MANIFEST.replace("IMAGE", "1.1"))
        assert "configured" in kubectl.run("apply", "-f", str(manifest)).stdout
        kubectl.run("rollout", "status", "deployment/web", "--timeout=20s")
        web = kubectl.json("get", "deployment", "web")
        assert image_of(web) == "registry.local/web:1.1"
        assert web["metadata"]["generation"] == 2
        assert web["metadata"]["annotations"][REVISION] == "2"
        applied = json.loads(
            web["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
        )
        assert image_of(applied) == "registry.local/web:1.1"
        revisions = {
            rs["metadata"]["annotations"][REVISION]: rs
            for rs in kubectl.json("get", "rs", "-l", "app=web")["items"]
        }
        assert revisions["1"]["spec"]["replicas"] == 0
        assert revisions["2"]["spec"]["replicas"] == 2
        assert len(ready_pods(kubectl, "app=web")) == 2
        unchanged = kubectl.run("apply", "-f", str(manifest)).stdout
        assert "unchanged" in unchanged
        assert kubectl.json("get", "deployment", "web")["metadata"]["generation"] == 2


class TestRollouts:
    """set image/env, rollout status/history/undo/pause/resume."""

    def test_set_image_then_status_returns_once_ready(self, kubectl: Kubectl) -> None:
        """rollout status waits (by watch) until every new pod is Ready."""
        kubectl.run("set", "image", "deployment/maia", "maia=registry.local/maia:1.6.0")
        out = kubectl.run("rollout", "status", "deployment/maia", "--timeout=20s").stdout
        assert 'deployment "maia" successfully rolled out' in out
        deployment = kubectl.json("get", "deployment", "maia")
        assert image_of(deployment) == "registry.local/maia:1.6.0"
        assert deployment["metadata"]["annotations"][REVISION] == "3"
        status = deployment["status"]
        assert (status["replicas"], status["updatedReplicas"], status["readyReplicas"]) == (3, 3, 3)
        rs = replicasets(kubectl)
        assert rs["3"]["spec"]["replicas"] == 3
        assert image_of(rs["3"]) == "registry.local/maia:1.6.0"
        assert rs["2"]["spec"]["replicas"] == 0
        assert rs["1"]["spec"]["replicas"] == 0
        pods = ready_pods(kubectl)
        assert len(pods) == 3
        assert {p["spec"]["containers"][0]["image"] for p in pods} == {"registry.local/maia:1.6.0"}
        progressing = {c["type"]: c for c in status["conditions"]}["Progressing"]
        assert progressing["reason"] == "NewReplicaSetAvailable"

    def test_set_env_rolls_out_a_new_revision(self, kubectl: Kubectl) -> None:
        """set env merges by name (strategic merge) and makes a new revision."""
        kubectl.run("set", "env", "deployment/maia", "CRYSTAL_MODE=legacy")
        kubectl.run("rollout", "status", "deployment/maia", "--timeout=20s")
        deployment = kubectl.json("get", "deployment", "maia")
        env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        assert env == [
            {"name": "CRYSTAL_MODE", "value": "legacy"},
            {"name": "CRYSTAL_WEIGHT", "value": "0.3"},
        ]
        assert deployment["metadata"]["annotations"][REVISION] == "3"
        modes = {p["spec"]["containers"][0]["env"][0]["value"] for p in ready_pods(kubectl)}
        assert modes == {"legacy"}

    def test_crash_image_fails_with_the_progress_deadline(self, kubectl: Kubectl) -> None:
        """A -crash image never gets Ready: status ends with ProgressDeadlineExceeded."""
        kubectl.run("patch", "deployment", "maia", "-p", '{"spec":{"progressDeadlineSeconds":2}}')
        kubectl.run("set", "image", "deployment/maia", "maia=registry.local/maia:1.6.0-crash")
        started = time.monotonic()
        proc = kubectl.run("rollout", "status", "deployment/maia", "--timeout=20s", check=False)
        elapsed = time.monotonic() - started
        assert proc.returncode == 1
        assert 'deployment "maia" exceeded its progress deadline' in proc.stderr
        assert 1.5 < elapsed < 8
        deployment = kubectl.json("get", "deployment", "maia")
        conditions = {c["type"]: c for c in deployment["status"]["conditions"]}
        assert conditions["Progressing"]["status"] == "False"
        assert conditions["Progressing"]["reason"] == "ProgressDeadlineExceeded"
        assert deployment["status"]["readyReplicas"] == 3  # the old pods still serve
        crashing = [
            p
            for p in kubectl.json("get", "pods", "-l", "app=maia")["items"]
            if p["spec"]["containers"][0]["image"].endswith("-crash")
        ]
        assert len(crashing) == 1  # maxSurge 1, maxUnavailable 0: the rollout is stuck
        status = crashing[0]["status"]["containerStatuses"][0]
        assert status["ready"] is False
        assert status["restartCount"] >= 1
        assert status["lastState"]["terminated"]["exitCode"] == 1
        # the container alternates between a short run and a growing back-off
        wait_for(lambda: "CrashLoopBackOff" in kubectl.run("get", "pods").stdout, what="back-off")
        events = kubectl.run("get", "events", "--field-selector", "type=Warning").stdout
        assert "BackOff" in events
        assert "ProgressDeadlineExceeded" not in events  # upstream only sets the condition

    def test_undo_of_a_stuck_rollout(self, kubectl: Kubectl) -> None:
        """After ProgressDeadlineExceeded, undo returns to revision 2's pods and completes."""
        kubectl.run("patch", "deployment", "maia", "-p", '{"spec":{"progressDeadlineSeconds":1}}')
        kubectl.run("set", "image", "deployment/maia", "maia=registry.local/maia:1.6.0-crash")
        stuck = kubectl.run("rollout", "status", "deployment/maia", "--timeout=20s", check=False)
        assert "exceeded its progress deadline" in stuck.stderr
        kubectl.run("rollout", "undo", "deployment/maia")
        out = kubectl.run("rollout", "status", "deployment/maia", "--timeout=20s").stdout
        assert 'deployment "maia" successfully rolled out' in out
        deployment = kubectl.json("get", "deployment", "maia")
        assert image_of(deployment) == "registry.local/maia:1.5.0"
        assert deployment["metadata"]["annotations"][REVISION] == "4"
        rs = replicasets(kubectl)
        assert image_of(rs["3"]).endswith("-crash")
        assert rs["3"]["spec"]["replicas"] == 0
        assert rs["4"]["spec"]["replicas"] == 3
        assert (
            rs["4"]["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "2"
        )
        conditions = {c["type"]: c for c in deployment["status"]["conditions"]}
        assert conditions["Progressing"]["reason"] == "NewReplicaSetAvailable"
        wait_for(lambda: len(kubectl.json("get", "pods")["items"]) == 3, what="crash pod removed")

    def test_bad_image_rolls_out_but_burns(self, kubectl: Kubectl, sb: sandbox.Sandbox) -> None:
        """A -bad image passes readiness (rollout succeeds) and then fails its users."""
        kubectl.run("set", "image", "deployment/maia", "maia=registry.local/maia:1.6.0-bad")
        out = kubectl.run("rollout", "status", "deployment/maia", "--timeout=20s").stdout
        assert "successfully rolled out" in out
        assert len(ready_pods(kubectl)) == 3
        time.sleep(1.1)  # the fixture's burn ramp is 1 s
        health = kubectl.run(
            "get", "--raw", "/api/v1/namespaces/crystal/services/maia/proxy/health", check=False
        )
        assert health.returncode == 1  # 503 from the burning pod
        metrics = kubectl.run("get", "--raw", "/_sandbox/services/crystal/maia/metrics").stdout
        values = dict(
            line.split(" ", 1) for line in metrics.splitlines() if line and not line.startswith("#")
        )
        assert float(values["http_error_ratio"]) == pytest.approx(0.12)
        assert float(values["http_latency_p99_seconds"]) == pytest.approx(3.0)
        assert float(values["coherence_ratio"]) == pytest.approx(0.3)
        assert float(values["db_connections_in_use"]) == 98

    def test_history_and_undo_to_previous_revision(self, kubectl: Kubectl) -> None:
        """undo goes back to revision 1's template; its ReplicaSet is reused as revision 3."""
        history = kubectl.run("rollout", "history", "deployment/maia").stdout
        assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["1", "2"]
        assert "rolled back" in kubectl.run("rollout", "undo", "deployment/maia").stdout
        kubectl.run("rollout", "status", "deployment/maia", "--timeout=20s")
        deployment = kubectl.json("get", "deployment", "maia")
        assert image_of(deployment) == "registry.local/maia:1.4.2"
        assert deployment["metadata"]["annotations"][REVISION] == "3"
        rs = replicasets(kubectl)
        assert set(rs) == {"2", "3"}  # revision 1's ReplicaSet is now revision 3
        assert image_of(rs["3"]) == "registry.local/maia:1.4.2"
        assert (
            rs["3"]["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "1"
        )
        assert rs["3"]["spec"]["replicas"] == 3
        assert rs["2"]["spec"]["replicas"] == 0
        assert {p["spec"]["containers"][0]["image"] for p in ready_pods(kubectl)} == {
            "registry.local/maia:1.4.2"
        }

    def test_undo_to_revision(self, kubectl: Kubectl) -> None:
        """--to-revision picks an older revision than the previous one."""
        kubectl.run("set", "image", "deployment/maia", "maia=registry.local/maia:1.6.0")
        kubectl.run("rollout", "status", "deployment/maia", "--timeout=20s")
        kubectl.run("rollout", "undo", "deployment/maia", "--to-revision=1")
        kubectl.run("rollout", "status", "deployment/maia", "--timeout=20s")
        deployment = kubectl.json("get", "deployment", "maia")
        assert image_of(deployment) == "registry.local/maia:1.4.2"
        assert deployment["metadata"]["annotations"][REVISION] == "4"
        assert set(replicasets(kubectl)) == {"2", "3", "4"}
        again = kubectl.run("rollout", "undo", "deployment/maia", "--to-revision=4", check=False)
        assert "skipped rollback" in again.stdout + again.stderr

    def test_pause_holds_changes_and_resume_rolls_them_out(self, kubectl: Kubectl) -> None:
        """While paused a template change makes no ReplicaSet; undo is refused; resume rolls."""
        kubectl.run("rollout", "pause", "deployment/maia")
        kubectl.run("set", "image", "deployment/maia", "maia=registry.local/maia:1.7.0")
        time.sleep(0.3)
        assert set(replicasets(kubectl)) == {"1", "2"}
        conditions = {
            c["type"]: c for c in kubectl.json("get", "deploy", "maia")["status"]["conditions"]
        }
        assert conditions["Progressing"]["reason"] == "DeploymentPaused"
        refused = kubectl.run("rollout", "undo", "deployment/maia", check=False)
        assert refused.returncode == 1
        assert "cannot rollback a paused deployment" in refused.stderr
        kubectl.run("rollout", "resume", "deployment/maia")
        kubectl.run("rollout", "status", "deployment/maia", "--timeout=20s")
        rs = replicasets(kubectl)
        assert image_of(rs["3"]) == "registry.local/maia:1.7.0"
        assert rs["3"]["spec"]["replicas"] == 3


class TestScaleLogsDelete:
    """scale, logs (plain, follow, by label with prefix) and delete."""

    def test_scale(self, kubectl: Kubectl) -> None:
        """scale patches /scale; the ReplicaSet and the Ready pods follow."""
        assert "scaled" in kubectl.run("scale", "deployment/maia", "--replicas=5").stdout
        kubectl.run("rollout", "status", "deployment/maia", "--timeout=20s")
        assert kubectl.json("get", "deploy", "maia")["spec"]["replicas"] == 5
        assert replicasets(kubectl)["2"]["spec"]["replicas"] == 5
        assert len(ready_pods(kubectl)) == 5
        kubectl.run("scale", "deployment/maia", "--replicas=2")
        wait_for(
            lambda: len(kubectl.json("get", "pods", "-l", "app=maia")["items"]) == 2,
            what="scale down",
        )

    def test_logs_of_a_deployment(self, kubectl: Kubectl) -> None:
        """logs deployment/maia prints one pod's JSON lines; --tail limits them."""
        time.sleep(0.5)
        lines = kubectl.run("logs", "deployment/maia", "--tail=2").stdout.splitlines()
        assert len(lines) == 2
        for line in lines:
            record = json.loads(line)
            assert {"time", "level", "msg"} <= set(record)
        first = json.loads(kubectl.run("logs", "deployment/maia").stdout.splitlines()[0])
        assert first["msg"] == "starting maia 1.5.0"

    def test_logs_follow_ends_on_request_timeout(self, kubectl: Kubectl) -> None:
        """logs -f streams new lines until --request-timeout ends it."""
        started = time.monotonic()
        proc = kubectl.run(
            "logs",
            "-f",
            "deployment/maia",
            "--tail=0",
            "--request-timeout=2s",
            check=False,
            timeout=15,
        )
        elapsed = time.monotonic() - started
        assert 1.8 < elapsed < 6
        lines = [json.loads(line) for line in proc.stdout.splitlines()]
        assert len(lines) >= 3  # about 3 lines a second, written while following
        assert all(line["level"] in ("info", "warn", "error") for line in lines)

    def test_logs_by_label_with_prefix(self, kubectl: Kubectl) -> None:
        """logs -l app=maia --prefix reads every pod, each line prefixed with its pod."""
        out = kubectl.run("logs", "-l", "app=maia", "--prefix", "--tail=1").stdout
        prefixes = {line.split(" ", 1)[0] for line in out.splitlines()}
        pods = {
            p["metadata"]["name"] for p in kubectl.json("get", "pods", "-l", "app=maia")["items"]
        }
        assert prefixes == {f"[pod/{name}/maia]" for name in pods}

    def test_delete_deployment_cascades(self, kubectl: Kubectl) -> None:
        """delete sends DeleteOptions; the garbage collector removes ReplicaSets and pods."""
        assert "deleted" in kubectl.run("delete", "deployment", "maia").stdout
        wait_for(lambda: kubectl.json("get", "rs")["items"] == [], what="ReplicaSets collected")
        wait_for(lambda: kubectl.json("get", "pods")["items"] == [], what="pods collected")
        assert kubectl.run("get", "deployment", "maia", check=False).returncode == 1

    def test_deleted_pod_is_replaced(self, kubectl: Kubectl) -> None:
        """Deleting a pod makes its ReplicaSet create another, which becomes Ready."""
        victim = kubectl.json("get", "pods")["items"][0]["metadata"]["name"]
        kubectl.run("delete", "pod", victim)
        wait_for(
            lambda: (
                len(ready_pods(kubectl)) == 3
                and victim not in {p["metadata"]["name"] for p in ready_pods(kubectl)}
            ),
            what="a replacement pod",
        )

    def test_server_side_dry_run_changes_nothing(self, kubectl: Kubectl) -> None:
        """--dry-run=server answers with the would-be object and stores nothing."""
        before = kubectl.json("get", "deployment", "maia")
        out = kubectl.json(
            "set", "image", "deployment/maia", "maia=registry.local/maia:9.9.9", "--dry-run=server"
        )
        assert image_of(out) == "registry.local/maia:9.9.9"
        after = kubectl.json("get", "deployment", "maia")
        assert image_of(after) == image_of(before)
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
