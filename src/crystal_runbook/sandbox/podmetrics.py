"""``metrics.k8s.io/v1beta1``: PodMetrics and NodeMetrics, what ``kubectl top`` reads.

On a real cluster metrics-server scrapes each kubelet and serves the latest CPU and memory
use of every running container (``pkg/api/pod.go`` and ``node.go`` in metrics-server). Here
the figures come from the simulated service itself (``workload.Container.cpu_cores`` and
the memory gauge), so a ``-bad`` release shows its memory growing in ``kubectl top pods``
exactly as its ``/metrics`` does. Nothing is stored: every GET computes the answer, and
pods without a running container (a crash loop) have no metrics, as with metrics-server.
"""

from __future__ import annotations

import time
from typing import Any

from crystal_runbook.sandbox import apierrors, resources, selectors, store
from crystal_runbook.sandbox.kubelet import NODE_NAME, Kubelet

Obj = dict[str, Any]
WINDOW = "15s"  # metrics-server's default metric resolution


def _cpu(cores: float) -> str:
    return f"{round(cores * 1e9)}n"  # metrics-server reports nanocores


def _memory(nbytes: float) -> str:
    return f"{int(nbytes) // 1024}Ki"


class PodMetrics:
    """Answers GET and LIST on ``metrics.k8s.io/v1beta1`` pods and nodes."""

    def __init__(self, st: store.Store, kubelet: Kubelet) -> None:
        self._store = st
        self._kubelet = kubelet

    def _pod_metrics(self, pod: store.Stored, now: float) -> Obj | None:
        state = self._kubelet.state(pod.namespace, pod.name)
        if state is None or pod.obj["metadata"].get("deletionTimestamp"):
            return None
        containers = []
        for container in state.containers:
            if container.name in state.waiting_until:  # crash loop: nothing running
                continue
            containers.append(
                {
                    "name": container.name,
                    "usage": {
                        "cpu": _cpu(container.cpu_cores(now)),
                        "memory": _memory(container.gauges(now).memory_bytes),
                    },
                }
            )
        if not containers:
            return None
        meta = pod.obj["metadata"]
        return {
            "kind": "PodMetrics",
            "apiVersion": "metrics.k8s.io/v1beta1",
            "metadata": {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "creationTimestamp": store.rfc3339(now),
                "labels": dict(meta.get("labels") or {}),
            },
            "timestamp": store.rfc3339(now),
            "window": WINDOW,
            "containers": containers,
        }

    def _node_metrics(self, now: float) -> Obj:
        pods, _ = self._store.objects(resources.PODS)
        cpu = memory = 0.0
        for pod in pods:
            state = self._kubelet.state(pod.namespace, pod.name)
            if state is None:
                continue
            for container in state.containers:
                if container.name not in state.waiting_until:
                    cpu += container.cpu_cores(now)
                    memory += container.gauges(now).memory_bytes
        return {
            "kind": "NodeMetrics",
            "apiVersion": "metrics.k8s.io/v1beta1",
            "metadata": {"name": NODE_NAME, "creationTimestamp": store.rfc3339(now)},
            "timestamp": store.rfc3339(now),
            "window": WINDOW,
            "usage": {"cpu": _cpu(cpu), "memory": _memory(memory)},
        }

    def get(self, res: resources.Resource, namespace: str, name: str) -> Obj:
        now = time.time()
        if res is resources.NODE_METRICS:
            if self._store.get(resources.NODES, "", name) is None:
                raise apierrors.not_found(res, name)
            return self._node_metrics(now)
        pod = self._store.get(resources.PODS, namespace, name)
        found = self._pod_metrics(pod, now) if pod is not None else None
        if found is None:
            raise apierrors.not_found(res, name)
        return found

    def list(self, res: resources.Resource, namespace: str | None, query: dict[str, str]) -> Obj:
        now = time.time()
        try:
            labels = selectors.parse_labels(query.get("labelSelector"))
        except selectors.SelectorError as exc:
            raise apierrors.bad_request(f"unable to parse requirement: {exc}") from exc
        items: list[Obj] = []
        if res is resources.NODE_METRICS:
            nodes, _ = self._store.objects(resources.NODES)
            if any(labels.matches(n.obj["metadata"].get("labels")) for n in nodes):
                items.append(self._node_metrics(now))
        else:
            pods, _ = self._store.objects(resources.PODS, namespace or None)
            for pod in pods:
                if labels.matches(pod.obj["metadata"].get("labels")):
                    found = self._pod_metrics(pod, now)
                    if found is not None:
                        items.append(found)
        return {
            "kind": res.list_kind,
            "apiVersion": res.api_version,
            "metadata": {},
            "items": items,
        }
