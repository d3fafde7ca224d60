"""Conformance: what the API server refuses, drops and publishes about Deployments.

Each invalid patch is answered 422 with ``pkg/apis/apps/validation``'s text and changes
nothing; unknown fields are dropped (a warning, or 400 under ``fieldValidation=Strict``)
and start no rollout; ``/openapi/v3`` lets kubectl apply and explain without
``--validate=false``. Checked with real kubectl and the Python client.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from crystal_runbook import sandbox

from .conftest import Kubectl

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

NS = "crystal"
REJECTED = 'The Deployment "maia" is invalid: '


@pytest.mark.parametrize(
    ("patch", "cause"),
    [
        (
            {"spec": {"strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}}},
            "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: "
            'intstr.IntOrString{Type:0, IntVal:0, StrVal:""}: may not be 0 when `maxSurge` is 0',
        ),
        (
            {"spec": {"strategy": {"type": "Recreate"}}},
            "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` "
            "is 'Recreate'",
        ),
        (
            {"spec": {"strategy": {"rollingUpdate": {"maxUnavailable": "200%"}}}},
            "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: "
            'intstr.IntOrString{Type:1, IntVal:0, StrVal:"200%"}: must not be greater than 100%',
        ),
        (
            {"spec": {"progressDeadlineSeconds": 0}},
            "spec.progressDeadlineSeconds: Invalid value: 0: must be greater than minReadySeconds",
        ),
        (
            {"spec": {"progressDeadlineSeconds": 5, "minReadySeconds": 5}},
            "spec.progressDeadlineSeconds: Invalid value: 5: must be greater than minReadySeconds",
        ),
        (
            {"spec": {"revisionHistoryLimit": -1}},
            "spec.revisionHistoryLimit: Invalid value: -1: must be greater than or equal to 0",
        ),
        (
            {"spec": {"template": {"spec": {"restartPolicy": "Never"}}}},
            'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: '
            '"Always"',
        ),
    ],
    ids=[
        "surge-and-unavailable-0",
        "recreate-with-rollingUpdate",
        "unavailable-200pct",
        "deadline-0",
        "deadline-not-above-minReady",
        "history-limit-negative",
        "restart-never",
    ],
)
def test_invalid_patch_is_422_with_upstream_message(
    kubectl: Kubectl, patch: dict[str, Any], cause: str
) -> None:
    """kubectl shows the 422's message; the Deployment is unchanged (same resourceVersion)."""
    before = kubectl.json("get", "deployment", "maia")
    proc = kubectl.run("patch", "deployment", "maia", "-p", json.dumps(patch), check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"{REJECTED}{cause}"
    after = kubectl.json("get", "deployment", "maia")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_invalid_patch_through_the_client_lists_causes(k8s: Any) -> None:
    """The Status carries reason Invalid, kind, name and each cause with its field."""
    apps = client.AppsV1Api(k8s)
    patch = {"spec": {"revisionHistoryLimit": -1, "progressDeadlineSeconds": 0}}
    with pytest.raises(ApiException) as err:
        apps.patch_namespaced_deployment("maia", NS, patch)
    status = json.loads(err.value.body)
    assert err.value.status == 422
    assert status["reason"] == "Invalid"
    assert status["details"]["kind"] == "Deployment"
    assert status["details"]["group"] == "apps"
    assert [c["field"] for c in status["details"]["causes"]] == [
        "spec.revisionHistoryLimit",
        "spec.progressDeadlineSeconds",
    ]
    assert status["message"] == (
        'Deployment.apps "maia" is invalid: ['
        "spec.revisionHistoryLimit: Invalid value: -1: must be greater than or equal to 0, "
        "spec.progressDeadlineSeconds: Invalid value: 0: must be greater than minReadySeconds]"
    )


class TestUnknownFields:
    """Unknown fields are dropped as the typed decoder drops them."""

    def test_unknown_field_in_a_patch_starts_no_rollout(self, kubectl: Kubectl) -> None:
        """A warning, 'no change', the same generation and the same ReplicaSets."""
        before = kubectl.json("get", "deployment", "maia")
        rs_before = len(kubectl.json("get", "rs")["items"])
        template_typo = {
            "spec": {"template": {"spec": {"containers": [{"name": "maia", "imagee": "x:2"}]}}}
        }
        proc = kubectl.run("patch", "deployment", "maia", "-p", json.dumps(template_typo))
        assert proc.stdout.strip() == "deployment.apps/maia patched (no change)"
        assert 'Warning: unknown field "spec.template.spec.containers[0].imagee"' in proc.stderr
        after = kubectl.json("get", "deployment", "maia")
        assert after["metadata"]["generation"] == before["metadata"]["generation"]
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
        assert len(kubectl.json("get", "rs")["items"]) == rs_before

    def test_strict_field_validation_is_400(self, k8s: Any) -> None:
        """fieldValidation=Strict refuses the request and names every unknown field."""
        apps = client.AppsV1Api(k8s)
        with pytest.raises(ApiException) as err:
            apps.patch_namespaced_deployment(
                "maia", NS, {"spec": {"foo": 1, "paused2": True}}, field_validation="Strict"
            )
        assert err.value.status == 400
        assert json.loads(err.value.body)["message"] == (
            'strict decoding error: unknown field "spec.foo", unknown field "spec.paused2"'
        )

    def test_warn_header_reaches_the_client(self, sb: sandbox.Sandbox, k8s: Any) -> None:
        """The default (Warn) answers 201 with a Warning header and stores no unknown field."""
        body = {"metadata": {"name": "w"}, "data": {"a": "1"}, "dat": {"b": "2"}}
        request = urllib.request.Request(  # noqa: S310 - the loopback sandbox
            f"{sb.url}/api/v1/namespaces/{NS}/configmaps",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request) as resp:  # noqa: S310 - the loopback sandbox
            assert resp.status == 201
            assert resp.headers["Warning"] == '299 - "unknown field \\"dat\\""'
        stored = client.CoreV1Api(k8s).read_namespaced_config_map("w", NS)
        assert stored.data == {"a": "1"}


class TestOpenAPI:
    """/openapi/v3 as kubectl uses it: apply and explain without --validate=false."""

    MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: registry.local/web:1.0, env: [{name: A, value: "1"}]}
      - {name: side, image: registry.local/side:1.0}
"""

    def test_apply_validates_on_the_server(self, kubectl: Kubectl, tmp_path: Path) -> None:
        """Plain apply works; a typo is refused by the server (kubectl sent Strict)."""
        manifest = tmp_path / "web.yaml"
        manifest.write_text(self.MANIFEST)
        assert kubectl.run("apply", "-f", str(manifest)).stdout.strip() == (
            "deployment.apps/web created"
        )
        manifest.write_text(self.MANIFEST.replace("replicas: 2", "replicas: 2\n  replica: 3"))
        proc = kubectl.run("apply", "-f", str(manifest), check=False)
        assert proc.returncode == 1
        assert 'strict decoding error: unknown field "spec.replica"' in proc.stderr
        assert kubectl.json("get", "deployment", "web")["spec"]["replicas"] == 2

    def test_apply_merges_containers_by_name(self, kubectl: Kubectl, tmp_path: Path) -> None:
        """A second apply that changes one container patches only it (x-kubernetes-patch-merge-key)."""
        manifest = tmp_path / "web.yaml"
        manifest.write_text(self.MANIFEST)
        kubectl.run("apply", "-f", str(manifest))
        kubectl.run("set", "env", "deployment/web", "-c", "side", "B=2")
        manifest.write_text(
            self.MANIFEST.replace("registry.local/web:1.0", "registry.local/web:1.1")
        )
        assert "configured" in kubectl.run("apply", "-f", str(manifest)).stdout
        containers = kubectl.json("get", "deployment", "web")["spec"]["template"]["spec"][
            "containers"
        ]
        by_name = {c["name"]: c for c in containers}
        assert by_name["web"]["image"] == "registry.local/web:1.1"
        assert by_name["side"]["env"] == [{"name": "B", "value": "2"}]  # kept: merged by name

    def test_explain_reads_the_schema(self, kubectl: Kubectl) -> None:
        """kubectl explain prints the field documentation from Kubernetes' definitions."""
        out = kubectl.run("explain", "deployment.spec.progressDeadlineSeconds").stdout
        assert "FIELD: progressDeadlineSeconds <integer>" in out
        assert "The maximum time in seconds for a deployment to make progress" in out

    def test_index_names_each_group_version(self, sb: sandbox.Sandbox) -> None:
        """The index lists the served group-versions; apps/v1 documents the PATCH parameter."""
        with urllib.request.urlopen(f"{sb.url}/openapi/v3") as resp:  # noqa: S310 - loopback
            index = json.loads(resp.read())
        assert {"api/v1", "apis/apps/v1", "apis/batch/v1", "apis/policy/v1"} <= set(index["paths"])
        url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
        with urllib.request.urlopen(f"{sb.url}{url}") as resp:  # noqa: S310 - loopback
            doc = json.loads(resp.read())
        patch = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
        assert patch["x-kubernetes-group-version-kind"] == {
            "group": "apps",
            "version": "v1",
            "kind": "Deployment",
        }
        assert "fieldValidation" in {p["name"] for p in patch["parameters"]}
        containers = doc["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"][
            "containers"
        ]
        assert containers["x-kubernetes-patch-merge-key"] == "name"
