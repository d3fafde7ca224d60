"""How a Deployment moves its ReplicaSets: rolling update, Recreate, scaling, history pruning.

Each method follows its upstream function in ``pkg/controller/deployment``:
``rolling.go`` (``reconcileNewReplicaSet``, ``reconcileOldReplicaSets``,
``cleanupUnhealthyReplicas``, ``scaleDownOldReplicaSetsForRollingUpdate``), ``recreate.go``
(``scaleDownOldReplicaSetsForRecreate``, ``oldPodsRunning``) and ``sync.go`` (``scale``,
the proportional scaling of a resize during a rollout or while paused, and
``cleanupDeployment``, which keeps ``revisionHistoryLimit`` old ReplicaSets). The
arithmetic is in ``rolloutmath``; sizes are written through ``scale_rs``, which is
``scaleReplicaSet`` (new size, the desired/max annotations, a ScalingReplicaSet Event).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crystal_runbook.sandbox import resources, store
from crystal_runbook.sandbox import rolloutmath as rm
from crystal_runbook.sandbox.replicasets import controller_ref

Obj = dict[str, Any]
Scale = Callable[[Obj, Obj, int, str], bool]  # (deployment, rs, size, "up"/"down"/"")


class Strategies:
    """The rollout steps of one Deployment sync; ``scale_rs`` writes a ReplicaSet's size."""

    def __init__(self, st: store.Store, scale_rs: Scale) -> None:
        self._store = st
        self._scale = scale_rs

    # rolling update ---------------------------------------------------------------------

    def reconcile_new(self, d: Obj, new_rs: Obj, old_rs: list[Obj]) -> bool:
        """``reconcileNewReplicaSet``: grow the new ReplicaSet within maxSurge."""
        want = rm.replicas(d)
        current = rm.replicas(new_rs)
        if current == want:
            return False
        if current > want:
            return self._scale(d, new_rs, want, "down")
        size = rm.new_rs_new_replicas(d, [*old_rs, new_rs], new_rs)
        return self._scale(d, new_rs, size, "up")

    def reconcile_old(self, d: Obj, new_rs: Obj, old_rs: list[Obj]) -> bool:
        """``reconcileOldReplicaSets``: shrink old ReplicaSets within maxUnavailable."""
        live_old = rm.active(old_rs)
        if rm.spec_count(live_old) == 0:
            return False
        all_count = rm.spec_count([*live_old, new_rs])
        min_available = rm.replicas(d) - rm.max_unavailable(d)
        new_unavailable = rm.replicas(new_rs) - rm.status_count([new_rs], "availableReplicas")
        max_scaled_down = all_count - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        cleaned = self._cleanup_unhealthy(d, live_old, max_scaled_down)
        scaled = self._scale_down_old(d, new_rs, live_old)
        return cleaned + scaled > 0

    def _cleanup_unhealthy(self, d: Obj, old_rs: list[Obj], most: int) -> int:
        """``cleanupUnhealthyReplicas``: old replicas that are not available go first."""
        total = 0
        for rs in rm.by_creation(old_rs):
            if total >= most:
                break
            size = rm.replicas(rs)
            available = rm.status_count([rs], "availableReplicas")
            if size in (0, available):
                continue
            down = min(most - total, size - available)
            self._scale(d, rs, size - down, "down")
            total += down
        return total

    def _scale_down_old(self, d: Obj, new_rs: Obj, old_rs: list[Obj]) -> int:
        """``scaleDownOldReplicaSetsForRollingUpdate``: while enough stay available."""
        min_available = rm.replicas(d) - rm.max_unavailable(d)
        available = rm.status_count([*old_rs, new_rs], "availableReplicas")
        if available <= min_available:
            return 0
        budget = available - min_available
        total = 0
        for rs in rm.by_creation(old_rs):
            if total >= budget:
                break
            size = rm.replicas(rs)
            if size == 0:
                continue
            down = min(size, budget - total)
            self._scale(d, rs, size - down, "down")
            total += down
        return total

    # Recreate ---------------------------------------------------------------------------

    def scale_down_old_for_recreate(self, d: Obj, old_rs: list[Obj]) -> bool:
        """``scaleDownOldReplicaSetsForRecreate``."""
        scaled = False
        for rs in rm.active(old_rs):
            scaled = self._scale(d, rs, 0, "down") or scaled
        return scaled

    def old_pods_running(self, new_rs: Obj | None, old_rs: list[Obj], d: Obj) -> bool:
        """``oldPodsRunning``: any pod of an old ReplicaSet not yet Failed or Succeeded.

        Terminating pods count: Recreate waits until they are gone.
        """
        if rm.status_count(old_rs) > 0:
            return True
        old_uids = {rs["metadata"]["uid"] for rs in old_rs}
        pods, _ = self._store.objects(resources.PODS, d["metadata"]["namespace"])
        for pod in pods:
            ref = controller_ref(pod.obj)
            if ref is None or ref.get("uid") not in old_uids:
                continue
            if (pod.obj.get("status") or {}).get("phase") not in ("Failed", "Succeeded"):
                return True
        return False

    # scaling and pruning ----------------------------------------------------------------

    def scale(self, d: Obj, new_rs: Obj | None, old_rs: list[Obj]) -> None:
        """``scale``: resize the Deployment's ReplicaSets to ``spec.replicas``.

        One active (or no active) ReplicaSet takes the whole count; a saturated new one
        makes the old ones go to zero; otherwise, for a rolling Deployment, the change is
        shared out proportionally (``rolloutmath.proportional_sizes``).
        """
        want = rm.replicas(d)
        target = rm.find_active_or_latest(new_rs, old_rs)
        if target is not None:
            if rm.replicas(target) != want:
                operation = "up" if want > rm.replicas(target) else "down"
                self._scale(d, target, want, operation)
            return
        if rm.is_saturated(d, new_rs):
            for rs in rm.active(old_rs):
                self._scale(d, rs, 0, "down")
            return
        if rm.is_rolling(d):
            sizes, operation = rm.proportional_sizes(d, new_rs, old_rs)
            for rs, size in sizes:
                self._scale(d, rs, size, operation)

    def cleanup(self, d: Obj, old_rs: list[Obj]) -> None:
        """``cleanupDeployment``: delete the oldest empty ReplicaSets beyond the history limit."""
        limit = d["spec"].get("revisionHistoryLimit")
        if limit is None:
            return
        alive = [rs for rs in old_rs if not rs["metadata"].get("deletionTimestamp")]
        excess = len(alive) - int(limit)
        if excess <= 0:
            return
        for rs in sorted(alive, key=rm.revision)[:excess]:
            status = rs.get("status") or {}
            if (
                int(status.get("replicas") or 0) != 0
                or rm.replicas(rs) != 0
                or int(rs["metadata"].get("generation") or 0)
                > int(status.get("observedGeneration") or 0)
            ):
                continue  # never delete a ReplicaSet that still has (or is owed) pods
            meta = rs["metadata"]
            if self._store.get(resources.REPLICASETS, meta["namespace"], meta["name"]):
                self._store.delete(resources.REPLICASETS, meta["namespace"], meta["name"])
