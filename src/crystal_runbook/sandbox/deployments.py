"""The Deployment controller: ReplicaSets per template, revisions, rollouts, scaling, status.

It follows Kubernetes' own controller (``pkg/controller/deployment``) closely enough that
kubectl's ``rollout status``/``history``/``undo`` and a client that implements rollback
the way kubectl does see the same objects a real cluster would show. ``sync`` is
``syncDeployment``:

- a paused Deployment, or a scaling event (a ReplicaSet's desired-replicas annotation
  differs from ``spec.replicas``: ``isScalingEvent``), goes through ``sync()``: the
  ReplicaSets are resized proportionally (``rollout.Strategies.scale``), a paused one is
  pruned to ``revisionHistoryLimit``, and no new ReplicaSet is created;
- otherwise the strategy runs: ``rolloutRolling`` or ``rolloutRecreate``, each pruning old
  ReplicaSets once the rollout is complete;
- one ReplicaSet ``<deployment>-<pod-template-hash>`` per distinct template, created at its
  first size (``getNewReplicaSet`` with ``NewRSNewReplicas``); a template equal to an old
  ReplicaSet's (a rollback) reuses it and moves its revision to max+1, keeping the old
  number in ``deployment.kubernetes.io/revision-history``.

The arithmetic is in ``rolloutmath``, the strategies in ``rollout``, status in ``depstatus``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

from crystal_runbook.sandbox import depstatus, events, hashing, resources, rollout, store
from crystal_runbook.sandbox import rolloutmath as rm
from crystal_runbook.sandbox.replicasets import claim, owner_ref
from crystal_runbook.sandbox.rolloutmath import (
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    REVISION,
    REVISION_HISTORY,
    fenceposts,
    max_unavailable,
    revision,
    scaled_value,
)

__all__ = [
    "DESIRED_REPLICAS",
    "MAX_REPLICAS",
    "REVISION",
    "REVISION_HISTORY",
    "DeploymentController",
    "fenceposts",
    "max_unavailable",
    "revision",
    "scaled_value",
]

COMPONENT = "deployment-controller"
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

Obj = dict[str, Any]


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
        self._status = depstatus.StatusWriter(st, schedule)
        self._strategies = rollout.Strategies(st, self._scale)

    # reading --------------------------------------------------------------------------

    def owned_replicasets(self, deployment: store.Stored) -> list[store.Stored]:
        """ReplicaSets this Deployment controls, adopting orphans its selector matches."""
        out = claim(self._store, deployment, resources.REPLICASETS)
        out.sort(key=lambda s: (s.obj["metadata"]["creationTimestamp"], s.name))
        return out

    # syncing --------------------------------------------------------------------------

    def sync(self, namespace: str, name: str) -> None:
        """``syncDeployment``."""
        with self._store.lock:
            stored = self._store.get(resources.DEPLOYMENTS, namespace, name)
            if stored is None or stored.obj["metadata"].get("deletionTimestamp"):
                return
            d = stored.copy()
            all_rs = [rs.copy() for rs in self.owned_replicasets(stored)]
            self._check_paused_conditions(d)
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
            if d["spec"].get("paused") or self._is_scaling_event(d, new_rs, old_rs):
                self._sync_scaling(d, new_rs, old_rs)
                return
            if (d["spec"].get("strategy") or {}).get("type") == "Recreate":
                self._rollout_recreate(d, new_rs, old_rs)
            else:
                self._rollout_rolling(d, new_rs, old_rs)

    def _is_scaling_event(self, d: Obj, new_rs: Obj | None, old_rs: list[Obj]) -> bool:
        """``isScalingEvent``: an active ReplicaSet was sized for another replica count."""
        want = rm.replicas(d)
        for rs in rm.active([*old_rs, new_rs]):
            desired = rm.desired_annotation(rs)
            if desired is not None and desired != want:
                return True
        return False

    def _sync_scaling(self, d: Obj, new_rs: Obj | None, old_rs: list[Obj]) -> None:
        """``sync``: proportional scaling, pruning while paused, counts-only status."""
        if new_rs is not None:
            new_rs = self._sync_revision(d, new_rs, old_rs)
        self._strategies.scale(d, new_rs, old_rs)
        if d["spec"].get("paused"):
            self._strategies.cleanup(d, old_rs)
        self._status.sync_status(d, new_rs, old_rs)

    def _rollout_rolling(self, d: Obj, new_rs: Obj | None, old_rs: list[Obj]) -> None:
        """``rolloutRolling``."""
        new_rs = self._get_new_rs(d, new_rs, old_rs)
        s = self._strategies
        moved = s.reconcile_new(d, new_rs, old_rs) or s.reconcile_old(d, new_rs, old_rs)
        if not moved and rm.deployment_complete(d, d.get("status") or {}):
            s.cleanup(d, old_rs)
        self._status.sync_rollout_status(d, new_rs, old_rs)

    def _rollout_recreate(self, d: Obj, new_rs: Obj | None, old_rs: list[Obj]) -> None:
        """``rolloutRecreate``: old ReplicaSets to zero, wait for their pods, then the new."""
        if new_rs is not None:
            new_rs = self._sync_revision(d, new_rs, old_rs)
        s = self._strategies
        if s.scale_down_old_for_recreate(d, old_rs) or s.old_pods_running(new_rs, old_rs, d):
            self._status.sync_rollout_status(d, new_rs, old_rs)
            return
        new_rs = self._get_new_rs(d, new_rs, old_rs)
        if rm.replicas(new_rs) != rm.replicas(d):
            self._scale(d, new_rs, rm.replicas(d), "up")
        if rm.deployment_complete(d, d.get("status") or {}):
            s.cleanup(d, old_rs)
        self._status.sync_rollout_status(d, new_rs, old_rs)

    def _check_paused_conditions(self, d: Obj) -> None:
        """``checkPausedConditions``: Progressing Unknown with DeploymentPaused/Resumed."""
        if d["spec"].get("progressDeadlineSeconds") is None:
            return
        status = copy.deepcopy(d.get("status") or {})
        cond = depstatus.condition(status, "Progressing")
        if cond is not None and cond.get("reason") == depstatus.TIMED_OUT:
            return
        paused_cond = cond is not None and cond.get("reason") == depstatus.PAUSED
        now = time.time()
        if d["spec"].get("paused") and not paused_cond:
            reason, message = depstatus.PAUSED, "Deployment is paused"
        elif not d["spec"].get("paused") and paused_cond:
            reason, message = depstatus.RESUMED, "Deployment is resumed"
            self._status.progress_at[d["metadata"]["uid"]] = now
        else:
            return
        depstatus.set_condition(
            status, depstatus.new_condition("Progressing", "Unknown", reason, message, now)
        )
        d["status"] = status
        self._status.write(d, status)

    # the new ReplicaSet -----------------------------------------------------------------

    def _get_new_rs(self, d: Obj, new_rs: Obj | None, old_rs: list[Obj]) -> Obj:
        """``getNewReplicaSet`` with createIfNotExisted: sync the existing one or create it."""
        if new_rs is None:
            return self._create_new_rs(d, old_rs)
        new_rs = self._sync_revision(d, new_rs, old_rs)
        status = d.setdefault("status", {})
        if (
            depstatus.condition(status, "Progressing") is None
            and d["spec"].get("progressDeadlineSeconds") is not None
        ):
            msg = f'Found new replica set "{new_rs["metadata"]["name"]}"'
            depstatus.set_condition(
                status,
                depstatus.new_condition(
                    "Progressing", "True", depstatus.FOUND_NEW_RS, msg, time.time()
                ),
            )
            self._status.write(d, status)
        return new_rs

    def _create_new_rs(self, d: Obj, old_rs: list[Obj]) -> Obj:
        template = copy.deepcopy(d["spec"]["template"])
        collision = int((d.get("status") or {}).get("collisionCount") or 0)
        pod_hash = hashing.template_hash(template, collision)
        template.setdefault("metadata", {}).setdefault("labels", {})[hashing.HASH_LABEL] = pod_hash
        selector = copy.deepcopy(d["spec"]["selector"])
        selector.setdefault("matchLabels", {})[hashing.HASH_LABEL] = pod_hash
        name = f"{d['metadata']['name']}-{pod_hash}"
        if self._store.get(resources.REPLICASETS, d["metadata"]["namespace"], name) is not None:
            # a hash collision with a ReplicaSet of another template: bump collisionCount
            d.setdefault("status", {})["collisionCount"] = collision + 1
            return self._create_new_rs(d, old_rs)
        annotations = {
            k: v
            for k, v in (d["metadata"].get("annotations") or {}).items()
            if k not in SKIP_ANNOTATIONS
        }
        annotations[REVISION] = str(max((revision(rs) for rs in old_rs), default=0) + 1)
        want = rm.replicas(d)
        annotations[DESIRED_REPLICAS] = str(want)
        annotations[MAX_REPLICAS] = str(want + rm.max_surge(d))
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
        # created at its first size (getNewReplicaSet + NewRSNewReplicas), not at 0
        size = rm.new_rs_new_replicas(d, [*old_rs, rs], rs)
        rs["spec"]["replicas"] = size
        created = self._store.create(resources.REPLICASETS, rs).copy()
        if size > 0:
            self._recorder.record(
                d,
                reason="ScalingReplicaSet",
                component=COMPONENT,
                message=f"Scaled up replica set {name} from 0 to {size}",
            )
        status = d.setdefault("status", {})
        if d["spec"].get("progressDeadlineSeconds") is not None:
            now = time.time()
            msg = f'Created new replica set "{name}"'
            depstatus.set_condition(
                status,
                depstatus.new_condition("Progressing", "True", depstatus.NEW_RS_CREATED, msg, now),
            )
            self._status.progress_at[d["metadata"]["uid"]] = now
        self._status.write(d, status)
        self._set_deployment_revision(d, created)
        return created

    def _sync_revision(self, d: Obj, new_rs: Obj, old_rs: list[Obj]) -> Obj:
        """``getAllReplicaSetsAndSyncRevision`` for an existing new ReplicaSet."""
        new_rs = self._sync_new_rs_annotations(d, new_rs, old_rs)
        self._set_deployment_revision(d, new_rs)
        return new_rs

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

    # scaling one ReplicaSet -------------------------------------------------------------

    def _scale(self, d: Obj, rs: Obj, size: int, operation: str) -> bool:
        """``scaleReplicaSet``: new size and replica annotations; an Event if the size moved."""
        old = rm.replicas(rs)
        want = rm.replicas(d)
        most = want + rm.max_surge(d)
        size_changes = old != size
        if not size_changes and not rm.replicas_annotations_need_update(rs, want, most):
            return False
        rs["spec"]["replicas"] = size
        annotations = rs["metadata"].setdefault("annotations", {})
        annotations[DESIRED_REPLICAS] = str(want)
        annotations[MAX_REPLICAS] = str(most)
        updated = self._store.replace(resources.REPLICASETS, rs).copy()
        rs.clear()
        rs.update(updated)
        if size_changes:
            self._recorder.record(
                d,
                reason="ScalingReplicaSet",
                component=COMPONENT,
                message=(
                    f"Scaled {operation} replica set {rs['metadata']['name']} from {old} to {size}"
                ),
            )
        return size_changes
