"""The ReplicaSet controller: keep as many pods as ``spec.replicas``, report how many are ready.

Pods are created from the ReplicaSet's template with a controller ownerReference and a
random suffix; surplus pods are deleted not-ready first, then newest first (as Kubernetes
ranks them). Status counts pods, ready pods and available pods (ready for
``minReadySeconds``); a pod that will become available later re-queues the ReplicaSet then.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable
from typing import Any

from crystal_runbook.sandbox import deletion, events, hashing, resources, selectors, store

COMPONENT = "replicaset-controller"


def controller_ref(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The ownerReference with ``controller: true``, if any."""
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def owner_ref(owner: dict[str, Any]) -> dict[str, Any]:
    """A controller ownerReference pointing at ``owner``."""
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def claim(st: store.Store, owner: store.Stored, resource: resources.Resource) -> list[store.Stored]:
    """Objects of ``resource`` that ``owner`` controls, adopting orphans its selector matches
    (Kubernetes' controller "claim": a controller reference wins over labels)."""
    items, _ = st.objects(resource, owner.namespace)
    try:
        selector = selectors.from_structured(owner.obj["spec"].get("selector"))
    except selectors.SelectorError:
        selector = None
    out = []
    for item in items:
        ref = controller_ref(item.obj)
        if ref is not None and ref.get("uid") == owner.uid:
            out.append(item)
        elif (
            ref is None
            and selector is not None
            and not selector.empty
            and selector.matches(item.obj["metadata"].get("labels"))
            and not item.obj["metadata"].get("deletionTimestamp")
        ):
            adopted = item.copy()
            adopted["metadata"].setdefault("ownerReferences", []).append(owner_ref(owner.obj))
            out.append(st.replace(resource, adopted))
    return out


def pod_ready_since(pod: dict[str, Any]) -> float | None:
    """When the pod's Ready condition turned True, or None if it is not Ready."""
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            if cond.get("status") != "True":
                return None
            return store.parse_time(cond.get("lastTransitionTime")) or 0.0
    return None


class ReplicaSetController:
    """Syncs one ReplicaSet at a time (called from the work queue)."""

    def __init__(
        self,
        st: store.Store,
        recorder: events.Recorder,
        schedule: Callable[[tuple[str, str, str], float], None],
    ) -> None:
        self._store = st
        self._recorder = recorder
        self._schedule = schedule
        self._deleter = deletion.Deleter(st)

    def owned_pods(self, rs: store.Stored) -> list[store.Stored]:
        """Pods this ReplicaSet controls, adopting orphans its selector matches."""
        return claim(self._store, rs, resources.PODS)

    def sync(self, namespace: str, name: str) -> None:
        with self._store.lock:
            rs = self._store.get(resources.REPLICASETS, namespace, name)
            if rs is None or rs.obj["metadata"].get("deletionTimestamp"):
                return
            owned = self.owned_pods(rs)
            pods = [p for p in owned if not p.obj["metadata"].get("deletionTimestamp")]
            # terminatingReplicas: deleted pods not yet in a terminal phase
            terminating = sum(
                1
                for p in owned
                if p.obj["metadata"].get("deletionTimestamp")
                and (p.obj.get("status") or {}).get("phase") not in ("Failed", "Succeeded")
            )
            want = int(rs.obj["spec"].get("replicas", 1))
            if len(pods) < want:
                for _ in range(want - len(pods)):
                    pods.append(self._create_pod(rs))
            elif len(pods) > want:
                doomed = sorted(pods, key=self._deletion_rank)[: len(pods) - want]
                for pod in doomed:
                    # a graceful delete, as the controller's API call is: the pod terminates
                    self._deleter.delete(
                        resources.PODS, pod.namespace, pod.name, deletion.DeleteOptions()
                    )
                    self._recorder.record(
                        rs.obj,
                        reason="SuccessfulDelete",
                        component=COMPONENT,
                        message=f"Deleted pod: {pod.name}",
                    )
                doomed_names = {p.name for p in doomed}
                pods = [p for p in pods if p.name not in doomed_names]
            self._write_status(rs, pods, terminating)

    def _deletion_rank(self, pod: store.Stored) -> tuple[int, float]:
        ready = pod_ready_since(pod.obj) is not None
        created = store.parse_time(pod.obj["metadata"].get("creationTimestamp")) or 0.0
        return (1 if ready else 0, -created)

    def _create_pod(self, rs: store.Stored) -> store.Stored:
        template = copy.deepcopy(rs.obj["spec"]["template"])
        meta = template.get("metadata") or {}
        rs_name = rs.name
        for _ in range(8):
            name = f"{rs_name}-{hashing.random_suffix()}"
            if self._store.get(resources.PODS, rs.namespace, name) is None:
                break
        pod: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "generateName": f"{rs_name}-",
                "namespace": rs.namespace,
                "labels": dict(meta.get("labels") or {}),
                "ownerReferences": [owner_ref(rs.obj)],
            },
            "spec": template.get("spec") or {},
            "status": {"phase": "Pending", "qosClass": "BestEffort"},
        }
        if meta.get("annotations"):
            pod["metadata"]["annotations"] = dict(meta["annotations"])
        pod["spec"].setdefault("enableServiceLinks", True)
        created = self._store.create(resources.PODS, pod)
        self._recorder.record(
            rs.obj, reason="SuccessfulCreate", component=COMPONENT, message=f"Created pod: {name}"
        )
        return created

    def _write_status(self, rs: store.Stored, pods: list[store.Stored], terminating: int) -> None:
        now = time.time()
        min_ready = int(rs.obj["spec"].get("minReadySeconds") or 0)
        labels = selectors.LabelSelector()
        with contextlib.suppress(selectors.SelectorError):
            labels = selectors.from_structured(rs.obj["spec"].get("selector"))
        ready = available = labelled = 0
        wake: float | None = None
        template_labels = (rs.obj["spec"]["template"].get("metadata") or {}).get("labels") or {}
        for pod in pods:
            pod_labels = pod.obj["metadata"].get("labels") or {}
            if labels.matches(pod_labels) and all(
                pod_labels.get(k) == v for k, v in template_labels.items()
            ):
                labelled += 1
            since = pod_ready_since(pod.obj)
            if since is None:
                continue
            ready += 1
            if now - since >= min_ready:
                available += 1
            else:
                due = since + min_ready - now
                wake = due if wake is None else min(wake, due)
        if wake is not None:
            self._schedule(("rs", rs.namespace, rs.name), wake + 0.01)
        status: dict[str, Any] = {"replicas": len(pods)}
        if labelled:
            status["fullyLabeledReplicas"] = labelled
        if ready:
            status["readyReplicas"] = ready
        if available:
            status["availableReplicas"] = available
        status["observedGeneration"] = rs.obj["metadata"].get("generation", 1)
        if terminating:
            status["terminatingReplicas"] = terminating
        current = self._store.get(resources.REPLICASETS, rs.namespace, rs.name)
        if current is None:
            return
        if (current.obj.get("status") or {}) != status:
            new = current.copy()
            new["status"] = status
            self._store.replace(resources.REPLICASETS, new)
