"""Reaching the simulated service through the API server, as ``kubectl proxy`` users do.

- ``/api/v1/namespaces/<ns>/services/<name>[:port]/proxy/<path>``: one Ready pod behind the
  Service (round robin), like the API server's service proxy. The inventory's sandbox
  ``health_url`` uses it, so the URL is stable while pods come and go.
- ``/api/v1/namespaces/<ns>/pods/<name>[:port]/proxy/<path>``: one pod.
- ``/_sandbox/services/<ns>/<name>/metrics``: the whole service's metrics in one scrape.
  Counters are summed over the service's running pods plus the final counts of pods already
  deleted (so they never go backwards across a rollout); gauges are the mean error ratio and
  coherence and the worst p99, memory and pool use of the Ready pods.
"""

from __future__ import annotations

import itertools
import json
import time

from crystal_runbook.sandbox import apierrors, kubelet, resources, selectors, store, workload
from crystal_runbook.sandbox.kubelet import Kubelet

Answer = tuple[int, str, bytes]


class ServiceProxy:
    """Answers proxied requests from the kubelet's simulated containers."""

    def __init__(self, st: store.Store, kube: Kubelet) -> None:
        self._store = st
        self._kubelet = kube
        self._turn = itertools.count()

    def _service_pods(self, namespace: str, name: str) -> list[store.Stored]:
        svc = self._store.get(resources.SERVICES, namespace, name.split(":", 1)[0])
        if svc is None:
            raise apierrors.not_found(resources.SERVICES, name.split(":", 1)[0])
        wanted = (svc.obj.get("spec") or {}).get("selector") or {}
        if not wanted:
            return []
        selector = selectors.from_structured({"matchLabels": wanted})
        pods, _ = self._store.objects(resources.PODS, namespace)
        return [p for p in pods if selector.matches(p.obj["metadata"].get("labels"))]

    def service(self, namespace: str, name: str, method: str, path: str) -> Answer:
        """Proxy to one Ready pod of the Service (503 when none is Ready)."""
        ready = [
            p
            for p in self._service_pods(namespace, name)
            if self._kubelet.is_ready(namespace, p.name)
            and self._kubelet.container(namespace, p.name) is not None
        ]
        if not ready:
            raise apierrors.service_unavailable(
                f'no endpoints available for service "{name.split(":", 1)[0]}"'
            )
        pod = ready[next(self._turn) % len(ready)]
        container = self._kubelet.container(namespace, pod.name)
        if container is None:
            raise apierrors.service_unavailable(f'no endpoints available for service "{name}"')
        return kubelet.respond(container, method, path, time.time())

    def pod(self, namespace: str, name: str, method: str, path: str) -> Answer:
        """Proxy to one pod's simulated service."""
        pod_name = name.split(":", 1)[0]
        if self._store.get(resources.PODS, namespace, pod_name) is None:
            raise apierrors.not_found(resources.PODS, pod_name)
        container = self._kubelet.container(namespace, pod_name)
        state = self._kubelet.state(namespace, pod_name)
        if container is None or state is None or state.port is None:
            raise apierrors.service_unavailable(
                f'error trying to reach service: pod "{pod_name}" is not serving'
            )
        return kubelet.respond(container, method, path, time.time())

    def service_metrics(self, namespace: str, name: str) -> Answer:
        """The aggregated Prometheus text of a whole Service."""
        pods = self._service_pods(namespace, name)
        now = time.time()
        totals = workload.Counters()
        ready_gauges: list[workload.Gauges] = []
        running_gauges: list[workload.Gauges] = []
        versions: set[str] = set()
        modes: set[str] = set()
        for pod in pods:
            container = self._kubelet.container(namespace, pod.name)
            if container is None or container.kind == workload.CRASH:
                continue
            totals.add(container.counters(now))
            gauges = container.gauges(now)
            running_gauges.append(gauges)
            if self._kubelet.is_ready(namespace, pod.name):
                ready_gauges.append(gauges)
                versions.add(container.version)
                modes.add(container.mode)
        svc = self._store.get(resources.SERVICES, namespace, name)
        wanted = ((svc.obj.get("spec") or {}).get("selector") or {}) if svc else {}
        for (ns, labels), counters in self._kubelet.retired.items():
            if (
                ns == namespace
                and wanted
                and all(dict(labels).get(k) == v for k, v in wanted.items())
            ):
                totals.add(counters)
        text = workload.render_metrics(
            totals,
            workload.aggregate_gauges(ready_gauges or running_gauges),
            labels={
                "service": name,
                "version": ",".join(sorted(versions)),
                "mode": ",".join(sorted(modes)),
            },
            ready_pods=len(ready_gauges),
        )
        return 200, "text/plain; version=0.0.4; charset=utf-8", text.encode()

    def service_health(self, namespace: str, name: str) -> Answer:
        """Health of the whole Service: 200 if every Ready pod is healthy, else 503."""
        now = time.time()
        answers = []
        for pod in self._service_pods(namespace, name):
            container = self._kubelet.container(namespace, pod.name)
            if container is not None and self._kubelet.is_ready(namespace, pod.name):
                answers.append(container.health(now))
        healthy = bool(answers) and all(code == 200 for code, _ in answers)
        body = {
            "status": "ok" if healthy else ("unavailable" if not answers else "degraded"),
            "service": name,
            "ready_pods": len(answers),
            "pods": [body for _, body in answers],
        }
        return (200 if healthy else 503), "application/json", json.dumps(body).encode() + b"\n"
