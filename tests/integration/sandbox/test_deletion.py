"""Conformance: graceful deletion, finalizers and foreground/background propagation.

A deleted pod shows Terminating (``deletionTimestamp``, ``deletionGracePeriodSeconds``)
until its container has stopped; a finalizer holds any object until it is removed;
Foreground deletion keeps the owner until its dependents are gone; Recreate waits for
the old pods to be gone. Seen through watches, real kubectl and the Python client.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from kubernetes import client, watch

from crystal_runbook import sandbox

from .conftest import Kubectl, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

NS = "crystal"


def pod_events(k8s: Any, rv: str, seconds: float, out: list[tuple[str, str, Any]]) -> None:
    """Collect (type, pod name, object) of pod events after ``rv`` for ``seconds``."""
    core = client.CoreV1Api(k8s)
    w = watch.Watch()
    for event in w.stream(
        core.list_namespaced_pod,
        NS,
        resource_version=rv,
        label_selector="app=maia",
        timeout_seconds=int(seconds),
    ):
        out.append((event["type"], event["object"].metadata.name, event["object"]))


class TestGracefulPods:
    """Pods terminate for the time their container takes to stop (bounded by the grace)."""

    def test_rollout_shows_terminating_pods_in_a_watch(
        self, sb: sandbox.Sandbox, k8s: Any, kubectl: Kubectl
    ) -> None:
        """Each old pod is MODIFIED with a deletionTimestamp before its DELETED event."""
        sb.config.update({"shutdown_seconds": 0.5})
        core = client.CoreV1Api(k8s)
        old = {p.metadata.name for p in core.list_namespaced_pod(NS).items}
        rv = core.list_namespaced_pod(NS).metadata.resource_version
        seen: list[tuple[str, str, Any]] = []
        watcher = threading.Thread(target=pod_events, args=(k8s, rv, 4, seen))
        watcher.start()
        kubectl.run("set", "image", "deployment/maia", "maia=registry.local/maia:1.6.0")
        kubectl.run("rollout", "status", "deployment/maia", "--timeout=20s")
        watcher.join()
        for name in old:
            mine = [(kind, obj) for kind, n, obj in seen if n == name]
            terminating = [
                i for i, (kind, obj) in enumerate(mine) if obj.metadata.deletion_timestamp
            ]
            deleted = [i for i, (kind, _) in enumerate(mine) if kind == "DELETED"]
            assert terminating, f"{name} never showed Terminating"
            assert deleted, f"{name} was never deleted"
            assert terminating[0] < deleted[0]
            first = mine[terminating[0]][1]
            assert first.metadata.deletion_grace_period_seconds == 30
            assert first.status.phase == "Running"  # still draining
            assert mine[deleted[0]][1].status.phase == "Succeeded"  # exited 0 on SIGTERM
        killing = kubectl.run("get", "events", "--field-selector", "reason=Killing").stdout
        assert killing.count("Stopping container maia") == 3

    def test_grace_period_bounds_the_shutdown(self, sb: sandbox.Sandbox, kubectl: Kubectl) -> None:
        """A container slower than --grace-period=1 is killed at 1 s with exit code 137."""
        sb.config.update({"shutdown_seconds": 30})
        name = kubectl.json("get", "pods")["items"][0]["metadata"]["name"]
        kubectl.run("patch", "pod", name, "-p", '{"metadata":{"finalizers":["test/hold"]}}')
        started = time.monotonic()
        kubectl.run("delete", "pod", name, "--grace-period=1", "--wait=false")
        pod = kubectl.json("get", "pod", name)
        assert pod["metadata"]["deletionGracePeriodSeconds"] == 1
        assert "Terminating" in kubectl.run("get", "pod", name).stdout

        def terminated() -> Any:
            found = kubectl.json("get", "pod", name)
            return found if found["status"]["phase"] == "Failed" else None

        done = wait_for(terminated, timeout=5, what="killed at the grace period")
        assert 0.9 < time.monotonic() - started < 4
        state = done["status"]["containerStatuses"][0]["state"]["terminated"]
        assert (state["exitCode"], state["reason"]) == (137, "Error")
        patch = '[{"op":"remove","path":"/metadata/finalizers"}]'
        kubectl.run("patch", "pod", name, "--type=json", "-p", patch)
        assert kubectl.run("get", "pod", name, check=False).returncode == 1

    def test_force_delete_is_immediate(self, kubectl: Kubectl) -> None:
        """--grace-period=0 --force removes the pod in the same request."""
        name = kubectl.json("get", "pods")["items"][0]["metadata"]["name"]
        kubectl.run("delete", "pod", name, "--grace-period=0", "--force", "--wait=false")
        assert kubectl.run("get", "pod", name, check=False).returncode == 1


class TestFinalizers:
    """A finalizer holds the object, pods included, until it is removed."""

    def test_finalizer_holds_a_pod_until_removed(self, sb: sandbox.Sandbox, k8s: Any) -> None:
        """The pod stops and reaches Succeeded, but stays listed until the finalizer goes."""
        core = client.CoreV1Api(k8s)
        name = core.list_namespaced_pod(NS).items[0].metadata.name
        core.patch_namespaced_pod(name, NS, {"metadata": {"finalizers": ["example.com/hold"]}})
        core.delete_namespaced_pod(name, NS)
        held = wait_for(
            lambda: (p := core.read_namespaced_pod(name, NS)).status.phase == "Succeeded" and p,
            what="the container to stop",
        )
        assert held.metadata.deletion_timestamp is not None
        assert held.metadata.finalizers == ["example.com/hold"]
        sb.settle()
        assert core.read_namespaced_pod(name, NS).metadata.finalizers == ["example.com/hold"]
        names = {p.metadata.name for p in core.list_namespaced_pod(NS).items}
        assert name in names
        assert len(names) == 4  # the ReplicaSet already replaced it
        core.patch_namespaced_pod(name, NS, [{"op": "remove", "path": "/metadata/finalizers"}])
        wait_for(
            lambda: name not in {p.metadata.name for p in core.list_namespaced_pod(NS).items},
            what="the pod to go once the finalizer is removed",
        )

    def test_finalizer_on_a_dependent_survives_background_deletion(
        self, sb: sandbox.Sandbox, kubectl: Kubectl
    ) -> None:
        """The finalized ReplicaSet stays Terminating and keeps its pods until released."""
        rs = next(
            r["metadata"]["name"]
            for r in kubectl.json("get", "rs")["items"]
            if r["spec"]["replicas"] == 3
        )
        kubectl.run("patch", "rs", rs, "-p", '{"metadata":{"finalizers":["example.com/keep"]}}')
        kubectl.run("delete", "deployment", "maia")
        wait_for(
            lambda: kubectl.json("get", "rs", rs)["metadata"].get("deletionTimestamp"),
            what="the ReplicaSet marked for deletion",
        )
        sb.settle()
        held = kubectl.json("get", "rs", rs)
        assert held["metadata"]["finalizers"] == ["example.com/keep"]
        pods = kubectl.json("get", "pods")["items"]
        assert len(pods) == 3  # their owner still exists: the collector leaves them
        assert not any(p["metadata"].get("deletionTimestamp") for p in pods)
        kubectl.run("patch", "rs", rs, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
        assert kubectl.run("get", "rs", rs, check=False).returncode == 1
        wait_for(lambda: kubectl.json("get", "pods")["items"] == [], what="pods collected")


class TestForegroundDeletion:
    """Foreground: the owner stays, marked, until its dependents are gone."""

    def test_owner_waits_for_terminating_pods(self, sb: sandbox.Sandbox, kubectl: Kubectl) -> None:
        """The Deployment keeps foregroundDeletion while its pods terminate, then goes."""
        sb.config.update({"shutdown_seconds": 1.0})
        kubectl.run("delete", "deployment", "maia", "--cascade=foreground", "--wait=false")
        d = kubectl.json("get", "deployment", "maia")
        assert d["metadata"]["finalizers"] == ["foregroundDeletion"]
        assert d["metadata"]["deletionTimestamp"]
        pods = wait_for(
            lambda: [
                p
                for p in kubectl.json("get", "pods")["items"]
                if p["metadata"].get("deletionTimestamp")
            ],
            what="terminating pods",
        )
        assert len(pods) == 3
        assert kubectl.run("get", "deployment", "maia", check=False).returncode == 0
        wait_for(
            lambda: kubectl.run("get", "deployment", "maia", check=False).returncode == 1,
            timeout=10,
            what="the Deployment to go after its pods",
        )
        assert kubectl.json("get", "pods")["items"] == []
        assert kubectl.json("get", "rs")["items"] == []


class TestRecreateWaitsForOldPods:
    """oldPodsRunning: Recreate creates no new pod while an old one terminates."""

    def test_no_new_pod_before_old_ones_are_gone(self, sb: sandbox.Sandbox, k8s: Any) -> None:
        """Every old pod's DELETED event comes before the first new pod's ADDED event."""
        sb.config.update({"shutdown_seconds": 0.5})
        apps, core = client.AppsV1Api(k8s), client.CoreV1Api(k8s)
        patch = {"spec": {"strategy": {"type": "Recreate", "rollingUpdate": None}}}
        apps.patch_namespaced_deployment("maia", NS, patch)
        old = {p.metadata.name for p in core.list_namespaced_pod(NS).items}
        rv = core.list_namespaced_pod(NS).metadata.resource_version
        seen: list[tuple[str, str, Any]] = []
        watcher = threading.Thread(target=pod_events, args=(k8s, rv, 4, seen))
        watcher.start()
        image = {"name": "maia", "image": "registry.local/maia:1.6.0"}
        apps.patch_namespaced_deployment(
            "maia", NS, {"spec": {"template": {"spec": {"containers": [image]}}}}
        )
        watcher.join()
        order = [(kind, name) for kind, name, _ in seen if kind in ("ADDED", "DELETED")]
        last_old_gone = max(
            i for i, (kind, name) in enumerate(order) if name in old and kind == "DELETED"
        )
        first_new = min(
            i for i, (kind, name) in enumerate(order) if name not in old and kind == "ADDED"
        )
        assert last_old_gone < first_new, order
