"""The deployment controller's guarantees, checked on every change it makes."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from crystal_runbook import sandbox
from crystal_runbook.sandbox import resources, store

from .conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

NS = "crystal"


def deployment(name: str, image: str, replicas: int, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": image}]},
            },
            **spec,
        },
    }


def set_image(apps: client.AppsV1Api, name: str, image: str) -> None:
    apps.patch_namespaced_deployment(
        name, NS, {"spec": {"template": {"spec": {"containers": [{"name": name, "image": image}]}}}}
    )


def complete(sb: sandbox.Sandbox, name: str) -> bool:
    stored = sb.store.get(resources.DEPLOYMENTS, NS, name)
    assert stored is not None
    d, s = stored.obj, stored.obj.get("status", {})
    want = d["spec"]["replicas"]
    return bool(
        s.get("observedGeneration", 0) >= d["metadata"]["generation"]
        and s.get("updatedReplicas", 0) == want
        and s.get("replicas", 0) == want
        and s.get("availableReplicas", 0) == want
    )


class TestRollingUpdate:
    """maxSurge/maxUnavailable, timing, history limit and the Recreate strategy."""

    @pytest.mark.parametrize(("surge", "unavailable"), [("25%", "25%"), (1, 0), (0, 2)])
    def test_surge_and_unavailability_bounds_hold_throughout(
        self, sb: sandbox.Sandbox, k8s: client.ApiClient, surge: Any, unavailable: Any
    ) -> None:
        """At every change: pods <= replicas + maxSurge and available >= replicas - maxUnavailable."""
        apps = client.AppsV1Api(k8s)
        strategy = {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable},
        }
        apps.create_namespaced_deployment(
            NS, deployment("web", "registry.local/web:1", 8, strategy=strategy)
        )
        wait_for(lambda: complete(sb, "web"), what="first rollout")
        max_surge = {"25%": 2, 1: 1, 0: 0}[surge]
        max_unavailable = {"25%": 2, 0: 0, 2: 2}[unavailable]
        totals: list[int] = []
        available: list[int] = []

        def check(res: resources.Resource, event: store.Event) -> None:
            if (
                res is resources.REPLICASETS
                and event.obj["metadata"].get("labels", {}).get("app") == "web"
            ):
                rss, _ = sb.store.objects(resources.REPLICASETS, NS)
                totals.append(
                    sum(
                        r.obj["spec"]["replicas"]
                        for r in rss
                        if r.obj["metadata"]["labels"].get("app") == "web"
                    )
                )
            if res is resources.DEPLOYMENTS and event.obj["metadata"]["name"] == "web":
                available.append(event.obj.get("status", {}).get("availableReplicas", 0))

        sb.store.subscribe(check)
        set_image(apps, "web", "registry.local/web:2")
        wait_for(lambda: complete(sb, "web"), what="second rollout")
        assert totals
        assert max(totals) <= 8 + max_surge
        assert available
        assert min(available) >= 8 - max_unavailable

    def test_twenty_replicas_roll_out_within_ready_delay_plus_one_second(
        self, sb: sandbox.Sandbox, k8s: client.ApiClient
    ) -> None:
        """The issue's speed target, with the default 0.5 s ready delay."""
        apps = client.AppsV1Api(k8s)
        sb.ready_delay = 0.5
        apps.patch_namespaced_deployment_scale("maia", NS, {"spec": {"replicas": 20}})
        wait_for(lambda: complete(sb, "maia"), what="scale to 20")
        started = time.monotonic()
        set_image(apps, "maia", "registry.local/maia:1.6.0")
        wait_for(lambda: complete(sb, "maia"), what="20-replica rollout", timeout=10)
        elapsed = time.monotonic() - started
        assert elapsed <= 0.5 + 1.0, f"rollout took {elapsed:.2f}s"

    def test_revision_history_limit(self, sb: sandbox.Sandbox, k8s: client.ApiClient) -> None:
        """Only revisionHistoryLimit old ReplicaSets are kept once a rollout completes."""
        apps = client.AppsV1Api(k8s)
        apps.create_namespaced_deployment(
            NS, deployment("web", "registry.local/web:1", 1, revisionHistoryLimit=2)
        )
        for version in range(2, 6):
            wait_for(lambda: complete(sb, "web"), what="rollout")
            set_image(apps, "web", f"registry.local/web:{version}")
        wait_for(lambda: complete(sb, "web"), what="last rollout")
        wait_for(
            lambda: len(apps.list_namespaced_replica_set(NS, label_selector="app=web").items) == 3,
            what="history trimmed",
        )
        revisions = sorted(
            int(rs.metadata.annotations["deployment.kubernetes.io/revision"])
            for rs in apps.list_namespaced_replica_set(NS, label_selector="app=web").items
        )
        assert revisions == [3, 4, 5]

    def test_recreate_never_runs_old_and_new_together(
        self, sb: sandbox.Sandbox, k8s: client.ApiClient
    ) -> None:
        """Recreate scales the old ReplicaSet to zero before the new one starts."""
        apps = client.AppsV1Api(k8s)
        apps.create_namespaced_deployment(
            NS, deployment("web", "registry.local/web:1", 3, strategy={"type": "Recreate"})
        )
        wait_for(lambda: complete(sb, "web"), what="first rollout")
        mixed: list[set[str]] = []

        def check(res: resources.Resource, event: store.Event) -> None:
            if res is resources.PODS:
                pods, _ = sb.store.objects(resources.PODS, NS)
                images = {
                    p.obj["spec"]["containers"][0]["image"]
                    for p in pods
                    if p.obj["metadata"]["labels"].get("app") == "web"
                }
                if len(images) > 1:
                    mixed.append(images)

        sb.store.subscribe(check)
        set_image(apps, "web", "registry.local/web:2")
        wait_for(lambda: complete(sb, "web"), what="recreate rollout")
        assert mixed == []

    def test_scaling_while_paused(self, sb: sandbox.Sandbox, k8s: client.ApiClient) -> None:
        """A paused Deployment still scales its current ReplicaSet."""
        apps = client.AppsV1Api(k8s)
        apps.patch_namespaced_deployment("maia", NS, {"spec": {"paused": True}})
        apps.patch_namespaced_deployment_scale("maia", NS, {"spec": {"replicas": 5}})
        wait_for(lambda: complete(sb, "maia"), what="scale while paused")
        assert apps.read_namespaced_deployment("maia", NS).spec.paused is True


class TestWatchLatency:
    """Watches are woken by the change itself."""

    def test_watch_event_arrives_promptly(self, sb: sandbox.Sandbox, k8s: client.ApiClient) -> None:
        """A change reaches an open watch in well under 100 ms."""
        core = client.CoreV1Api(k8s)
        rv = core.list_namespaced_config_map(NS).metadata.resource_version
        resp = core.list_namespaced_config_map(
            NS, watch=True, resource_version=rv, timeout_seconds=10, _preload_content=False
        )
        try:
            time.sleep(0.2)
            sent = time.monotonic()
            core.create_namespaced_config_map(NS, {"metadata": {"name": "ping"}})
            line = resp.readline()
            latency = time.monotonic() - sent
        finally:
            resp.release_conn()
        assert b'"ADDED"' in line
        assert b'"ping"' in line
        assert latency < 0.1
