"""Conformance: resizing a Deployment mid-rollout, while paused, and pruning its history.

The ReplicaSet sizes asserted are the ones upstream's ``scale()``/``getReplicaSetFraction``
compute (worked out in each docstring), driven by real kubectl and read back with it or
with the Python client.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client, watch

from crystal_runbook import sandbox

from .conftest import Kubectl, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

NS = "crystal"
GOOD = "registry.local/maia:1.5.0"
CRASH = "registry.local/maia:1.6.0-crash"


def sizes(kubectl: Kubectl) -> dict[str, int]:
    """spec.replicas of each maia ReplicaSet, keyed by its image."""
    items = kubectl.json("get", "rs", "-l", "app=maia")["items"]
    return {
        rs["spec"]["template"]["spec"]["containers"][0]["image"]: rs["spec"]["replicas"]
        for rs in items
        if rs["spec"]["replicas"] > 0
    }


def settle(sb: sandbox.Sandbox, kubectl: Kubectl, want: dict[str, int]) -> dict[str, int]:
    """Wait until the ReplicaSets have the wanted sizes, then check they stay there."""
    wait_for(lambda: sizes(kubectl) == want, timeout=15, what=f"ReplicaSet sizes {want}")
    sb.settle()
    assert sizes(kubectl) == want
    return want


def stuck_rollout(sb: sandbox.Sandbox, kubectl: Kubectl) -> None:
    """10 replicas rolling to a crash image: maxSurge 3, maxUnavailable 2 leave it at 8 + 5.

    New RS created at 3 (13 - 10); old scaled to 8 (13 - 8 - 3 = 2 may go); new to 5;
    then 13 - 8 - 5 = 0: stuck.
    """
    kubectl.run("scale", "deployment/maia", "--replicas=10")
    kubectl.run("rollout", "status", "deployment/maia", "--timeout=20s")
    kubectl.run("set", "image", "deployment/maia", f"maia={CRASH}")
    settle(sb, kubectl, {GOOD: 8, CRASH: 5})


def pods_by_image(kubectl: Kubectl) -> dict[str, int]:
    out: dict[str, int] = {}
    for pod in kubectl.json("get", "pods", "-l", "app=maia")["items"]:
        if pod["metadata"].get("deletionTimestamp"):
            continue
        image = pod["spec"]["containers"][0]["image"]
        out[image] = out.get(image, 0) + 1
    return out


class TestProportionalScaling:
    """A resize during a stuck rollout keeps the old/new proportion (sync.go scale())."""

    def test_scale_up_mid_rollout(self, sb: sandbox.Sandbox, kubectl: Kubectl) -> None:
        """10 → 20: allowed 25, 12 to add; old 8·25/13 = 15.4 → 15, new 5·25/13 = 9.6 → 10."""
        stuck_rollout(sb, kubectl)
        kubectl.run("scale", "deployment/maia", "--replicas=20")
        settle(sb, kubectl, {GOOD: 15, CRASH: 10})
        wait_for(lambda: pods_by_image(kubectl) == {GOOD: 15, CRASH: 10}, what="25 pods")
        rs = kubectl.json("get", "rs", "-l", "app=maia")["items"]
        annotations = {
            r["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"]
            for r in rs
            if r["spec"]["replicas"]  # the empty revision 1 is not touched
        }
        assert annotations == {"25"}
        events = kubectl.run("get", "events", "--field-selector", "reason=ScalingReplicaSet").stdout
        assert "from 8 to 15" in events
        assert "from 5 to 10" in events

    def test_scale_down_mid_rollout_stays_within_surge(
        self, sb: sandbox.Sandbox, kubectl: Kubectl
    ) -> None:
        """20 → 5 from 15 + 10: allowed 7; old 15·7/25 = 4.2 → 4, new 10·7/25 = 2.8 → 3."""
        stuck_rollout(sb, kubectl)
        kubectl.run("scale", "deployment/maia", "--replicas=20")
        settle(sb, kubectl, {GOOD: 15, CRASH: 10})
        kubectl.run("scale", "deployment/maia", "--replicas=5")
        got = settle(sb, kubectl, {GOOD: 4, CRASH: 3})
        assert sum(got.values()) <= 5 + 2  # replicas + maxSurge (ceil 25 % of 5)
        wait_for(lambda: pods_by_image(kubectl) == {GOOD: 4, CRASH: 3}, what="7 pods")

    def test_paused_deployment_scales_both_replicasets(
        self, sb: sandbox.Sandbox, kubectl: Kubectl
    ) -> None:
        """Paused with two active ReplicaSets, 10 → 20 still gives 15 + 10 (sync() runs scale)."""
        stuck_rollout(sb, kubectl)
        kubectl.run("rollout", "pause", "deployment/maia")
        kubectl.run("scale", "deployment/maia", "--replicas=20")
        settle(sb, kubectl, {GOOD: 15, CRASH: 10})
        deployment = kubectl.json("get", "deployment", "maia")
        progressing = next(
            c for c in deployment["status"]["conditions"] if c["type"] == "Progressing"
        )
        assert progressing["reason"] == "DeploymentPaused"

    def test_python_client_scale_subresource(self, sb: sandbox.Sandbox, k8s: Any) -> None:
        """The same resize through PATCH .../scale, read back as ReplicaSets."""
        apps = client.AppsV1Api(k8s)
        apps.patch_namespaced_deployment_scale("maia", NS, {"spec": {"replicas": 10}})
        wait_for(
            lambda: (
                (apps.read_namespaced_deployment("maia", NS).status.available_replicas or 0) == 10
            ),
            what="10 available",
        )
        patch = {"spec": {"template": {"spec": {"containers": [{"name": "maia", "image": CRASH}]}}}}
        apps.patch_namespaced_deployment("maia", NS, patch)

        def by_image() -> dict[str, int]:
            return {
                rs.spec.template.spec.containers[0].image: rs.spec.replicas
                for rs in apps.list_namespaced_replica_set(NS, label_selector="app=maia").items
                if rs.spec.replicas
            }

        wait_for(lambda: by_image() == {GOOD: 8, CRASH: 5}, what="stuck at 8 + 5")
        apps.patch_namespaced_deployment_scale("maia", NS, {"spec": {"replicas": 20}})
        wait_for(lambda: by_image() == {GOOD: 15, CRASH: 10}, what="15 + 10")
        sb.settle()
        assert by_image() == {GOOD: 15, CRASH: 10}


class TestNewReplicaSetSize:
    """getNewReplicaSet creates the new ReplicaSet at its first size, not at 0."""

    def test_first_watch_event_has_the_surge_size(self, k8s: Any) -> None:
        """3 replicas, maxSurge 1: the new ReplicaSet's ADDED event already says 1."""
        apps = client.AppsV1Api(k8s)
        rv = apps.list_namespaced_replica_set(NS).metadata.resource_version
        apps.patch_namespaced_deployment(
            "maia",
            NS,
            {
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [{"name": "maia", "image": "registry.local/maia:1.6.0"}]
                        }
                    }
                }
            },
        )
        w = watch.Watch()
        for event in w.stream(
            apps.list_namespaced_replica_set, NS, resource_version=rv, timeout_seconds=5
        ):
            if event["type"] == "ADDED":
                rs = event["object"]
                w.stop()
                break
        else:
            raise AssertionError("no ReplicaSet was created")
        assert rs.spec.replicas == 1
        assert rs.metadata.annotations["deployment.kubernetes.io/desired-replicas"] == "3"


class TestHistoryPruning:
    """cleanupDeployment keeps revisionHistoryLimit old ReplicaSets, also for Recreate and paused."""

    def test_recreate_prunes_after_each_rollout(
        self, sb: sandbox.Sandbox, kubectl: Kubectl
    ) -> None:
        """Recreate with revisionHistoryLimit 1: after three more rollouts two ReplicaSets stay."""
        patch = {
            "spec": {
                "strategy": {"type": "Recreate", "rollingUpdate": None},
                "revisionHistoryLimit": 1,
            }
        }
        kubectl.run("patch", "deployment", "maia", "-p", json.dumps(patch))
        for version in ("1.6.0", "1.7.0", "1.8.0"):
            kubectl.run("set", "image", "deployment/maia", f"maia=registry.local/maia:{version}")
            kubectl.run("rollout", "status", "deployment/maia", "--timeout=20s")
        sb.settle()
        items = kubectl.json("get", "rs", "-l", "app=maia")["items"]
        images = sorted(r["spec"]["template"]["spec"]["containers"][0]["image"] for r in items)
        assert images == ["registry.local/maia:1.7.0", "registry.local/maia:1.8.0"]
        history = kubectl.run("rollout", "history", "deployment/maia").stdout
        assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["4", "5"]

    def test_paused_deployment_prunes_to_a_lowered_limit(
        self, sb: sandbox.Sandbox, kubectl: Kubectl
    ) -> None:
        """Paused, revisionHistoryLimit 10 → 0 deletes revision 1; --to-revision=1 then fails."""
        kubectl.run("rollout", "pause", "deployment/maia")
        kubectl.run("patch", "deployment", "maia", "-p", '{"spec":{"revisionHistoryLimit":0}}')
        wait_for(
            lambda: len(kubectl.json("get", "rs", "-l", "app=maia")["items"]) == 1, what="1 RS"
        )
        sb.settle()
        (rs,) = kubectl.json("get", "rs", "-l", "app=maia")["items"]
        assert rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
        kubectl.run("rollout", "resume", "deployment/maia")
        undo = kubectl.run("rollout", "undo", "deployment/maia", "--to-revision=1", check=False)
        assert undo.returncode == 1
        assert "unable to find specified revision 1 in history" in undo.stderr
