"""The Deployment controller: ReplicaSets per template, revisions, rolling updates, status.

It follows Kubernetes' own controller (``pkg/controller/deployment``) closely enough that
kubectl's ``rollout status``/``history``/``undo`` and a client that implements rollback
the way kubectl does see the same objects a real cluster would show:

- one ReplicaSet ``<deployment>-<pod-template-hash>`` per distinct template; a template equal
  to an old ReplicaSet's (a rollback) reuses it and moves its
  ``deployment.kubernetes.io/revision`` to max+1, keeping the old number in
  ``deployment.kubernetes.io/revision-history``;
- rolling updates honour maxSurge/maxUnavailable (percentages rounded as Kubernetes does);
  Recreate scales old to zero first; ``spec.paused`` stops rollouts but not scaling;
- ``revisionHistoryLimit`` old ReplicaSets are kept once a rollout completes;
- status carries observedGeneration, replica counts and the Available and Progressing
  conditions with Kubernetes' reasons, including ProgressDeadlineExceeded once no progress was
  made for ``progressDeadlineSeconds``.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from typing import Any

from crystal_runbook.sandbox import events, hashing, resources, store
from crystal_runbook.sandbox.replicasets import claim, owner_ref

COMPONENT = "deployment-controller"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
SKIP_ANNOTATIONS = frozenset(
    {
        LAST_APPLIED,
        REVISION,
        REVISION_HISTORY,
        DESIRED_REPLICAS,
        MAX_REPLICAS,
        "deprecated.deployment.rollback.to",
    }
)

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

Obj = dict[str, Any]


def revision(obj: Obj) -> int:
    """The ``deployment.kubernetes.io/revision`` of an object (0 if missing or bad)."""
    try:
        return int((obj["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def scaled_value(value: Any, total: int, *, round_up: bool) -> int:
    """An int-or-percent (``1``, ``"25%"``) against ``total``, rounded as Kubernetes does."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.endswith("%"):
        try:
            pct = float(value[:-1])
        except ValueError:
            return 0
        exact = pct * total / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return 0


def fenceposts(deployment: Obj) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) resolved for the desired replica count."""
    spec = deployment["spec"]
    replicas = int(spec.get("replicas", 1))
    strategy = spec.get("strategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return 0, 0
    rolling = strategy.get("rollingUpdate") or {}
    surge = scaled_value(rolling.get("maxSurge", "25%"), replicas, round_up=True)
    unavailable = scaled_value(rolling.get("maxUnavailable", "25%"), replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_unavailable(deployment: Obj) -> int:
    replicas = int(deployment["spec"].get("replicas", 1))
    strategy = (deployment["spec"].get("strategy") or {}).get("type", "RollingUpdate")
    if strategy != "RollingUpdate" or replicas == 0:
        return 0
    return min(fenceposts(deployment)[1], replicas)


def _replicas(rs: Obj) -> int:
    return int(rs["spec"].get("replicas", 0))


def _status(rs: Obj, field: str) -> int:
    return int((rs.get("status") or {}).get(field) or 0)


def _condition(status: Obj, kind: str) -> Obj | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


def _set_condition(status: Obj, cond: Obj) -> None:
    """Kubernetes' SetDeploymentCondition: no change when status and reason are the same."""
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


def _new_condition(kind: str, status: str, reason: str, message: str, at: float) -> Obj:
    stamp = store.rfc3339(at)
    return {
        "type": kind,
        "status": status,
        "lastUpdateTime": stamp,
        "lastTransitionTime": stamp,
        "reason": reason,
        "message": message,
    }


class DeploymentController:
    """Syncs one Deployment at a time (called from the work queue)."""

    def __init__(
        self,
        st: store.Store,
        recorder: events.Recorder,
        schedule: Callable[[tuple[str, str, str], float], None],
    ) -> None:
        self._store = st
        self._recorder = recorder
        self._schedule = schedule
        # precise time of the last progress per deployment uid (conditions hold whole seconds)
        self._progress_at: dict[str, float] = {}

    # reading --------------------------------------------------------------------------

    def owned_replicasets(self, deployment: store.Stored) -> list[store.Stored]:
        """ReplicaSets this Deployment controls, adopting orphans its selector matches."""
        out = claim(self._store, deployment, resources.REPLICASETS)
        out.sort(key=lambda s: (s.obj["metadata"]["creationTimestamp"], s.name))
        return out

    # syncing --------------------------------------------------------------------------

    def sync(self, namespace: str, name: str) -> None:
        with self._store.lock:
            stored = self._store.get(resources.DEPLOYMENTS, namespace, name)
            if stored is None or stored.obj["metadata"].get("deletionTimestamp"):
                return
            d = stored.copy()
            all_rs = [rs.copy() for rs in self.owned_replicasets(stored)]
            template = d["spec"]["template"]
            new_rs = next(
                (
                    rs
                    for rs in all_rs
                    if hashing.equal_ignore_hash(rs["spec"]["template"], template)
                ),
                None,
            )
            old_rs = [rs for rs in all_rs if rs is not new_rs]
            status = copy.deepcopy(d.get("status") or {})
            self._paused_condition(d, status)
            if d["spec"].get("paused"):
                if new_rs is not None:
                    new_rs = self._sync_new_rs_annotations(d, new_rs, old_rs)
                    self._set_deployment_revision(d, new_rs)
                self._scale_paused(d, new_rs, old_rs)
                self._write_status(d, status, new_rs, old_rs, rollout=False)
                return
            if new_rs is None:
                new_rs = self._create_new_rs(d, old_rs, status)
            else:
                new_rs = self._sync_new_rs_annotations(d, new_rs, old_rs)
                if (
                    _condition(status, "Progressing") is None
                    and d["spec"].get("progressDeadlineSeconds") is not None
                ):
                    _set_condition(
                        status,
                        _new_condition(
                            "Progressing",
                            "True",
                            FOUND_NEW_RS,
                            f'Found new replica set "{new_rs["metadata"]["name"]}"',
                            time.time(),
                        ),
                    )
            self._set_deployment_revision(d, new_rs)
            strategy = (d["spec"].get("strategy") or {}).get("type", "RollingUpdate")
            if strategy == "Recreate":
                self._rollout_recreate(d, new_rs, old_rs)
            else:
                self._rollout_rolling(d, new_rs, old_rs)
            self._write_status(d, status, new_rs, old_rs, rollout=True)

    def _paused_condition(self, d: Obj, status: Obj) -> None:
        if d["spec"].get("progressDeadlineSeconds") is None:
            return
        cond = _condition(status, "Progressing")
        if cond is not None and cond.get("reason") == TIMED_OUT:
            return
        paused_cond = cond is not None and cond.get("reason") == PAUSED
        now = time.time()
        if d["spec"].get("paused") and not paused_cond:
            _set_condition(
                status,
                _new_condition("Progressing", "Unknown", PAUSED, "Deployment is paused", now),
            )
        elif not d["spec"].get("paused") and paused_cond:
            _set_condition(
                status,
                _new_condition("Progressing", "Unknown", RESUMED, "Deployment is resumed", now),
            )
            self._progress_at[d["metadata"]["uid"]] = now

    def _create_new_rs(self, d: Obj, old_rs: list[Obj], status: Obj) -> Obj:
        template = copy.deepcopy(d["spec"]["template"])
        collision = int((d.get("status") or {}).get("collisionCount") or 0)
        pod_hash = hashing.template_hash(template, collision)
        template.setdefault("metadata", {}).setdefault("labels", {})[hashing.HASH_LABEL] = pod_hash
        selector = copy.deepcopy(d["spec"]["selector"])
        selector.setdefault("matchLabels", {})[hashing.HASH_LABEL] = pod_hash
        name = f"{d['metadata']['name']}-{pod_hash}"
        new_revision = max((revision(rs) for rs in old_rs), default=0) + 1
        annotations = {
            k: v
            for k, v in (d["metadata"].get("annotations") or {}).items()
            if k not in SKIP_ANNOTATIONS
        }
        annotations[REVISION] = str(new_revision)
        surge, _ = fenceposts(d)
        replicas = int(d["spec"].get("replicas", 1))
        annotations[DESIRED_REPLICAS] = str(replicas)
        annotations[MAX_REPLICAS] = str(replicas + surge)
        labels = dict((d["spec"]["template"].get("metadata") or {}).get("labels") or {})
        labels[hashing.HASH_LABEL] = pod_hash
        rs: Obj = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": d["metadata"]["namespace"],
                "labels": labels,
                "annotations": annotations,
                "ownerReferences": [owner_ref(d)],
            },
            "spec": {
                "replicas": 0,
                "minReadySeconds": int(d["spec"].get("minReadySeconds") or 0),
                "selector": selector,
                "template": template,
            },
            "status": {"replicas": 0},
        }
        if not rs["spec"]["minReadySeconds"]:
            del rs["spec"]["minReadySeconds"]
        existing = self._store.get(resources.REPLICASETS, d["metadata"]["namespace"], name)
        if existing is not None:
            # a hash collision with a ReplicaSet of another template: bump collisionCount
            d.setdefault("status", {})["collisionCount"] = collision + 1
            status["collisionCount"] = collision + 1
            return self._create_new_rs(d, old_rs, status)
        created = self._store.create(resources.REPLICASETS, rs).copy()
        if d["spec"].get("progressDeadlineSeconds") is not None:
            now = time.time()
            _set_condition(
                status,
                _new_condition(
                    "Progressing", "True", NEW_RS_CREATED, f'Created new replica set "{name}"', now
                ),
            )
            self._progress_at[d["metadata"]["uid"]] = now
        return created

    def _sync_new_rs_annotations(self, d: Obj, new_rs: Obj, old_rs: list[Obj]) -> Obj:
        annotations = dict(new_rs["metadata"].get("annotations") or {})
        before = dict(annotations)
        for key, value in (d["metadata"].get("annotations") or {}).items():
            if key not in SKIP_ANNOTATIONS:
                annotations[key] = value
        new_revision = max((revision(rs) for rs in old_rs), default=0) + 1
        current = revision(new_rs)
        if current < new_revision:
            if current > 0:
                history = annotations.get(REVISION_HISTORY)
                annotations[REVISION_HISTORY] = f"{history},{current}" if history else str(current)
            annotations[REVISION] = str(new_revision)
        surge, _ = fenceposts(d)
        replicas = int(d["spec"].get("replicas", 1))
        annotations[DESIRED_REPLICAS] = str(replicas)
        annotations[MAX_REPLICAS] = str(replicas + surge)
        if annotations == before:
            return new_rs
        new_rs["metadata"]["annotations"] = annotations
        return self._store.replace(resources.REPLICASETS, new_rs).copy()

    def _set_deployment_revision(self, d: Obj, new_rs: Obj) -> None:
        want = (new_rs["metadata"].get("annotations") or {}).get(REVISION)
        annotations = d["metadata"].setdefault("annotations", {})
        if want and annotations.get(REVISION) != want:
            annotations[REVISION] = want
            current = self._store.get(
                resources.DEPLOYMENTS, d["metadata"]["namespace"], d["metadata"]["name"]
            )
            if current is None:
                return
            fresh = current.copy()
            fresh["metadata"].setdefault("annotations", {})[REVISION] = want
            updated = self._store.replace(resources.DEPLOYMENTS, fresh)
            d["metadata"] = copy.deepcopy(updated.obj["metadata"])

    def _scale(self, d: Obj, rs: Obj, replicas: int) -> Obj:
        old = _replicas(rs)
        if old == replicas:
            return rs
        rs["spec"]["replicas"] = replicas
        surge, _ = fenceposts(d)
        desired = int(d["spec"].get("replicas", 1))
        annotations = rs["metadata"].setdefault("annotations", {})
        annotations[DESIRED_REPLICAS] = str(desired)
        annotations[MAX_REPLICAS] = str(desired + surge)
        updated = self._store.replace(resources.REPLICASETS, rs).copy()
        rs.clear()
        rs.update(updated)
        direction = "up" if replicas > old else "down"
        self._recorder.record(
            d,
            reason="ScalingReplicaSet",
            component=COMPONENT,
            message=(
                f"Scaled {direction} replica set {rs['metadata']['name']} from {old} to {replicas}"
            ),
        )
        return rs

    def _scale_paused(self, d: Obj, new_rs: Obj | None, old_rs: list[Obj]) -> None:
        """While paused only scaling happens: the one active ReplicaSet follows spec.replicas."""
        active = [rs for rs in ([new_rs] if new_rs else []) + old_rs if _replicas(rs) > 0]
        target = active[0] if len(active) == 1 else (new_rs if not active else None)
        if target is not None:
            self._scale(d, target, int(d["spec"].get("replicas", 1)))

    def _rollout_recreate(self, d: Obj, new_rs: Obj, old_rs: list[Obj]) -> None:
        for rs in old_rs:
            if _replicas(rs):
                self._scale(d, rs, 0)
        if any(_status(rs, "replicas") for rs in old_rs):
            return  # wait for old pods to be gone
        self._scale(d, new_rs, int(d["spec"].get("replicas", 1)))

    def _rollout_rolling(self, d: Obj, new_rs: Obj, old_rs: list[Obj]) -> None:
        replicas = int(d["spec"].get("replicas", 1))
        if self._reconcile_new(d, new_rs, old_rs, replicas):
            return
        if self._reconcile_old(d, new_rs, old_rs, replicas):
            return
        if self._complete(d, self._calculate(d, d.get("status") or {}, new_rs, old_rs)):
            self._cleanup(d, old_rs)

    def _reconcile_new(self, d: Obj, new_rs: Obj, old_rs: list[Obj], replicas: int) -> bool:
        current = _replicas(new_rs)
        if current == replicas:
            return False
        if current > replicas:
            self._scale(d, new_rs, replicas)
            return True
        surge, _ = fenceposts(d)
        total = sum(_replicas(rs) for rs in old_rs) + current
        max_total = replicas + surge
        if total >= max_total:
            return False
        up = min(max_total - total, replicas - current)
        self._scale(d, new_rs, current + up)
        return True

    def _reconcile_old(self, d: Obj, new_rs: Obj, old_rs: list[Obj], replicas: int) -> bool:
        old_count = sum(_replicas(rs) for rs in old_rs)
        if old_count == 0:
            return False
        all_count = old_count + _replicas(new_rs)
        min_available = replicas - max_unavailable(d)
        new_unavailable = _replicas(new_rs) - _status(new_rs, "availableReplicas")
        max_scaled_down = all_count - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        scaled = 0
        # first old replicas that are not available at all
        for rs in old_rs:
            if scaled >= max_scaled_down:
                break
            unhealthy = _replicas(rs) - _status(rs, "availableReplicas")
            if _replicas(rs) == 0 or unhealthy <= 0:
                continue
            down = min(max_scaled_down - scaled, unhealthy)
            self._scale(d, rs, _replicas(rs) - down)
            scaled += down
        # then available ones, as long as enough stay available
        available = sum(_status(rs, "availableReplicas") for rs in [*old_rs, new_rs])
        if available > min_available:
            budget = available - min_available
            done = 0
            for rs in old_rs:
                if done >= budget:
                    break
                if _replicas(rs) == 0:
                    continue
                down = min(_replicas(rs), budget - done)
                self._scale(d, rs, _replicas(rs) - down)
                done += down
            scaled += done
        return scaled > 0

    def _cleanup(self, d: Obj, old_rs: list[Obj]) -> None:
        limit = d["spec"].get("revisionHistoryLimit")
        if limit is None:
            return
        removable = [
            rs
            for rs in old_rs
            if _replicas(rs) == 0
            and _status(rs, "replicas") == 0
            and not rs["metadata"].get("deletionTimestamp")
        ]
        excess = len(removable) - int(limit)
        if excess <= 0:
            return
        removable.sort(key=revision)
        for rs in removable[:excess]:
            self._store.delete(
                resources.REPLICASETS, rs["metadata"]["namespace"], rs["metadata"]["name"]
            )

    # status ---------------------------------------------------------------------------

    def _calculate(self, d: Obj, previous: Obj, new_rs: Obj | None, old_rs: list[Obj]) -> Obj:
        all_rs = [*old_rs, *([new_rs] if new_rs else [])]
        replicas = int(d["spec"].get("replicas", 1))
        available = sum(_status(rs, "availableReplicas") for rs in all_rs)
        total_spec = sum(_replicas(rs) for rs in all_rs)
        status: Obj = {
            "observedGeneration": d["metadata"].get("generation", 1),
            "replicas": sum(_status(rs, "replicas") for rs in all_rs),
            "updatedReplicas": _status(new_rs, "replicas") if new_rs else 0,
            "readyReplicas": sum(_status(rs, "readyReplicas") for rs in all_rs),
            "availableReplicas": available,
            "unavailableReplicas": max(total_spec - available, 0),
            "conditions": copy.deepcopy(previous.get("conditions") or []),
        }
        if previous.get("collisionCount"):
            status["collisionCount"] = previous["collisionCount"]
        now = time.time()
        if available >= replicas - max_unavailable(d):
            _set_condition(
                status,
                _new_condition(
                    "Available", "True", MIN_AVAILABLE, "Deployment has minimum availability.", now
                ),
            )
        else:
            _set_condition(
                status,
                _new_condition(
                    "Available",
                    "False",
                    MIN_UNAVAILABLE,
                    "Deployment does not have minimum availability.",
                    now,
                ),
            )
        return status

    @staticmethod
    def _complete(d: Obj, status: Obj) -> bool:
        replicas = int(d["spec"].get("replicas", 1))
        return bool(
            status.get("updatedReplicas", 0) == replicas
            and status.get("replicas", 0) == replicas
            and status.get("availableReplicas", 0) == replicas
            and status.get("observedGeneration", 0) >= d["metadata"].get("generation", 1)
        )

    def _write_status(
        self, d: Obj, working: Obj, new_rs: Obj | None, old_rs: list[Obj], *, rollout: bool
    ) -> None:
        """Compute the status (conditions included) and store it if it changed."""
        status = self._calculate(d, working, new_rs, old_rs)
        deadline = d["spec"].get("progressDeadlineSeconds")
        if rollout and deadline is not None:
            self._progress(d, status, new_rs, int(deadline))
        status = _omit_zero(status)
        meta = d["metadata"]
        stored = self._store.get(resources.DEPLOYMENTS, meta["namespace"], meta["name"])
        if stored is None or stored.uid != meta["uid"]:
            return
        if (stored.obj.get("status") or {}) == status:
            return
        fresh = stored.copy()
        fresh["status"] = status
        self._store.replace(resources.DEPLOYMENTS, fresh)

    def _progress(self, d: Obj, status: Obj, new_rs: Obj | None, deadline: int) -> None:
        """Kubernetes' syncRolloutStatus: the Progressing condition, and the deadline timer."""
        uid = d["metadata"]["uid"]
        previous = d.get("status") or {}
        now = time.time()
        cond = _condition(previous, "Progressing")
        rs_name = new_rs["metadata"]["name"] if new_rs else None
        complete_already = (
            status["replicas"] == status["updatedReplicas"]
            and cond is not None
            and cond.get("reason") == NEW_RS_AVAILABLE
        )
        if complete_already:
            return
        if self._complete(d, status):
            msg = f'ReplicaSet "{rs_name}" has successfully progressed.'
            _set_condition(
                status, _new_condition("Progressing", "True", NEW_RS_AVAILABLE, msg, now)
            )
            self._progress_at.pop(uid, None)
            return
        if self._progressing(previous, status):
            msg = f'ReplicaSet "{rs_name}" is progressing.'
            new_cond = _new_condition("Progressing", "True", RS_UPDATED, msg, now)
            existing = _condition(status, "Progressing")
            if existing is not None and existing.get("status") == "True":
                new_cond["lastTransitionTime"] = existing.get("lastTransitionTime")
            status["conditions"] = [
                c for c in status["conditions"] if c.get("type") != "Progressing"
            ]
            status["conditions"].append(new_cond)
            self._progress_at[uid] = now
        elif self._timed_out(uid, status, deadline, now):
            msg = f'ReplicaSet "{rs_name}" has timed out progressing.'
            if (_condition(status, "Progressing") or {}).get("reason") != TIMED_OUT:
                self._recorder.record(
                    d,
                    reason=TIMED_OUT,
                    component=COMPONENT,
                    warning=True,
                    message=f'Deployment "{d["metadata"]["name"]}" has timed out progressing.',
                )
            _set_condition(status, _new_condition("Progressing", "False", TIMED_OUT, msg, now))
            self._progress_at.pop(uid, None)
            return
        current = _condition(status, "Progressing")
        if current is not None and current.get("reason") != TIMED_OUT:
            since = (
                self._progress_at.get(uid) or store.parse_time(current.get("lastUpdateTime")) or now
            )
            self._schedule(
                ("deploy", d["metadata"]["namespace"], d["metadata"]["name"]),
                max(0.0, since + deadline - now) + 0.05,
            )

    @staticmethod
    def _progressing(previous: Obj, status: Obj) -> bool:
        def get(s: Obj, key: str) -> int:
            return int(s.get(key) or 0)

        old_old = get(previous, "replicas") - get(previous, "updatedReplicas")
        new_old = get(status, "replicas") - get(status, "updatedReplicas")
        return (
            get(status, "updatedReplicas") > get(previous, "updatedReplicas")
            or new_old < old_old
            or get(status, "readyReplicas") > get(previous, "readyReplicas")
            or get(status, "availableReplicas") > get(previous, "availableReplicas")
        )

    def _timed_out(self, uid: str, status: Obj, deadline: int, now: float) -> bool:
        cond = _condition(status, "Progressing")
        if cond is None or cond.get("reason") == NEW_RS_AVAILABLE:
            return False
        if cond.get("reason") == TIMED_OUT:
            return True
        since = self._progress_at.get(uid) or store.parse_time(cond.get("lastUpdateTime"))
        return since is not None and since + deadline < now


def _omit_zero(status: Obj) -> Obj:
    """Drop zero counts, as the API's ``omitempty`` does."""
    return {k: v for k, v in status.items() if v not in (0, None, [])}
