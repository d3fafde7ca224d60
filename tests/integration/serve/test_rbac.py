"""deploy/'s Roles grant exactly what the product asks of the API server, verb by verb.

The sandbox logs every request it serves. The product does what a team's `serve` and its
on-call engineers do (a rollback, a scale past an HPA's bounds, logs, a follow, a drill long
enough for its run lock's heartbeat, and `serve --scheduler --watch` electing its leaders
with the scheduler's Lease in its own namespace, as deploy/ places it). Each request is then
read as the API server's authorizer reads it (API group, resource, subresource, verb,
namespace) and checked against the Role that deploy/ gives that namespace: every request is
allowed, and every verb a Role grants was needed by some request (the least verbs).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import yaml

from crystal_runbook import sandbox
from tests.conftest import REPO
from tests.integration.serve.conftest import BIN, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEPLOY = REPO / "deploy"
SERVE_NAMESPACE = "crystal-runbook"
"""Where deploy/ runs `serve` and keeps the scheduler's Lease (role-leader-election.yaml)."""
TARGET_NAMESPACE = "crystal"
"""The sandbox's namespace of maia; deploy/role-target.yaml's copy for it (`maia` there)."""
SERVICE_URLS = ("/_sandbox/", "/proxy/")
"""The sandbox's stand-ins for the service's own health and metrics URLs (the inventory's
`health_url` and scrape `url`): in production those go to the service, not the API server."""


@dataclass(frozen=True)
class Attributes:
    """A request as the API server's authorizer sees it."""

    namespace: str
    group: str
    resource: str
    verb: str

    def __str__(self) -> str:
        group = self.group or "core"
        return f"{self.verb} {group}/{self.resource} in {self.namespace}"


def attributes(request: dict[str, Any]) -> Attributes | None:
    """The authorizer's view of one logged request (None: discovery, which every
    authenticated user may read (system:discovery), or the service's own URLs)."""
    path: str = request["path"]
    if any(part in path for part in SERVICE_URLS):
        return None
    parts = path.strip("/").split("/")
    if parts[0] in ("version", "openapi") or parts == [""]:
        return None
    if parts[0] == "api":  # /api/v1/namespaces/NS/RESOURCE[/NAME[/SUB]]
        group, rest = "", parts[2:]
    else:  # /apis/GROUP/VERSION/namespaces/NS/...
        group, rest = (parts[1] if len(parts) > 1 else ""), parts[3:]
    if not rest:  # /api, /api/v1, /apis, /apis/GROUP/VERSION: discovery
        return None
    # anything else outside a namespace would need a ClusterRole, which deploy/ has not
    assert rest[0] == "namespaces", f"not a namespaced request: {path}"
    assert len(rest) >= 3, f"not a namespaced request: {path}"
    namespace, resource, tail = rest[1], rest[2], rest[3:]
    name = tail[0] if tail else None
    if len(tail) >= 2:
        resource = f"{resource}/{tail[1]}"
    query = parse_qs(request.get("query") or "")
    method = request["method"]
    if method == "GET":
        if query.get("watch", [""])[0] in ("true", "1"):
            verb = "watch"
        else:
            verb = "get" if name else "list"
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]
        if verb == "delete" and not name:
            verb = "deletecollection"
    return Attributes(namespace, group, resource, verb)


def granted(path: Path) -> set[tuple[str, str, str]]:
    """(group, resource, verb) of every rule of the Role in ``path``."""
    role = next(d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] == "Role")
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


ROLES = {
    SERVE_NAMESPACE: granted(DEPLOY / "role-leader-election.yaml"),
    TARGET_NAMESPACE: granted(DEPLOY / "role-target.yaml"),
}


@dataclass
class Practice:
    """The sandbox, an inventory like deploy/'s, and the product's CLI on them."""

    sb: sandbox.Sandbox
    root: Path

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CRYSTAL_", "KUBECONFIG", "SLACK_"))}
        env.update(
            CRYSTAL_STATE_DIR=str(self.root / ".crystal"),
            CRYSTAL_ACTOR="oncall",
            PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            HOME=str(self.root),
        )
        return env

    def argv(self, *args: str) -> list[str]:
        return [
            str(BIN / "crystal-runbook"),
            "--inventory",
            str(self.root / "inventory"),
            "--runbooks",
            str(REPO / "runbooks"),
            *args,
        ]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            self.argv(*args), cwd=self.root, env=self.env(), capture_output=True, text=True,
            timeout=180, check=False,
        )
        assert out.returncode == 0, f"{' '.join(args)}: {out.stdout}\n{out.stderr}"
        return out

    def kubectl(self, *args: str, stdin: str | None = None) -> None:
        out = subprocess.run(
            [str(BIN / "kubectl"), "--kubeconfig", str(self.sb.kubeconfig_path), *args],
            capture_output=True, text=True, timeout=60, check=False, input=stdin,
            env={**os.environ, "KUBECACHEDIR": str(self.root / "kube-cache")},
        )
        assert out.returncode == 0, out.stderr


@pytest.fixture
def practice(tmp_path: Path) -> Iterator[Practice]:
    running = sandbox.start(tmp_path / "cluster", ready_delay=0.1)
    running.config.update({"burn_ramp_seconds": 1.0, "backoff_base": 0.2})
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    kubeconfig = running.kubeconfig_path
    (inventory / "services.yaml").write_text(
        "default_environment: sandbox\nservices:\n  maia:\n    environments:\n      sandbox:\n"
        f"        kubernetes: {{context: crystal-sandbox, namespace: {TARGET_NAMESPACE}, "
        f"deployment: maia, kubeconfig: '{kubeconfig}'}}\n"
        f"        health_url: '{running.health_url()}'\n"
        f"        metrics: {{source: scrape, url: '{running.metrics_url()}'}}\n"
    )
    (inventory / "triggers.yaml").write_text((REPO / "inventory" / "triggers.yaml").read_text())
    (inventory / "serve.yaml").write_text(
        textwrap.dedent(
            f"""
            apiVersion: crystal-runbook/v1
            kind: Serve
            leader_election:
              kubernetes: {{context: crystal-sandbox, namespace: {SERVE_NAMESPACE}, kubeconfig: '{kubeconfig}'}}
              lease_duration: 4s
              renew_period: 0.5s
            scheduler: {{interval: 1s}}
            watch:
              - {{service: maia, env: sandbox, interval: 1s, auto_rollback: false}}
            """
        ).lstrip()
    )
    try:
        running.settle(10)
        yield Practice(running, tmp_path)
    finally:
        errors = running.internal_errors
        running.stop()
    assert errors == [], "\n".join(errors)


def test_the_roles_grant_what_the_product_asks_and_no_more(practice: Practice) -> None:
    """Every request of a rollback, scale, logs, drill and `serve` is allowed by deploy/'s
    Role for its namespace, and every verb those Roles grant is used."""
    practice.kubectl("create", "namespace", SERVE_NAMESPACE)
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "maia", "namespace": TARGET_NAMESPACE},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "maia"},
            "minReplicas": 2,
            "maxReplicas": 3,
        },
    }
    practice.kubectl("apply", "-f", "-", stdin=json.dumps(hpa))
    since = len(practice.sb.requests())  # what kubectl did is not the product's

    # two rollouts of at least 6 s each: the drill's run lock renews its Lease (every 10 s)
    practice.sb.config.update({"ready_delay": 6.0})
    practice.cli("drill", "maia")
    practice.sb.config.update({"ready_delay": 0.1})
    practice.cli("rollback", "maia", "--yes")
    practice.cli("scale", "maia", "--replicas", "5", "--hpa", "adjust", "--yes")
    practice.cli("health", "maia")
    practice.cli("logs", "maia", "--tail", "5")
    follow = subprocess.Popen(
        practice.argv("logs", "maia", "--follow", "--tail", "1"),
        cwd=practice.root, env=practice.env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert follow.stdout is not None
        follow.stdout.readline()  # it follows
    finally:
        follow.send_signal(signal.SIGINT)
        follow.communicate(timeout=30)

    log = practice.root / "serve.log"
    with log.open("w") as out:
        serve = subprocess.Popen(
            practice.argv("serve", "--scheduler", "--watch", "--host", "127.0.0.1", "--port", "0"),
            cwd=practice.root, env=practice.env(), stderr=out, stdout=subprocess.DEVNULL,
        )
    try:
        wait_for(lambda: log.read_text().count(" is the leader ") == 2, 60, "both duties led", log.read_text)
        time.sleep(2.0)  # renewals
    finally:
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(60) == 0, log.read_text()

    seen = {a for r in practice.sb.requests()[since:] if (a := attributes(r)) is not None}
    refused = sorted(
        str(a)
        for a in seen
        if a.namespace not in ROLES or (a.group, a.resource, a.verb) not in ROLES[a.namespace]
    )
    assert refused == [], f"requests deploy/'s Roles would refuse: {refused}"
    for namespace, rules in ROLES.items():
        used = {(a.group, a.resource, a.verb) for a in seen if a.namespace == namespace}
        unused = sorted(f"{verb} {group or 'core'}/{resource}" for group, resource, verb in rules - used)
        assert unused == [], f"granted in {namespace} and never used: {unused}"
