"""``kubectl get`` columns of the kinds a deploy of this product adds to the workloads.

Kept apart from ``tables`` (which renders Tables and prints the workload kinds) so that
neither grows past one screenful of concerns. Each printer follows the upstream printer in
``pkg/printers/internalversion/printers.go`` (``printNode``, ``printSecret``, ``printJob``,
``printCronJob``, ``printPodDisruptionBudget``, ``printRole``, ``printRoleBinding``, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crystal_runbook.sandbox import store
from crystal_runbook.sandbox.tablefmt import Column, age, human_age, selector_text

Obj = dict[str, Any]
Printer = tuple[list[Column], Callable[[Obj, float], list[Any]]]


def _node(obj: Obj, now: float) -> list[Any]:
    status = obj.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    state = "Ready" if ready and ready.get("status") == "True" else "NotReady"
    if (obj.get("spec") or {}).get("unschedulable"):
        state += ",SchedulingDisabled"
    labels = obj["metadata"].get("labels") or {}
    roles = sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/"))
    info = status.get("nodeInfo") or {}
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    return [
        obj["metadata"]["name"],
        state,
        ",".join(roles) or "<none>",
        age(obj, now),
        info.get("kubeletVersion", ""),
        addresses.get("InternalIP", "<none>"),
        addresses.get("ExternalIP", "<none>"),
        info.get("osImage", "<unknown>"),
        info.get("kernelVersion", "<unknown>"),
        info.get("containerRuntimeVersion", "<unknown>"),
    ]


def _secret(obj: Obj, now: float) -> list[Any]:
    return [obj["metadata"]["name"], obj.get("type", ""), len(obj.get("data") or {}), age(obj, now)]


def _serviceaccount(obj: Obj, now: float) -> list[Any]:
    return [obj["metadata"]["name"], len(obj.get("secrets") or []), age(obj, now)]


def _role(obj: Obj, now: float) -> list[Any]:
    return [obj["metadata"]["name"], obj["metadata"].get("creationTimestamp", "")]


def _rolebinding(obj: Obj, now: float) -> list[Any]:
    ref = obj.get("roleRef") or {}
    subjects = obj.get("subjects") or []

    def names(kind: str) -> str:
        found = [
            (f"{s.get('namespace', '')}/{s.get('name')}" if kind == "ServiceAccount" else s["name"])
            for s in subjects
            if s.get("kind") == kind
        ]
        return ", ".join(found)

    return [
        obj["metadata"]["name"],
        f"{ref.get('kind', '')}/{ref.get('name', '')}",
        age(obj, now),
        names("User"),
        names("Group"),
        names("ServiceAccount"),
    ]


def _template_containers(spec: Obj) -> list[Obj]:
    return list(((spec.get("template") or {}).get("spec") or {}).get("containers") or [])


def _job_status(status: Obj) -> str:
    for cond in status.get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            return "Complete"
        if cond.get("type") == "Failed":
            return "Failed"
        if cond.get("type") == "Suspended":
            return "Suspended"
    return "Running"


def _job(obj: Obj, now: float) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    completions = spec.get("completions")
    done = int(status.get("succeeded") or 0)
    if completions is not None:
        shown = f"{done}/{completions}"
    else:
        shown = f"{done}/1 of {spec.get('parallelism', 1)}"
    start = store.parse_time(status.get("startTime"))
    end = store.parse_time(status.get("completionTime")) or now
    containers = _template_containers(spec)
    return [
        obj["metadata"]["name"],
        _job_status(status),
        shown,
        human_age(end - start) if start else "",
        age(obj, now),
        ",".join(str(c.get("name")) for c in containers),
        ",".join(str(c.get("image")) for c in containers),
        selector_text(spec.get("selector")),
    ]


def _cronjob(obj: Obj, now: float) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    last = store.parse_time(status.get("lastScheduleTime"))
    job_spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    containers = _template_containers(job_spec)
    return [
        obj["metadata"]["name"],
        spec.get("schedule", ""),
        spec.get("timeZone") or "<none>",
        "True" if spec.get("suspend") else "False",
        len(status.get("active") or []),
        human_age(now - last) if last else "<none>",
        age(obj, now),
        ",".join(str(c.get("name")) for c in containers),
        ",".join(str(c.get("image")) for c in containers),
        selector_text(job_spec.get("selector")) or "<none>",
    ]


def _pdb(obj: Obj, now: float) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return [
        obj["metadata"]["name"],
        str(spec["minAvailable"]) if "minAvailable" in spec else "N/A",
        str(spec["maxUnavailable"]) if "maxUnavailable" in spec else "N/A",
        int(status.get("disruptionsAllowed") or 0),
        age(obj, now),
    ]


PRINTERS: dict[str, Printer] = {
    "nodes": (
        [
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Roles", "string", 0),
            ("Age", "string", 0),
            ("Version", "string", 0),
            ("Internal-IP", "string", 1),
            ("External-IP", "string", 1),
            ("OS-Image", "string", 1),
            ("Kernel-Version", "string", 1),
            ("Container-Runtime", "string", 1),
        ],
        _node,
    ),
    "secrets": (
        [("Name", "string", 0), ("Type", "string", 0), ("Data", "string", 0), ("Age", "string", 0)],
        _secret,
    ),
    "serviceaccounts": (
        [("Name", "string", 0), ("Secrets", "string", 0), ("Age", "string", 0)],
        _serviceaccount,
    ),
    "roles": ([("Name", "string", 0), ("Created At", "date", 0)], _role),
    "rolebindings": (
        [
            ("Name", "string", 0),
            ("Role", "string", 0),
            ("Age", "string", 0),
            ("Users", "string", 1),
            ("Groups", "string", 1),
            ("ServiceAccounts", "string", 1),
        ],
        _rolebinding,
    ),
    "jobs": (
        [
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Completions", "string", 0),
            ("Duration", "string", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        _job,
    ),
    "cronjobs": (
        [
            ("Name", "string", 0),
            ("Schedule", "string", 0),
            ("Timezone", "string", 0),
            ("Suspend", "boolean", 0),
            ("Active", "integer", 0),
            ("Last Schedule", "string", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        _cronjob,
    ),
    "poddisruptionbudgets": (
        [
            ("Name", "string", 0),
            ("Min Available", "string", 0),
            ("Max Unavailable", "string", 0),
            ("Allowed Disruptions", "integer", 0),
            ("Age", "string", 0),
        ],
        _pdb,
    ),
}
