"""Conformance: the official Python ``kubernetes`` client (37.x) against the sandbox.

The client validates responses strictly, so these tests also prove the objects are complete
(a container status without ``imageID`` would fail to deserialise).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from crystal_runbook import sandbox

from .conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

NS = "crystal"


def rs_by_revision(apps: client.AppsV1Api) -> dict[str, Any]:
    items = apps.list_namespaced_replica_set(NS, label_selector="app=maia").items
    return {rs.metadata.annotations["deployment.kubernetes.io/revision"]: rs for rs in items}


def wait_rollout(apps: client.AppsV1Api, name: str = "maia", timeout: int = 20) -> Any:
    """Watch the Deployment until its rollout completes (as kubectl rollout status does)."""
    w = watch.Watch()
    for event in w.stream(
        apps.list_namespaced_deployment,
        NS,
        field_selector=f"metadata.name={name}",
        timeout_seconds=timeout,
    ):
        d = event["object"]
        s = d.status
        if (
            d.metadata.generation <= (s.observed_generation or 0)
            and (s.updated_replicas or 0) == d.spec.replicas
            and (s.replicas or 0) == d.spec.replicas
            and (s.available_replicas or 0) == d.spec.replicas
        ):
            w.stop()
            return d
    raise AssertionError(f"rollout of {name} did not complete in {timeout}s")


class TestReadsAndWrites:
    """Typed reads, the three patch types, optimistic concurrency, dry run."""

    def test_read_list_and_scale(self, k8s: client.ApiClient) -> None:
        """Typed reads deserialise, including pod status and the Scale subresource."""
        apps, core = client.AppsV1Api(k8s), client.CoreV1Api(k8s)
        d = apps.read_namespaced_deployment("maia", NS)
        assert d.spec.template.spec.containers[0].image == "registry.local/maia:1.5.0"
        assert d.status.ready_replicas == 3
        pods = core.list_namespaced_pod(NS, label_selector="app=maia").items
        assert len(pods) == 3
        for pod in pods:
            cs = pod.status.container_statuses[0]
            assert cs.ready
            assert cs.image_id.startswith("registry.local/maia@sha256:")
        scale = apps.read_namespaced_deployment_scale("maia", NS)
        assert (scale.spec.replicas, scale.status.replicas, scale.status.selector) == (
            3,
            3,
            "app=maia",
        )
        patched = apps.patch_namespaced_deployment_scale("maia", NS, {"spec": {"replicas": 4}})
        assert patched.spec.replicas == 4
        wait_rollout(apps)
        assert len(core.list_namespaced_pod(NS, label_selector="app=maia").items) == 4

    def test_strategic_merge_patch_merges_containers_and_env_by_name(
        self, k8s: client.ApiClient
    ) -> None:
        """A dict body is sent as a strategic merge patch: lists merge by their keys."""
        apps = client.AppsV1Api(k8s)
        body = {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "maia", "env": [{"name": "CRYSTAL_MODE", "value": "legacy"}]}
                        ]
                    }
                }
            }
        }
        d = apps.patch_namespaced_deployment("maia", NS, body)
        container = d.spec.template.spec.containers[0]
        assert container.image == "registry.local/maia:1.5.0"  # kept
        assert [(e.name, e.value) for e in container.env] == [
            ("CRYSTAL_MODE", "legacy"),
            ("CRYSTAL_WEIGHT", "0.3"),
        ]
        assert [p.container_port for p in container.ports] == [8080]
        assert d.metadata.generation == 3

    def test_json_patch_and_merge_patch(self, k8s: client.ApiClient) -> None:
        """A list body is a JSON patch; merge patch replaces lists whole."""
        apps = client.AppsV1Api(k8s)
        d = apps.patch_namespaced_deployment(
            "maia",
            NS,
            [
                {
                    "op": "replace",
                    "path": "/spec/template/spec/containers/0/image",
                    "value": "registry.local/maia:2.0",
                },
                {"op": "add", "path": "/metadata/annotations/team", "value": "crystal"},
            ],
        )
        assert d.spec.template.spec.containers[0].image == "registry.local/maia:2.0"
        assert d.metadata.annotations["team"] == "crystal"
        with pytest.raises(ApiException) as failed:
            apps.patch_namespaced_deployment(
                "maia", NS, [{"op": "test", "path": "/spec/replicas", "value": 7}]
            )
        assert failed.value.status == 422
        merged = apps.patch_namespaced_deployment(
            "maia",
            NS,
            {"metadata": {"labels": {"tier": "web"}}},
            _content_type="application/merge-patch+json",
        )
        assert merged.metadata.labels == {"app": "maia", "tier": "web"}

    def test_replace_with_a_stale_resource_version_conflicts(self, k8s: client.ApiClient) -> None:
        """PUT with an old resourceVersion is a 409 Conflict; with the current one it works."""
        core = client.CoreV1Api(k8s)
        cm = core.read_namespaced_config_map("maia-flags", NS)
        cm.data["multiUserSync"] = "true"
        updated = core.replace_namespaced_config_map("maia-flags", NS, cm)
        assert int(updated.metadata.resource_version) > int(cm.metadata.resource_version)
        cm.data["multiUserSync"] = "false"
        with pytest.raises(ApiException) as conflict:
            core.replace_namespaced_config_map("maia-flags", NS, cm)
        assert conflict.value.status == 409
        assert json.loads(conflict.value.body)["reason"] == "Conflict"

    def test_no_op_update_keeps_the_resource_version(self, k8s: client.ApiClient) -> None:
        """An update that changes nothing does not bump resourceVersion or generation."""
        apps = client.AppsV1Api(k8s)
        before = apps.read_namespaced_deployment("maia", NS)
        after = apps.patch_namespaced_deployment("maia", NS, {"spec": {"replicas": 3}})
        assert after.metadata.resource_version == before.metadata.resource_version
        assert after.metadata.generation == before.metadata.generation

    def test_create_with_generate_name_and_errors(self, k8s: client.ApiClient) -> None:
        """generateName makes a name; duplicates, bad names and missing namespaces fail properly."""
        core = client.CoreV1Api(k8s)
        cm = core.create_namespaced_config_map(
            NS, {"metadata": {"generateName": "run-"}, "data": {"a": "1"}}
        )
        assert cm.metadata.name.startswith("run-")
        assert len(cm.metadata.name) == 9
        assert cm.metadata.uid
        assert cm.metadata.creation_timestamp
        with pytest.raises(ApiException) as dup:
            core.create_namespaced_config_map(NS, {"metadata": {"name": cm.metadata.name}})
        assert (dup.value.status, json.loads(dup.value.body)["reason"]) == (409, "AlreadyExists")
        with pytest.raises(ApiException) as bad:
            core.create_namespaced_config_map(NS, {"metadata": {"name": "Not_Valid"}})
        assert bad.value.status == 422
        with pytest.raises(ApiException) as missing:
            core.create_namespaced_config_map("nowhere", {"metadata": {"name": "x"}})
        assert missing.value.status == 404
        apps = client.AppsV1Api(k8s)
        with pytest.raises(ApiException) as invalid:
            apps.create_namespaced_deployment(
                NS,
                {
                    "metadata": {"name": "x"},
                    "spec": {
                        "selector": {"matchLabels": {"app": "x"}},
                        "template": {
                            "metadata": {"labels": {"app": "y"}},
                            "spec": {"containers": [{"name": "x"}]},
                        },
                    },
                },
            )
        causes = {c["field"] for c in json.loads(invalid.value.body)["details"]["causes"]}
        assert causes == {"spec.template.metadata.labels", "spec.template.spec.containers[0].image"}

    def test_dry_run_stores_nothing(self, k8s: client.ApiClient) -> None:
        """dry_run=All returns the result without changing or creating anything."""
        apps, core = client.AppsV1Api(k8s), client.CoreV1Api(k8s)
        before = apps.read_namespaced_deployment("maia", NS)
        out = apps.patch_namespaced_deployment("maia", NS, {"spec": {"replicas": 9}}, dry_run="All")
        assert out.spec.replicas == 9
        assert (
            apps.read_namespaced_deployment("maia", NS).metadata.resource_version
            == before.metadata.resource_version
        )
        core.create_namespaced_config_map(NS, {"metadata": {"name": "dry"}}, dry_run="All")
        with pytest.raises(ApiException):
            core.read_namespaced_config_map("dry", NS)


class TestRollback:
    """The steps a rollback action takes, done with the client as the engine will."""

    def test_rollback_by_patching_the_template_of_the_previous_revision(
        self, k8s: client.ApiClient
    ) -> None:
        """Patch spec.template to revision 1's (minus pod-template-hash): revision 1's RS is reused."""
        apps = client.AppsV1Api(k8s)
        old = rs_by_revision(apps)["1"]
        template = k8s.sanitize_for_serialization(old.spec.template)
        del template["metadata"]["labels"]["pod-template-hash"]
        template["spec"]["containers"][0]["env"][0]["value"] = "legacy"  # set_env in the same patch
        apps.patch_namespaced_deployment(
            "maia",
            NS,
            [
                {"op": "replace", "path": "/spec/template", "value": template},
            ],
        )
        d = wait_rollout(apps)
        assert d.spec.template.spec.containers[0].image == "registry.local/maia:1.4.2"
        revisions = rs_by_revision(apps)
        assert set(revisions) == {"1", "2", "3"}  # a new template (env changed): a new RS
        assert revisions["3"].spec.replicas == 3
        assert d.metadata.annotations["deployment.kubernetes.io/revision"] == "3"

    def test_watch_sees_the_rollout_and_resumes_from_a_resource_version(
        self, k8s: client.ApiClient
    ) -> None:
        """A pod watch reports ADDED/MODIFIED/DELETED; a resumed watch starts after its rv."""
        apps, core = client.AppsV1Api(k8s), client.CoreV1Api(k8s)
        listed = core.list_namespaced_pod(NS, label_selector="app=maia")
        seen: list[tuple[str, str]] = []
        done = threading.Event()

        def follow() -> None:
            w = watch.Watch()
            for event in w.stream(
                core.list_namespaced_pod,
                NS,
                label_selector="app=maia",
                resource_version=listed.metadata.resource_version,
                timeout_seconds=15,
            ):
                seen.append((event["type"], event["object"].metadata.name))
                if sum(1 for t, _ in seen if t == "DELETED") >= 3:
                    w.stop()
                    break
            done.set()

        thread = threading.Thread(target=follow)
        thread.start()
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
        assert done.wait(15)
        thread.join()
        added = {name for t, name in seen if t == "ADDED"}
        deleted = {name for t, name in seen if t == "DELETED"}
        assert len(added) == 3
        assert deleted == {p.metadata.name for p in listed.items}
        assert any(t == "MODIFIED" for t, _ in seen)

    def test_watch_ends_at_timeout_seconds(self, k8s: client.ApiClient) -> None:
        """A quiet watch with timeoutSeconds=1 ends by itself after about a second."""
        core = client.CoreV1Api(k8s)
        rv = core.list_namespaced_config_map(NS).metadata.resource_version
        started = time.monotonic()
        events = list(
            watch.Watch().stream(
                core.list_namespaced_config_map, NS, resource_version=rv, timeout_seconds=1
            )
        )
        elapsed = time.monotonic() - started
        assert events == []
        assert 0.9 < elapsed < 3

    def test_replicaset_scale_is_reconciled_by_its_deployment(self, k8s: client.ApiClient) -> None:
        """A ReplicaSet's /scale works; its Deployment's controller then scales it back."""
        apps = client.AppsV1Api(k8s)
        current = rs_by_revision(apps)["2"].metadata.name
        scale = apps.read_namespaced_replica_set_scale(current, NS)
        assert (scale.kind, scale.spec.replicas, scale.status.replicas) == ("Scale", 3, 3)
        assert scale.status.selector.startswith("app=maia,pod-template-hash=")
        patched = apps.patch_namespaced_replica_set_scale(current, NS, {"spec": {"replicas": 1}})
        assert patched.spec.replicas == 1
        wait_for(
            lambda: apps.read_namespaced_replica_set(current, NS).spec.replicas == 3,
            what="the Deployment to restore its ReplicaSet",
        )

    def test_too_old_resource_version_is_410(
        self, k8s: client.ApiClient, sb: sandbox.Sandbox
    ) -> None:
        """A watch from a resourceVersion the history dropped ends with an ERROR 410 event."""
        core = client.CoreV1Api(k8s)
        start = core.list_namespaced_config_map(NS).metadata.resource_version
        for i in range(sb.store.history + 5):
            core.create_namespaced_config_map(NS, {"metadata": {"name": f"c{i}"}})
        resp = core.list_namespaced_config_map(
            NS, watch=True, resource_version=start, timeout_seconds=2, _preload_content=False
        )
        try:
            first = json.loads(resp.readline())
        finally:
            resp.release_conn()
        assert first["type"] == "ERROR"
        assert first["object"]["code"] == 410


class TestLogsAndLeases:
    """Pod logs (also followed), Leases with optimistic locking, HPAs, events, namespaces."""

    def test_read_pod_log_follow_streams_lines(self, k8s: client.ApiClient) -> None:
        """read_namespaced_pod_log(follow=True, _preload_content=False) yields lines as written."""
        core = client.CoreV1Api(k8s)
        pod = core.list_namespaced_pod(NS, label_selector="app=maia").items[0].metadata.name
        resp = core.read_namespaced_pod_log(
            pod, NS, follow=True, tail_lines=1, _preload_content=False
        )
        lines: list[dict[str, Any]] = []
        started = time.monotonic()
        try:
            for chunk in resp.stream(amt=4096, decode_content=False):
                lines += [json.loads(x) for x in chunk.decode().splitlines() if x]
                if len(lines) >= 4:
                    break
        finally:
            resp.release_conn()
            resp.close()
        assert time.monotonic() - started < 5
        assert len(lines) >= 4
        assert all(line["status"] == 200 for line in lines[1:] if "status" in line)
        tail = core.read_namespaced_pod_log(pod, NS, tail_lines=5, timestamps=True)
        assert len(tail.splitlines()) == 5
        assert tail.splitlines()[0][:4].isdigit()
        assert "Z {" in tail.splitlines()[0]
        with pytest.raises(ApiException) as wrong:
            core.read_namespaced_pod_log(pod, NS, container="nope")
        assert wrong.value.status == 400

    def test_lease_optimistic_locking(self, k8s: client.ApiClient) -> None:
        """Two writers of one Lease: the one with the stale resourceVersion gets 409."""
        coord = client.CoordinationV1Api(k8s)
        lease = coord.create_namespaced_lease(
            NS,
            {
                "metadata": {"name": "maia-sandbox"},
                "spec": {
                    "holderIdentity": "run-1",
                    "leaseDurationSeconds": 30,
                    "acquireTime": "2026-01-01T00:00:00.000000Z",
                    "renewTime": "2026-01-01T00:00:00.000000Z",
                },
            },
        )
        mine = coord.read_namespaced_lease("maia-sandbox", NS)
        theirs = coord.read_namespaced_lease("maia-sandbox", NS)
        mine.spec.holder_identity = "run-2"
        coord.replace_namespaced_lease("maia-sandbox", NS, mine)
        theirs.spec.holder_identity = "run-3"
        with pytest.raises(ApiException) as lost:
            coord.replace_namespaced_lease("maia-sandbox", NS, theirs)
        assert lost.value.status == 409
        assert coord.read_namespaced_lease("maia-sandbox", NS).spec.holder_identity == "run-2"
        with pytest.raises(ApiException) as taken:
            coord.create_namespaced_lease(NS, {"metadata": {"name": "maia-sandbox"}, "spec": {}})
        assert taken.value.status == 409
        assert lease.metadata.uid

    def test_hpa_is_stored(self, k8s: client.ApiClient) -> None:
        """autoscaling/v2 HPAs are stored and read back (nothing acts on them)."""
        hpa_api = client.AutoscalingV2Api(k8s)
        hpa_api.create_namespaced_horizontal_pod_autoscaler(
            NS,
            {
                "metadata": {"name": "maia"},
                "spec": {
                    "scaleTargetRef": {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": "maia",
                    },
                    "minReplicas": 3,
                    "maxReplicas": 10,
                },
            },
        )
        hpa = hpa_api.read_namespaced_horizontal_pod_autoscaler("maia", NS)
        assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (3, 10)

    def test_events_describe_the_rollout(self, k8s: client.ApiClient) -> None:
        """The controllers write Events: scaling, pod creation, scheduling."""
        apps, core = client.AppsV1Api(k8s), client.CoreV1Api(k8s)
        apps.patch_namespaced_deployment_scale("maia", NS, {"spec": {"replicas": 4}})
        wait_rollout(apps)
        reasons = {e.reason for e in core.list_namespaced_event(NS).items}
        assert {"ScalingReplicaSet", "SuccessfulCreate", "Scheduled", "Started"} <= reasons
        d = apps.read_namespaced_deployment("maia", NS)
        about = core.list_namespaced_event(
            NS, field_selector=f"involvedObject.name=maia,involvedObject.uid={d.metadata.uid}"
        ).items
        assert [e.message for e in about] == [
            f"Scaled up replica set {rs_by_revision(apps)['2'].metadata.name} from 3 to 4"
        ]

    def test_namespace_delete_removes_its_objects(self, k8s: client.ApiClient) -> None:
        """Deleting a namespace deletes what is in it."""
        core = client.CoreV1Api(k8s)
        core.create_namespace({"metadata": {"name": "scratch"}})
        core.create_namespaced_config_map("scratch", {"metadata": {"name": "x"}})
        core.delete_namespace("scratch")
        with pytest.raises(ApiException):
            core.read_namespace("scratch")
        assert [
            c
            for c in core.list_config_map_for_all_namespaces().items
            if c.metadata.namespace == "scratch"
        ] == []


class TestDeletion:
    """Deletion propagation: Background, Foreground, Orphan."""

    def test_orphan_keeps_replicasets_and_pods(self, k8s: client.ApiClient) -> None:
        """propagationPolicy=Orphan removes the Deployment and strips ownerReferences."""
        apps, core = client.AppsV1Api(k8s), client.CoreV1Api(k8s)
        apps.delete_namespaced_deployment("maia", NS, propagation_policy="Orphan")
        rs = rs_by_revision(apps)
        assert set(rs) == {"1", "2"}
        assert all(r.metadata.owner_references is None for r in rs.values())
        time.sleep(0.2)
        assert len(core.list_namespaced_pod(NS).items) == 3

    def test_foreground_waits_for_dependents(self, k8s: client.ApiClient) -> None:
        """Foreground deletion keeps the owner (with a finalizer) until dependents are gone."""
        apps, core = client.AppsV1Api(k8s), client.CoreV1Api(k8s)
        apps.delete_namespaced_deployment("maia", NS, propagation_policy="Foreground")

        def gone() -> bool:
            try:
                apps.read_namespaced_deployment("maia", NS)
            except ApiException as exc:
                return exc.status == 404
            return False

        wait_for(gone, what="the Deployment to be deleted")
        assert apps.list_namespaced_replica_set(NS).items == []
        assert core.list_namespaced_pod(NS).items == []

    def test_preconditions(self, k8s: client.ApiClient) -> None:
        """A delete whose uid precondition does not match is a 409."""
        core = client.CoreV1Api(k8s)
        with pytest.raises(ApiException) as failed:
            core.delete_namespaced_config_map(
                "maia-flags",
                NS,
                body=client.V1DeleteOptions(
                    preconditions=client.V1Preconditions(uid="not-the-uid")
                ),
            )
        assert failed.value.status == 409
        core.read_namespaced_config_map("maia-flags", NS)
