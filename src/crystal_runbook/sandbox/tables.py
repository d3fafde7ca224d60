"""Server-side ``Table`` rendering, so ``kubectl get`` prints the columns users know.

kubectl asks for ``application/json;as=Table;g=meta.k8s.io;v=v1``; the API server answers
with column definitions and one row of cells per object. The columns here are those of the
real printers (``NAME READY UP-TO-DATE AVAILABLE AGE`` for Deployments, ``NAME READY STATUS
RESTARTS AGE`` for pods, ...); types without printers get ``NAME AGE``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from crystal_runbook.sandbox import resources, selectors, store
from crystal_runbook.sandbox.tablefmt import Column, age, human_age

__all__ = ["human_age", "pod_phase_text", "table"]

Obj = dict[str, Any]
_age = age


def _containers(obj: Obj) -> list[Obj]:
    spec = obj.get("spec") or {}
    template = spec.get("template")
    if isinstance(template, dict):
        spec = template.get("spec") or {}
    return list(spec.get("containers") or [])


def _selector(obj: Obj) -> str:
    try:
        return str(selectors.from_structured((obj.get("spec") or {}).get("selector")))
    except selectors.SelectorError:
        return ""


def _deployment(obj: Obj, now: float) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    containers = _containers(obj)
    return [
        obj["metadata"]["name"],
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        _age(obj, now),
        ",".join(str(c.get("name")) for c in containers),
        ",".join(str(c.get("image")) for c in containers),
        _selector(obj),
    ]


def _replicaset(obj: Obj, now: float) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    containers = _containers(obj)
    return [
        obj["metadata"]["name"],
        spec.get("replicas", 0),
        status.get("replicas", 0),
        status.get("readyReplicas", 0),
        _age(obj, now),
        ",".join(str(c.get("name")) for c in containers),
        ",".join(str(c.get("image")) for c in containers),
        _selector(obj),
    ]


def pod_phase_text(obj: Obj) -> str:
    """The STATUS column of ``kubectl get pods``."""
    if obj["metadata"].get("deletionTimestamp"):
        return "Terminating"
    status = obj.get("status") or {}
    reason = status.get("phase") or "Pending"
    for cs in status.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting")
        terminated = (cs.get("state") or {}).get("terminated")
        if waiting and waiting.get("reason"):
            reason = waiting["reason"]
        elif terminated and terminated.get("reason"):
            reason = terminated["reason"]
    if reason == "Pending" and not status.get("containerStatuses"):
        return "Pending"
    return str(reason)


def _pod(obj: Obj, now: float) -> list[Any]:
    status = obj.get("status") or {}
    statuses = status.get("containerStatuses") or []
    total = len((obj.get("spec") or {}).get("containers") or [])
    ready = sum(1 for cs in statuses if cs.get("ready"))
    restarts = sum(int(cs.get("restartCount") or 0) for cs in statuses)
    restart_text = str(restarts)
    last = [
        store.parse_time(((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt"))
        for cs in statuses
    ]
    finished = [t for t in last if t]
    if restarts and finished:
        restart_text = f"{restarts} ({human_age(now - max(finished))} ago)"
    return [
        obj["metadata"]["name"],
        f"{ready}/{total}",
        pod_phase_text(obj),
        restart_text,
        _age(obj, now),
        status.get("podIP") or "<none>",
        (obj.get("spec") or {}).get("nodeName") or "<none>",
        "<none>",
        "<none>",
    ]


def _namespace(obj: Obj, now: float) -> list[Any]:
    return [
        obj["metadata"]["name"],
        (obj.get("status") or {}).get("phase", "Active"),
        _age(obj, now),
    ]


def _service(obj: Obj, now: float) -> list[Any]:
    spec = obj.get("spec") or {}
    ports = (
        ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in spec.get("ports") or [])
        or "<none>"
    )
    selector = ",".join(f"{k}={v}" for k, v in sorted((spec.get("selector") or {}).items()))
    return [
        obj["metadata"]["name"],
        spec.get("type", "ClusterIP"),
        spec.get("clusterIP", "<none>"),
        "<none>",
        ports,
        _age(obj, now),
        selector or "<none>",
    ]


def _configmap(obj: Obj, now: float) -> list[Any]:
    return [
        obj["metadata"]["name"],
        len(obj.get("data") or {}) + len(obj.get("binaryData") or {}),
        _age(obj, now),
    ]


def _lease(obj: Obj, now: float) -> list[Any]:
    holder = (obj.get("spec") or {}).get("holderIdentity") or ""
    return [obj["metadata"]["name"], holder, _age(obj, now)]


def _event(obj: Obj, now: float) -> list[Any]:
    last = store.parse_time(obj.get("lastTimestamp") or obj.get("eventTime"))
    involved = obj.get("involvedObject") or {}
    kind = str(involved.get("kind") or "").lower()
    return [
        "<unknown>" if last is None else human_age(now - last),
        obj.get("type", "Normal"),
        obj.get("reason", ""),
        f"{kind}/{involved.get('name', '')}",
        obj.get("message", ""),
    ]


def _hpa(obj: Obj, now: float) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    ref = spec.get("scaleTargetRef") or {}
    return [
        obj["metadata"]["name"],
        f"{ref.get('kind', '')}/{ref.get('name', '')}",
        "<unknown>",
        spec.get("minReplicas", 1),
        spec.get("maxReplicas", 0),
        status.get("currentReplicas", 0),
        _age(obj, now),
    ]


def _default(obj: Obj, now: float) -> list[Any]:
    return [obj["metadata"]["name"], _age(obj, now)]


_PRINTERS: dict[str, tuple[list[Column], Callable[[Obj, float], list[Any]]]] = {
    "deployments": (
        [
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        _deployment,
    ),
    "replicasets": (
        [
            ("Name", "string", 0),
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        _replicaset,
    ),
    "pods": (
        [
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "string", 0),
            ("Age", "string", 0),
            ("IP", "string", 1),
            ("Node", "string", 1),
            ("Nominated Node", "string", 1),
            ("Readiness Gates", "string", 1),
        ],
        _pod,
    ),
    "namespaces": (
        [("Name", "string", 0), ("Status", "string", 0), ("Age", "string", 0)],
        _namespace,
    ),
    "services": (
        [
            ("Name", "string", 0),
            ("Type", "string", 0),
            ("Cluster-IP", "string", 0),
            ("External-IP", "string", 0),
            ("Port(s)", "string", 0),
            ("Age", "string", 0),
            ("Selector", "string", 1),
        ],
        _service,
    ),
    "configmaps": (
        [("Name", "string", 0), ("Data", "integer", 0), ("Age", "string", 0)],
        _configmap,
    ),
    "leases": ([("Name", "string", 0), ("Holder", "string", 0), ("Age", "string", 0)], _lease),
    "events": (
        [
            ("Last Seen", "string", 0),
            ("Type", "string", 0),
            ("Reason", "string", 0),
            ("Object", "string", 0),
            ("Message", "string", 0),
        ],
        _event,
    ),
    "horizontalpodautoscalers": (
        [
            ("Name", "string", 0),
            ("Reference", "string", 0),
            ("Targets", "string", 0),
            ("MinPods", "integer", 0),
            ("MaxPods", "integer", 0),
            ("Replicas", "integer", 0),
            ("Age", "string", 0),
        ],
        _hpa,
    ),
}
_DEFAULT: tuple[list[Column], Callable[[Obj, float], list[Any]]] = (
    [("Name", "string", 0), ("Age", "string", 0)],
    _default,
)


def _row_object(obj: Obj, include: str) -> Obj | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj["metadata"],
    }


def table(
    res: resources.Resource,
    objects: list[Obj],
    *,
    resource_version: str | None,
    include: str = "Metadata",
    continue_token: str = "",
) -> Obj:
    """A ``meta.k8s.io/v1`` Table of ``objects``."""
    found = _PRINTERS.get(res.plural)
    if found is None:
        from crystal_runbook.sandbox import printers  # the other kinds, loaded on first use

        found = printers.PRINTERS.get(res.plural, _DEFAULT)
    columns, printer = found
    now = time.time()
    rows = []
    for obj in objects:
        row: Obj = {"cells": printer(obj, now)}
        embedded = _row_object(obj, include)
        if embedded is not None:
            row["object"] = embedded
        rows.append(row)
    meta: Obj = {}
    if resource_version:
        meta["resourceVersion"] = resource_version
    if continue_token:
        meta["continue"] = continue_token
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": [
            {
                "name": name,
                "type": kind,
                "format": "name" if name == "Name" else "",
                "description": name,
                "priority": priority,
            }
            for name, kind, priority in columns
        ],
        "rows": rows,
    }
