"""The few reads and writes crystal-runbook makes, by REST path (see ``client`` for why).

Deployments, their ReplicaSets and pods, pod logs, HorizontalPodAutoscalers and Leases; each
function takes the target and the step's deadline and returns the server's JSON.
"""

from __future__ import annotations

import time
from typing import Any

from crystal_runbook.kube import rollout
from crystal_runbook.kube.client import Kube, KubeTarget

APPS = "apps/v1"
LEASES = "coordination.k8s.io/v1"
HPAS = "autoscaling/v2"


def deployment(kube: Kube, target: KubeTarget, deadline: float | None) -> dict[str, Any]:
    return kube.json(
        "GET",
        target.path(APPS, "deployments", target.deployment),
        what=f"read deployment {target.deployment}",
        where=target.where,
        deadline=deadline,
    )


def deployments_path(target: KubeTarget) -> str:
    return target.path(APPS, "deployments")


def replicasets(
    kube: Kube, target: KubeTarget, dep: dict[str, Any], deadline: float | None
) -> list[dict[str, Any]]:
    """The ReplicaSets ``dep`` controls (selector, then controller reference)."""
    listed = kube.json(
        "GET",
        target.path(APPS, "replicasets"),
        what="list replicasets",
        where=target.where,
        deadline=deadline,
        query={"labelSelector": rollout.selector_string(dep)},
    )
    return rollout.owned_replicasets(dep, listed.get("items", []))


def pods(
    kube: Kube, target: KubeTarget, selector: str, deadline: float | None
) -> tuple[list[dict[str, Any]], str]:
    """Pods matching ``selector`` and the list's resourceVersion (to watch from)."""
    listed = kube.json(
        "GET",
        target.path("", "pods"),
        what="list pods",
        where=target.where,
        deadline=deadline,
        query={"labelSelector": selector},
    )
    return list(listed.get("items", [])), str(listed.get("metadata", {}).get("resourceVersion", ""))


def pod_log(
    kube: Kube,
    target: KubeTarget,
    pod: str,
    *,
    container: str | None,
    tail: int | None,
    since: float | None,
    deadline: float,
) -> str:
    """A pod's recent log text."""
    response = kube.stream(
        target.path("", "pods", pod, "log"),
        what=f"read logs of {pod}",
        where=target.where,
        query={
            "container": container,
            "tailLines": tail,
            "sinceSeconds": int(since) if since else None,
        },
        read_timeout=max(1.0, min(15.0, deadline - time.monotonic())),
    )
    try:
        return str(response.read().decode("utf-8", "replace"))
    finally:
        response.release_conn()
        response.close()
