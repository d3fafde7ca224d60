"""Conformance: the kinds a real deploy uses, field selectors per kind, nodes and `kubectl top`.

ServiceAccount, Secret, Role, RoleBinding, CronJob, Job, PodDisruptionBudget, Lease and
HPA are stored, listed, watched, validated and dry-run like the workload kinds; field
selectors are refused with 400 outside each kind's field labels; the cluster has one Node;
metrics.k8s.io serves the pods' CPU and memory. Checked with real kubectl and the client.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from crystal_runbook import sandbox
from crystal_runbook.sandbox.kubelet import NODE_NAME

from .conftest import Kubectl, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

NS = "crystal"
DEPLOY_MANIFEST = """\
apiVersion: v1
kind: ServiceAccount
metadata: {name: runbook}
---
apiVersion: v1
kind: Secret
metadata: {name: slack}
stringData: {token: xoxb-fake-token}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: runbook-settings}
data: {env: sandbox}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: rollback}
rules:
- apiGroups: [apps]
  resources: [deployments, replicasets]
  verbs: [get, list, watch, patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: rollback}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: rollback}
subjects: [{kind: ServiceAccount, name: runbook, namespace: crystal}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: drill}
spec:
  schedule: "30 3 * * 1"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          serviceAccountName: runbook
          containers: [{name: drill, image: registry.local/crystal-runbook:1.0}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: maia}
spec:
  maxUnavailable: 1
  selector: {matchLabels: {app: maia}}
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: serve-leader}
spec: {holderIdentity: serve-0, leaseDurationSeconds: 15}
---
apiVersion: v1
kind: Service
metadata: {name: runbook}
spec:
  selector: {app: runbook}
  ports: [{port: 8080}]
"""
KINDS = (
    "serviceaccount/runbook",
    "secret/slack",
    "configmap/runbook-settings",
    "role.rbac.authorization.k8s.io/rollback",
    "rolebinding.rbac.authorization.k8s.io/rollback",
    "cronjob.batch/drill",
    "poddisruptionbudget.policy/maia",
    "lease.coordination.k8s.io/serve-leader",
    "service/runbook",
)


def names(kubectl: Kubectl, kinds: str) -> set[str]:
    """`kind/name` of every object of ``kinds`` (comma-separated) in the namespace."""
    out = kubectl.run("get", kinds, "-o", "name", check=False)
    return {line for line in out.stdout.splitlines() if line}


def invalid_message(exc: ApiException) -> tuple[int, str]:
    body = json.loads(exc.body)
    return exc.status, str(body["message"])


class TestDeployManifest:
    """What issue 15 applies: server dry run stores nothing; apply stores every object."""

    def test_server_dry_run_validates_and_stores_nothing(
        self, kubectl: Kubectl, tmp_path: Path
    ) -> None:
        """`apply --dry-run=server` reports each object and leaves the namespace as it was."""
        manifest = tmp_path / "deploy.yaml"
        manifest.write_text(DEPLOY_MANIFEST)
        kinds = "sa,secret,cm,role,rolebinding,cronjob,pdb,lease,svc"
        before = names(kubectl, kinds)
        out = kubectl.run("apply", "--dry-run=server", "-f", str(manifest)).stdout
        assert out.count("(server dry run)") == len(KINDS)
        assert names(kubectl, kinds) == before
        assert not before & set(KINDS)

    def test_apply_creates_each_kind_with_its_defaults(
        self, kubectl: Kubectl, tmp_path: Path
    ) -> None:
        """Every object exists afterwards, defaulted as the API server defaults it."""
        manifest = tmp_path / "deploy.yaml"
        manifest.write_text(DEPLOY_MANIFEST)
        out = kubectl.run("apply", "-f", str(manifest)).stdout
        assert out.count(" created") == len(KINDS)
        secret = kubectl.json("get", "secret", "slack")
        assert secret["type"] == "Opaque"
        assert "stringData" not in secret
        assert base64.b64decode(secret["data"]["token"]) == b"xoxb-fake-token"
        cron = kubectl.json("get", "cronjob", "drill")["spec"]
        assert (cron["concurrencyPolicy"], cron["suspend"]) == ("Allow", False)
        assert (cron["successfulJobsHistoryLimit"], cron["failedJobsHistoryLimit"]) == (3, 1)
        pod_spec = cron["jobTemplate"]["spec"]["template"]["spec"]
        assert pod_spec["terminationGracePeriodSeconds"] == 30
        assert pod_spec["dnsPolicy"] == "ClusterFirst"
        kinds = "sa,secret,cm,role,rolebinding,cronjob,pdb,lease,svc"
        before = {
            o["metadata"]["name"] + o["kind"]: o["metadata"]["resourceVersion"]
            for o in kubectl.json("get", kinds)["items"]
        }
        again = kubectl.run("apply", "-f", str(manifest)).stdout
        # stringData and the PDB's replace-strategy selector are always re-sent: "configured"
        assert again.count(" unchanged") == len(KINDS) - 2
        after = {
            o["metadata"]["name"] + o["kind"]: o["metadata"]["resourceVersion"]
            for o in kubectl.json("get", kinds)["items"]
        }
        assert after == before  # nothing changed on the server

    def test_kubectl_get_prints_each_kinds_columns(self, kubectl: Kubectl, tmp_path: Path) -> None:
        """The server-side tables carry each kind's own columns."""
        manifest = tmp_path / "deploy.yaml"
        manifest.write_text(DEPLOY_MANIFEST)
        kubectl.run("apply", "-f", str(manifest))
        out = kubectl.run("get", "secret,sa,rolebinding,cronjob,pdb").stdout
        assert "secret/slack   Opaque   1" in out
        assert "serviceaccount/runbook   0" in out
        assert "Role/rollback" in out
        assert "30 3 * * 1" in out
        assert "N/A             1" in out  # MIN AVAILABLE, MAX UNAVAILABLE


class TestJobsFromCronJobs:
    """A Job created from the CronJob's template, listed and selected like upstream's."""

    def test_job_gets_generated_selector_and_labels(self, k8s: client.ApiClient) -> None:
        """The job strategy's generated selector names the Job's uid in labels and selector."""
        batch = client.BatchV1Api(k8s)
        job = client.V1Job(
            metadata=client.V1ObjectMeta(name="once"),
            spec=client.V1JobSpec(
                template=client.V1PodTemplateSpec(
                    spec=client.V1PodSpec(
                        restart_policy="Never",
                        containers=[client.V1Container(name="c", image="registry.local/x:1")],
                    )
                )
            ),
        )
        created = batch.create_namespaced_job(NS, job)
        uid = created.metadata.uid
        assert created.spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": uid}
        labels = created.spec.template.metadata.labels
        assert labels["batch.kubernetes.io/job-name"] == "once"
        assert labels["controller-uid"] == uid
        assert (created.spec.backoff_limit, created.spec.completions) == (6, 1)
        succeeded = batch.list_namespaced_job(NS, field_selector="status.successful=0").items
        assert [j.metadata.name for j in succeeded] == ["once"]
        with pytest.raises(ApiException) as err:
            batch.list_namespaced_job(NS, field_selector="status.active=1")
        assert err.value.status == 400
        assert json.loads(err.value.body)["message"] == (
            'field label "status.active" not supported for batchv1.Job'
        )


class TestValidation:
    """Each kind's own rules, answered 422 with upstream's text."""

    def test_cronjob_schedule_and_restart_policy(self, k8s: client.ApiClient) -> None:
        """A bad schedule and an Always restart policy are both listed as causes."""
        batch = client.BatchV1Api(k8s)
        body = {
            "metadata": {"name": "bad"},
            "spec": {
                "schedule": "every night",
                "jobTemplate": {
                    "spec": {
                        "template": {
                            "spec": {"containers": [{"name": "c", "image": "registry.local/x:1"}]}
                        }
                    }
                },
            },
        }
        with pytest.raises(ApiException) as err:
            batch.create_namespaced_cron_job(NS, body)
        status, message = invalid_message(err.value)
        assert status == 422
        assert message == (
            'CronJob.batch "bad" is invalid: ['
            'spec.schedule: Invalid value: "every night": expected exactly 5 fields, found 2: '
            "[every night], "
            "spec.jobTemplate.spec.template.spec.restartPolicy: Unsupported value: "
            '"Always": supported values: "OnFailure", "Never"]'
        )
        assert batch.list_namespaced_cron_job(NS).items == []

    def test_rolebinding_role_ref_is_immutable(self, k8s: client.ApiClient) -> None:
        """Changing roleRef is refused; the binding keeps its role."""
        rbac = client.RbacAuthorizationV1Api(k8s)
        rbac.create_namespaced_role_binding(
            NS,
            {
                "metadata": {"name": "b"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "a"},
                "subjects": [{"kind": "ServiceAccount", "name": "x", "namespace": NS}],
            },
        )
        with pytest.raises(ApiException) as err:
            rbac.patch_namespaced_role_binding("b", NS, {"roleRef": {"name": "other"}})
        status, message = invalid_message(err.value)
        assert status == 422
        assert "roleRef: Invalid value:" in message
        assert message.endswith("cannot change roleRef")
        assert rbac.read_namespaced_role_binding("b", NS).role_ref.name == "a"

    def test_lease_duration_must_be_positive(self, k8s: client.ApiClient) -> None:
        """A negative leaseDurationSeconds is 422 with ValidateLeaseSpec's text."""
        coordination = client.CoordinationV1Api(k8s)
        body = {"metadata": {"name": "l"}, "spec": {"leaseDurationSeconds": -1}}
        with pytest.raises(ApiException) as err:
            coordination.create_namespaced_lease(NS, body)
        assert invalid_message(err.value) == (
            422,
            'Lease.coordination.k8s.io "l" is invalid: spec.leaseDurationSeconds: '
            "Invalid value: -1: must be greater than 0",
        )
        assert coordination.list_namespaced_lease(NS).items == []

    def test_pdb_cannot_set_both_bounds(self, k8s: client.ApiClient) -> None:
        """minAvailable with maxUnavailable is refused."""
        policy = client.PolicyV1Api(k8s)
        body = {
            "metadata": {"name": "p"},
            "spec": {"minAvailable": 1, "maxUnavailable": 1, "selector": {"matchLabels": {}}},
        }
        with pytest.raises(ApiException) as err:
            policy.create_namespaced_pod_disruption_budget(NS, body)
        status, message = invalid_message(err.value)
        assert status == 422
        assert message.endswith("minAvailable and maxUnavailable cannot be both set")


class TestWatchNewKinds:
    """Secrets and CronJobs are watched like every other kind."""

    def test_watch_sees_added_modified_deleted(self, k8s: client.ApiClient) -> None:
        """A watch from the list's resourceVersion sees the whole life of a Secret."""
        core = client.CoreV1Api(k8s)
        rv = core.list_namespaced_secret(NS).metadata.resource_version
        core.create_namespaced_secret(NS, {"metadata": {"name": "s"}, "data": {"a": "MQ=="}})
        core.patch_namespaced_secret("s", NS, {"data": {"b": "Mg=="}})
        core.delete_namespaced_secret("s", NS)
        w = watch.Watch()
        seen = [
            (e["type"], sorted((e["object"].data or {}).keys()))
            for e in w.stream(
                core.list_namespaced_secret, NS, resource_version=rv, timeout_seconds=1
            )
        ]
        assert seen == [("ADDED", ["a"]), ("MODIFIED", ["a", "b"]), ("DELETED", ["a", "b"])]


class TestFieldSelectors:
    """Only each kind's field labels are accepted (upstream's conversion funcs)."""

    @pytest.mark.parametrize(
        ("kind", "selector", "message"),
        [
            ("pods", "spec.foo=1", "field label not supported: spec.foo"),
            (
                "deployments",
                "status.replicas=3",
                '"status.replicas" is not a known field selector: only "metadata.name", '
                '"metadata.namespace"',
            ),
            ("nodes", "metadata.namespace=x", "field label not supported: metadata.namespace"),
        ],
    )
    def test_unsupported_label_is_400(
        self, kubectl: Kubectl, kind: str, selector: str, message: str
    ) -> None:
        """kubectl shows the server's 400 message and lists nothing."""
        proc = kubectl.run("get", kind, "--field-selector", selector, check=False)
        assert proc.returncode == 1
        assert proc.stdout == ""
        assert "(BadRequest)" in proc.stderr
        assert proc.stderr.strip().endswith(message)

    def test_supported_labels_filter(self, k8s: client.ApiClient) -> None:
        """Pod, event, secret and node labels select what they name."""
        core = client.CoreV1Api(k8s)
        core.create_namespaced_secret(
            NS,
            {
                "metadata": {"name": "tls"},
                "type": "kubernetes.io/tls",
                "data": {"tls.crt": "", "tls.key": ""},
            },
        )
        core.create_namespaced_secret(NS, {"metadata": {"name": "plain"}})
        tls = core.list_namespaced_secret(NS, field_selector="type=kubernetes.io/tls").items
        assert [s.metadata.name for s in tls] == ["tls"]
        node = NODE_NAME
        on_node = core.list_namespaced_pod(NS, field_selector=f"spec.nodeName={node}").items
        assert len(on_node) == 3
        assert core.list_namespaced_pod(NS, field_selector="spec.hostNetwork=true").items == []
        started = core.list_namespaced_event(NS, field_selector="reason=Started").items
        assert started
        assert {e.reason for e in started} == {"Started"}
        schedulable = core.list_node(field_selector="spec.unschedulable=false").items
        assert [n.metadata.name for n in schedulable] == [node]
        with pytest.raises(ApiException) as err:
            core.list_namespaced_secret(NS, field_selector="data.x=1")
        assert err.value.status == 400


class TestNodesAndTop:
    """`kubectl get nodes` and `kubectl top`, from the node and the pods' own figures."""

    def test_get_nodes(self, kubectl: Kubectl) -> None:
        """One Ready node, at the cluster's version, that every pod is bound to."""
        out = kubectl.run("get", "nodes").stdout.splitlines()
        assert out[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
        assert len(out) == 2
        assert out[1].split()[1:5:3] == ["Ready", "v1.37.0"]
        node = kubectl.json("get", "node", out[1].split()[0])
        assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.37.0"
        pods = kubectl.json("get", "pods")["items"]
        assert {p["spec"]["nodeName"] for p in pods} == {node["metadata"]["name"]}

    def test_top_pods_shows_a_bad_release_growing(
        self, sb: sandbox.Sandbox, kubectl: Kubectl
    ) -> None:
        """Good pods use ~50m and flat memory; a -bad pod's memory grows as its /metrics say."""
        rows = kubectl.run("top", "pods", "--no-headers").stdout.splitlines()
        assert len(rows) == 3
        assert {r.split()[1] for r in rows} == {"50m"}
        kubectl.run("set", "image", "deployment/maia", "maia=registry.local/maia:1.6.0-bad")
        kubectl.run("rollout", "status", "deployment/maia", "--timeout=20s")

        def memory() -> dict[str, int]:
            out = kubectl.run("top", "pods", "--no-headers").stdout.splitlines()
            return {r.split()[0]: int(r.split()[2].removesuffix("Mi")) for r in out}

        first = wait_for(lambda: len(memory()) == 3 and memory(), what="3 pods in top")
        time.sleep(1.2)
        later = memory()
        assert set(later) == set(first)
        assert all(later[name] >= first[name] + 3 for name in first)  # 4 MiB/s
        node_row = kubectl.run("top", "node", "--no-headers").stdout.split()
        assert node_row[0] == "crystal-sandbox-node"

    def test_pod_metrics_through_the_client(self, k8s: client.ApiClient) -> None:
        """PodMetrics list for the namespace, one per running pod, labels included."""
        custom = client.CustomObjectsApi(k8s)
        found: dict[str, Any] = custom.list_namespaced_custom_object(
            "metrics.k8s.io", "v1beta1", NS, "pods", label_selector="app=maia"
        )
        assert found["kind"] == "PodMetricsList"
        assert len(found["items"]) == 3
        item = found["items"][0]
        assert item["containers"][0]["name"] == "maia"
        assert item["containers"][0]["usage"]["memory"].endswith("Ki")
        assert item["metadata"]["labels"]["app"] == "maia"


class TestCreateCommands:
    """`kubectl create <kind>` sends protobuf; the sandbox decodes it (field numbers from kubectl)."""

    def test_typed_creates_store_what_kubectl_sent(
        self, sb: sandbox.Sandbox, kubectl: Kubectl
    ) -> None:
        """Each typed create succeeds and the object has the fields the flags set."""
        commands = [
            ("deployment", "web", "--image=registry.local/web:1", "--replicas=2", "--port=8080"),
            ("configmap", "c", "--from-literal=a=1", "--from-literal=b=two"),
            ("secret", "generic", "s", "--from-literal=token=xoxb-fake"),
            ("serviceaccount", "robot"),
            ("role", "reader", "--verb=get,list", "--resource=pods"),
            ("rolebinding", "reader", "--role=reader", "--serviceaccount=crystal:robot"),
            ("cronjob", "nightly", "--image=registry.local/x:1", "--schedule=0 3 * * *"),
            ("job", "once", "--from=cronjob/nightly"),
            ("service", "clusterip", "api", "--tcp=80:8080"),
            ("poddisruptionbudget", "web", "--selector=app=web", "--min-available=1"),
            ("namespace", "scratch"),
        ]
        for args in commands:
            proc = kubectl.run("create", *args)
            assert proc.stdout.strip().endswith("created"), (args, proc.stdout)
        web = kubectl.json("get", "deployment", "web")
        assert web["spec"]["replicas"] == 2
        container = web["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == "registry.local/web:1"
        assert container["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]
        assert kubectl.json("get", "configmap", "c")["data"] == {"a": "1", "b": "two"}
        secret = kubectl.json("get", "secret", "s")
        assert base64.b64decode(secret["data"]["token"]) == b"xoxb-fake"
        role = kubectl.json("get", "role", "reader")["rules"]
        assert role == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]
        binding = kubectl.json("get", "rolebinding", "reader")
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "robot", "namespace": "crystal"}
        ]
        assert kubectl.json("get", "cronjob", "nightly")["spec"]["schedule"] == "0 3 * * *"
        job = kubectl.json("get", "job", "once")
        assert job["metadata"]["ownerReferences"][0]["name"] == "nightly"
        assert kubectl.json("get", "service", "api")["spec"]["ports"][0]["targetPort"] == 8080
        assert kubectl.json("get", "pdb", "web")["spec"]["minAvailable"] == 1
        assert kubectl.run("get", "namespace", "scratch").returncode == 0
        wait_for(
            lambda: (
                (kubectl.json("get", "deployment", "web")["status"].get("availableReplicas") or 0)
                == 2
            ),
            what="the created Deployment to roll out",
        )

    def test_undecodable_protobuf_is_400(self, sb: sandbox.Sandbox) -> None:
        """A protobuf body that is not a known object is refused with 400, nothing stored."""
        import urllib.error
        import urllib.request

        request = urllib.request.Request(  # noqa: S310 - the loopback sandbox
            f"{sb.url}/api/v1/namespaces/crystal/configmaps",
            data=b"k8s\x00\x0a\x05\x0a\x01x\x12\x00",
            headers={"Content-Type": "application/vnd.kubernetes.protobuf"},
            method="POST",
        )
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(request)  # noqa: S310 - the loopback sandbox
        assert err.value.code == 400
        body = json.loads(err.value.read())
        assert body["message"].startswith("the protobuf request body could not be decoded")

    def test_other_media_types_are_415(self, sb: sandbox.Sandbox) -> None:
        """YAML (which the sandbox does not decode) gets a real server's 415 wording."""
        import urllib.error
        import urllib.request

        request = urllib.request.Request(  # noqa: S310 - the loopback sandbox
            f"{sb.url}/api/v1/namespaces/crystal/configmaps",
            data=b"metadata: {name: y}\n",
            headers={"Content-Type": "application/yaml"},
            method="POST",
        )
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(request)  # noqa: S310 - the loopback sandbox
        assert err.value.code == 415
        assert json.loads(err.value.read())["message"] == (
            "the body of the request was in an unknown format - accepted media types include: "
            "application/json, application/vnd.kubernetes.protobuf"
        )
