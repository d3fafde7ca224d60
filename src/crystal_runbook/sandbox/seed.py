"""The practice cluster's starting state: namespace ``crystal`` and the ``maia`` service.

``maia`` is a Deployment of 3 replicas (label ``app=maia``, env ``CRYSTAL_MODE=hybrid``,
``CRYSTAL_WEIGHT=0.3``) with two revisions, as if it had been deployed twice:
revision 1 = ``registry.local/maia:1.4.2`` (ReplicaSet scaled to 0) and revision 2, current,
= ``registry.local/maia:1.5.0`` with 3 Ready pods. A Service ``maia`` selects its pods (the
health URL goes through it) and a ConfigMap holds the feature flags. Objects are built
through the same defaulting and hashing as API requests, so a rollback to revision 1 finds
revision 1's ReplicaSet exactly as it would on a real cluster.
"""

from __future__ import annotations

import copy
import time
from typing import Any

from crystal_runbook.sandbox import admission, deployments, hashing, resources, rest, store
from crystal_runbook.sandbox.kubelet import Kubelet
from crystal_runbook.sandbox.replicasets import owner_ref

NAMESPACE = "crystal"
NAME = "maia"
IMAGE_V1 = "registry.local/maia:1.4.2"
IMAGE_V2 = "registry.local/maia:1.5.0"
REPLICAS = 3
POD_AGE = 60.0  # seconds the seeded pods have been running (they have logs and counters)


def maia_deployment(image: str = IMAGE_V2, replicas: int = REPLICAS) -> dict[str, Any]:
    """The ``maia`` Deployment manifest (undefaulted), as a user would write it."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": {"app": NAME}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": NAME}},
            "template": {
                "metadata": {"labels": {"app": NAME}},
                "spec": {
                    "containers": [
                        {
                            "name": NAME,
                            "image": image,
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "env": [
                                {"name": "CRYSTAL_MODE", "value": "hybrid"},
                                {"name": "CRYSTAL_WEIGHT", "value": "0.3"},
                            ],
                            "readinessProbe": {
                                "httpGet": {"path": "/health", "port": 8080},
                                "periodSeconds": 5,
                            },
                        }
                    ]
                },
            },
        },
    }


def _replicaset(
    d: dict[str, Any], template: dict[str, Any], rev: int, replicas: int, created: float
) -> dict[str, Any]:
    template = copy.deepcopy(template)
    pod_hash = hashing.template_hash(template)
    template["metadata"].setdefault("labels", {})[hashing.HASH_LABEL] = pod_hash
    selector = copy.deepcopy(d["spec"]["selector"])
    selector["matchLabels"][hashing.HASH_LABEL] = pod_hash
    surge, _ = deployments.fenceposts(d)
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{NAME}-{pod_hash}",
            "namespace": NAMESPACE,
            "labels": dict(template["metadata"]["labels"]),
            "annotations": {
                deployments.REVISION: str(rev),
                deployments.DESIRED_REPLICAS: str(REPLICAS),
                deployments.MAX_REPLICAS: str(REPLICAS + surge),
            },
            "ownerReferences": [owner_ref(d)],
            "creationTimestamp": store.rfc3339(created),
        },
        "spec": {"replicas": replicas, "selector": selector, "template": template},
        "status": {"replicas": 0},
    }


def seed(st: store.Store, kubelet: Kubelet) -> None:
    """Create the seed objects; the ``maia`` pods start already Ready."""
    api = rest.Rest(st)
    now = time.time()
    for ns in ("default", NAMESPACE):
        api.create(resources.NAMESPACES, "", {"metadata": {"name": ns}})
    d = maia_deployment(IMAGE_V1)
    d["metadata"]["creationTimestamp"] = store.rfc3339(now - 3600)
    admission.default(resources.DEPLOYMENTS, d)
    admission.validate(resources.DEPLOYMENTS, d)
    d["status"] = {}
    created = st.create(resources.DEPLOYMENTS, d)
    d = created.copy()
    rs1 = _replicaset(d, d["spec"]["template"], 1, 0, now - 3600)
    st.create(resources.REPLICASETS, rs1)
    d["spec"]["template"]["spec"]["containers"][0]["image"] = IMAGE_V2
    d["metadata"].setdefault("annotations", {})[deployments.REVISION] = "2"
    d = st.replace(resources.DEPLOYMENTS, d).copy()
    rs2 = _replicaset(d, d["spec"]["template"], 2, REPLICAS, now - 1800)
    rs2_stored = st.create(resources.REPLICASETS, rs2)
    for _ in range(REPLICAS):
        template = rs2["spec"]["template"]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{rs2['metadata']['name']}-{hashing.random_suffix()}",
                "generateName": f"{rs2['metadata']['name']}-",
                "namespace": NAMESPACE,
                "labels": dict(template["metadata"]["labels"]),
                "ownerReferences": [owner_ref(rs2_stored.obj)],
            },
            "spec": copy.deepcopy(template["spec"]),
            "status": {"phase": "Pending", "qosClass": "BestEffort"},
        }
        pod["spec"]["enableServiceLinks"] = True
        pod["metadata"]["creationTimestamp"] = store.rfc3339(now - POD_AGE)
        stored = st.create(resources.PODS, pod)
        kubelet.sync(NAMESPACE, stored.name, started_at=now - POD_AGE)
    api.create(
        resources.SERVICES,
        NAMESPACE,
        {
            "metadata": {"name": NAME, "labels": {"app": NAME}},
            "spec": {
                "selector": {"app": NAME},
                "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
            },
        },
    )
    api.create(
        resources.CONFIGMAPS,
        NAMESPACE,
        {
            "metadata": {"name": f"{NAME}-flags", "labels": {"app": NAME}},
            "data": {
                "crystalEnabled": "true",
                "paradoxAccumulation": "true",
                "emergenceGeneration": "false",
                "collectiveResonance": "false",
                "multiUserSync": "false",
            },
        },
    )
