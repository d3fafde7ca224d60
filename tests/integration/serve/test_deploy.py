"""deploy/: the API server (the sandbox, with real kubectl) accepts every manifest, and the
inventory they ship validates."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from crystal_runbook import sandbox
from crystal_runbook.engine import inventory, yamlsource
from crystal_runbook.serving import loader
from tests.conftest import REPO
from tests.integration.serve.conftest import BIN

pytestmark = pytest.mark.integration

DEPLOY = REPO / "deploy"


@pytest.fixture
def kubectl(tmp_path: Path) -> Iterator[sandbox.Sandbox]:
    running = sandbox.start(tmp_path / ".crystal", ready_delay=0.1)
    try:
        yield running
    finally:
        errors = running.internal_errors
        running.stop()
    assert errors == [], "\n".join(errors)


def run(sb: sandbox.Sandbox, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "kubectl"), "--kubeconfig", str(sb.kubeconfig_path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "KUBECACHEDIR": str(sb.dir / "kube-cache")},
    )


def documents(path: Path) -> list[dict[str, object]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_server_dry_run_accepts_every_manifest(kubectl: sandbox.Sandbox) -> None:
    """`kubectl apply --dry-run=server -f deploy/` (and deploy/jobs/) succeeds for every object
    and stores nothing."""
    for namespace in ("crystal-runbook", "maia"):  # as namespace.yaml, and the target's
        assert run(kubectl, "create", "namespace", namespace).returncode == 0
    expected = [d for p in sorted(DEPLOY.glob("*.yaml")) for d in documents(p)]
    kinds = sorted(str(d["kind"]) for d in expected)
    assert kinds == sorted(
        [
            "ConfigMap",
            "Deployment",
            "Namespace",
            "PodDisruptionBudget",
            "Role",
            "Role",
            "RoleBinding",
            "RoleBinding",
            "Service",
            "ServiceAccount",
        ]
    )
    for directory in (DEPLOY, DEPLOY / "jobs"):
        out = run(kubectl, "apply", "--dry-run=server", "-f", str(directory))
        assert out.returncode == 0, out.stderr
        lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
        wanted = [d for p in sorted(directory.glob("*.yaml")) for d in documents(p)]
        assert len(lines) == len(wanted), out.stdout
        assert all(ln.endswith("(server dry run)") for ln in lines), out.stdout
    stored = run(kubectl, "get", "deployments,services,configmaps,jobs", "-n", "crystal-runbook", "-o", "json")
    assert stored.returncode == 0, stored.stderr
    assert json.loads(stored.stdout)["items"] == []


def test_manifests_hold_what_operations_md_promises() -> None:
    """Two replicas behind a PodDisruptionBudget, probes, limits, non-root and read-only,
    secrets by reference, and election Leases with get/create/update only."""
    (dep,) = documents(DEPLOY / "deployment.yaml")
    spec = dep["spec"]  # type: ignore[index]
    assert spec["replicas"] == 2
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert set(container["resources"]) == {"requests", "limits"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    secrets = {e["name"] for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})}
    assert secrets == {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "CRYSTAL_DATABASE_URL"}
    assert container["args"][:4] == ["serve", "--slack", "--scheduler", "--watch"]
    (pdb,) = documents(DEPLOY / "pdb.yaml")
    assert pdb["spec"]["minAvailable"] == 1  # type: ignore[index]
    role, _ = documents(DEPLOY / "role-leader-election.yaml")
    assert role["rules"] == [  # type: ignore[index]
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}
    ]


def test_shipped_inventory_of_the_configmap_validates(tmp_path: Path) -> None:
    """The ConfigMap's services.yaml and serve.yaml pass the product's own validation."""
    (config,) = documents(DEPLOY / "configmap.yaml")
    data = config["data"]  # type: ignore[index]
    (tmp_path / "services.yaml").write_text(data["services.yaml"])
    (tmp_path / "serve.yaml").write_text(data["serve.yaml"])
    services = inventory.parse(yamlsource.read_file(tmp_path / "services.yaml"))
    loaded = loader.load(tmp_path / "serve.yaml", inventory=services)
    assert loaded.serve.leader_election.kubernetes is None  # the pod's own namespace
    assert [(w.service, w.env) for w in loaded.serve.watch] == [("maia", "production")]
