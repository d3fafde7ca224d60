"""A Deployment's status: replica counts, the Available and Progressing conditions, deadlines.

Follows ``pkg/controller/deployment/sync.go`` (``calculateStatus``, ``syncDeploymentStatus``)
and ``progress.go`` (``syncRolloutStatus``, ``requeueStuckDeployment``): counts summed over
the Deployment's ReplicaSets, Available from the minimum availability, and Progressing
moved forward only during a rollout (not on a scaling event or while paused). When no
progress is made for ``progressDeadlineSeconds`` the condition turns False with
``ProgressDeadlineExceeded``; upstream records no Event for that, and neither does this.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

from crystal_runbook.sandbox import resources, store
from crystal_runbook.sandbox import rolloutmath as rm

Obj = dict[str, Any]

# condition reasons, as in k8s.io/kubernetes/pkg/controller/deployment/util
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
RS_UPDATED = "ReplicaSetUpdated"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"


def condition(status: Obj, kind: str) -> Obj | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


def set_condition(status: Obj, cond: Obj) -> None:
    """``SetDeploymentCondition``: no change when status and reason are the same."""
    conditions = list(status.get("conditions") or [])
    for i, existing in enumerate(conditions):
        if existing.get("type") == cond["type"]:
            if (
                existing.get("status") == cond["status"]
                and existing.get("reason") == cond["reason"]
            ):
                return
            if existing.get("status") == cond["status"]:
                cond["lastTransitionTime"] = existing.get("lastTransitionTime")
            conditions[i] = cond
            status["conditions"] = conditions
            return
    conditions.append(cond)
    status["conditions"] = conditions


def new_condition(kind: str, status: str, reason: str, message: str, at: float) -> Obj:
    stamp = store.rfc3339(at)
    return {
        "type": kind,
        "status": status,
        "lastUpdateTime": stamp,
        "lastTransitionTime": stamp,
        "reason": reason,
        "message": message,
    }


def calculate(d: Obj, new_rs: Obj | None, old_rs: list[Obj]) -> Obj:
    """``calculateStatus``: counts over every ReplicaSet and the Available condition."""
    all_rs = [*old_rs, *([new_rs] if new_rs else [])]
    want = rm.replicas(d)
    available = rm.status_count(all_rs, "availableReplicas")
    previous = d.get("status") or {}
    status: Obj = {
        "observedGeneration": d["metadata"].get("generation", 1),
        "replicas": rm.status_count(all_rs),
        "updatedReplicas": rm.status_count([new_rs]) if new_rs else 0,
        "readyReplicas": rm.status_count(all_rs, "readyReplicas"),
        "availableReplicas": available,
        "unavailableReplicas": max(rm.spec_count(all_rs) - available, 0),
        "terminatingReplicas": rm.status_count(all_rs, "terminatingReplicas"),
        "conditions": copy.deepcopy(previous.get("conditions") or []),
    }
    if previous.get("collisionCount"):
        status["collisionCount"] = previous["collisionCount"]
    now = time.time()
    if available >= want - rm.max_unavailable(d):
        cond = new_condition(
            "Available", "True", MIN_AVAILABLE, "Deployment has minimum availability.", now
        )
    else:
        cond = new_condition(
            "Available",
            "False",
            MIN_UNAVAILABLE,
            "Deployment does not have minimum availability.",
            now,
        )
    set_condition(status, cond)
    return status


def omit_zero(status: Obj) -> Obj:
    """Drop zero counts, as the API's ``omitempty`` does."""
    return {k: v for k, v in status.items() if v not in (0, None, [])}


class StatusWriter:
    """Writes a Deployment's status; keeps the precise time of each rollout's last progress."""

    def __init__(
        self, st: store.Store, schedule: Callable[[tuple[str, str, str], float], None]
    ) -> None:
        self._store = st
        self._schedule = schedule
        self.progress_at: dict[str, float] = {}  # uid -> time (conditions hold whole seconds)

    def write(self, d: Obj, status: Obj) -> None:
        status = omit_zero(status)
        meta = d["metadata"]
        stored = self._store.get(resources.DEPLOYMENTS, meta["namespace"], meta["name"])
        if stored is None or stored.uid != meta["uid"]:
            return
        if (stored.obj.get("status") or {}) == status:
            return
        fresh = stored.copy()
        fresh["status"] = status
        self._store.replace(resources.DEPLOYMENTS, fresh)

    def sync_status(self, d: Obj, new_rs: Obj | None, old_rs: list[Obj]) -> None:
        """``syncDeploymentStatus``: counts only (scaling events, paused Deployments)."""
        self.write(d, calculate(d, new_rs, old_rs))

    def sync_rollout_status(self, d: Obj, new_rs: Obj | None, old_rs: list[Obj]) -> None:
        """``syncRolloutStatus``: counts, then the Progressing condition and its deadline."""
        status = calculate(d, new_rs, old_rs)
        deadline = d["spec"].get("progressDeadlineSeconds")
        if deadline is None:
            status["conditions"] = [
                c for c in status["conditions"] if c.get("type") != "Progressing"
            ]
        else:
            self._progress(d, status, new_rs, int(deadline))
        self.write(d, status)

    def _progress(self, d: Obj, status: Obj, new_rs: Obj | None, deadline: int) -> None:
        uid = d["metadata"]["uid"]
        previous = d.get("status") or {}
        now = time.time()
        current = condition(previous, "Progressing")
        rs_name = new_rs["metadata"]["name"] if new_rs else None
        what = f'ReplicaSet "{rs_name}"' if rs_name else f'Deployment "{d["metadata"]["name"]}"'
        if (
            status["replicas"] == status["updatedReplicas"]
            and current is not None
            and current.get("reason") == NEW_RS_AVAILABLE
        ):
            return  # the latest rollout completed: nothing to estimate
        if rm.deployment_complete(d, status):
            msg = f"{what} has successfully progressed."
            set_condition(status, new_condition("Progressing", "True", NEW_RS_AVAILABLE, msg, now))
            self.progress_at.pop(uid, None)
            return
        if _progressing(previous, status):
            cond = new_condition("Progressing", "True", RS_UPDATED, f"{what} is progressing.", now)
            if current is not None and current.get("status") == "True":
                cond["lastTransitionTime"] = current.get("lastTransitionTime")
            status["conditions"] = [
                c for c in status["conditions"] if c.get("type") != "Progressing"
            ]
            set_condition(status, cond)
            self.progress_at[uid] = now
        elif self._timed_out(uid, status, deadline, now):
            # progress.go: only the condition changes; no Event is recorded
            msg = f"{what} has timed out progressing."
            set_condition(status, new_condition("Progressing", "False", TIMED_OUT, msg, now))
            self.progress_at.pop(uid, None)
            return
        progressing = condition(status, "Progressing")
        if progressing is not None and progressing.get("reason") != TIMED_OUT:
            # requeueStuckDeployment: look again when the deadline would pass
            since = (
                self.progress_at.get(uid)
                or store.parse_time(progressing.get("lastUpdateTime"))
                or now
            )
            self._schedule(
                ("deploy", d["metadata"]["namespace"], d["metadata"]["name"]),
                max(0.0, since + deadline - now) + 0.05,
            )

    def _timed_out(self, uid: str, status: Obj, deadline: int, now: float) -> bool:
        """``DeploymentTimedOut``."""
        cond = condition(status, "Progressing")
        if cond is None or cond.get("reason") == NEW_RS_AVAILABLE:
            return False
        if cond.get("reason") == TIMED_OUT:
            return True
        since = self.progress_at.get(uid) or store.parse_time(cond.get("lastUpdateTime"))
        return since is not None and since + deadline < now


def _progressing(previous: Obj, status: Obj) -> bool:
    """``DeploymentProgressing``: more updated, fewer old, more ready or available."""

    def get(s: Obj, key: str) -> int:
        return int(s.get(key) or 0)

    old_before = get(previous, "replicas") - get(previous, "updatedReplicas")
    old_now = get(status, "replicas") - get(status, "updatedReplicas")
    return (
        get(status, "updatedReplicas") > get(previous, "updatedReplicas")
        or old_now < old_before
        or get(status, "readyReplicas") > get(previous, "readyReplicas")
        or get(status, "availableReplicas") > get(previous, "availableReplicas")
    )
