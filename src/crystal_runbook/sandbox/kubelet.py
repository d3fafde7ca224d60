"""The simulated kubelet: runs pods' containers, reports their status, keeps their runtime.

A new pod is bound to the one node, its containers start at once and it turns Ready after
the configured ready delay. A container whose image tag ends in ``-crash`` writes a fatal log
line, exits with code 1 and is restarted with growing back-off: it never becomes Ready, its
``restartCount`` grows and it shows ``CrashLoopBackOff``, which is what makes a rollout get
stuck. Each serving pod gets a loopback port (``podnet``) answering ``/health`` and
``/metrics`` from its ``workload.Container``; the counters of deleted pods are kept per
label set, so a service's totals never go backwards when pods are replaced.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from crystal_runbook.sandbox import deletion, events, node, podnet, resources, store, workload
from crystal_runbook.sandbox.config import SandboxConfig

PORT_ANNOTATION = "sandbox.crystal-runbook.io/port"
NODE_NAME = "crystal-sandbox-node"
HOST_IP = "10.0.0.10"
COMPONENT = "kubelet"

PodKey = tuple[str, str]  # (namespace, name)


@dataclass
class PodState:
    """What the kubelet knows about one pod beyond what its status says."""

    uid: str
    namespace: str
    name: str
    labels: dict[str, str]
    containers: list[workload.Container]
    previous: dict[str, workload.Container] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)
    waiting_until: dict[str, float] = field(default_factory=dict)  # crash back-off ends
    ready_at: float = 0.0
    ready_since: float | None = None
    pod_ip: str = ""
    port: int | None = None
    stop_at: float | None = None  # SIGTERM sent: when the containers will have exited
    killed: bool = False  # the grace period ran out before they exited (SIGKILL)

    def main(self) -> workload.Container:
        return self.containers[0]


def _container_id(uid: str, name: str, attempt: int) -> str:
    return "containerd://" + hashlib.sha256(f"{uid}/{name}/{attempt}".encode()).hexdigest()


def _image_id(image: str) -> str:
    repo = image.split("@", 1)[0].rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    return f"{repo}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"


class Kubelet:
    """Pod lifecycle for every pod in the store; driven by the controller work queue."""

    def __init__(
        self,
        st: store.Store,
        recorder: events.Recorder,
        config: SandboxConfig,
        schedule: Callable[[Hashable, float], None],
    ) -> None:
        self._store = st
        self._recorder = recorder
        self._config = config
        self._schedule = schedule  # the work queue's add_after
        self.pods: dict[PodKey, PodState] = {}
        self.retired: dict[tuple[str, frozenset[tuple[str, str]]], workload.Counters] = {}
        self._next_ip = 2
        self.net = podnet.PodNetwork(self._respond)
        self._deleter = deletion.Deleter(st)

    def stop(self) -> None:
        self.net.stop()

    def register_node(self) -> None:
        """Create this kubelet's Node, as a kubelet registers itself."""
        node.register(self._store, name=NODE_NAME, address=HOST_IP)

    # the simulated service ------------------------------------------------------------

    def _respond(self, key: Hashable, method: str, path: str) -> tuple[int, str, bytes] | None:
        state = self.pods.get(key)  # type: ignore[call-overload]  # keys are PodKey
        if state is None:
            return None
        return respond(state.main(), method, path, time.time())

    def container(
        self, namespace: str, name: str, container: str | None = None, *, previous: bool = False
    ) -> workload.Container | None:
        state = self.pods.get((namespace, name))
        if state is None:
            return None
        for c in state.containers:
            if container in (None, c.name):
                return state.previous.get(c.name) if previous else c
        return None

    def state(self, namespace: str, name: str) -> PodState | None:
        return self.pods.get((namespace, name))

    # lifecycle ------------------------------------------------------------------------

    def sync(self, namespace: str, name: str, *, started_at: float | None = None) -> None:
        """Bring one pod's status up to date (start, ready, crash, restart, or forget it).

        ``started_at`` says a new pod's containers started then and it is Ready since (the
        seed's pods, which have been running for a while).
        """
        now = time.time()
        with self._store.lock:
            stored = self._store.get(resources.PODS, namespace, name)
            key = (namespace, name)
            state = self.pods.get(key)
            if stored is None or (state is not None and state.uid != stored.uid):
                if state is not None:
                    self._forget(key, state, now)
                if stored is None:
                    return
                state = None
            pod = stored.obj
            if pod["metadata"].get("deletionTimestamp"):
                if state is None:  # nothing runs (never started, or already stopped)
                    self._deleter.finish(resources.PODS, namespace, name)
                else:
                    self._terminate(stored, state, now)
                return
            if state is None:
                state = self._start(stored, now, started_at=started_at)
                if state is None:
                    return
            self._advance(state, now)
            self._write_status(stored, state, now)

    def _start(
        self, stored: store.Stored, now: float, *, started_at: float | None
    ) -> PodState | None:
        pod = stored.obj
        spec = pod.get("spec") or {}
        if not spec.get("containers"):
            return None
        meta = pod["metadata"]
        containers = []
        for c in spec["containers"]:
            env = {
                str(e.get("name")): str(e.get("value", ""))
                for e in c.get("env") or []
                if isinstance(e, dict)
            }
            containers.append(
                workload.Container(
                    pod=meta["name"],
                    namespace=meta.get("namespace", ""),
                    uid=meta["uid"],
                    name=str(c.get("name")),
                    image=str(c.get("image")),
                    env=env,
                    started_at=now if started_at is None else started_at,
                    ramp_seconds=self._config.burn_ramp_seconds,
                    held_until=lambda: self._config.burn_held_until,
                    rps=self._config.pod_rps,
                    log_interval=self._config.log_interval,
                    crash_after=self._config.crash_after,
                )
            )
        state = PodState(
            uid=meta["uid"],
            namespace=meta.get("namespace", ""),
            name=meta["name"],
            labels=dict(meta.get("labels") or {}),
            containers=containers,
            ready_at=started_at if started_at is not None else now + self._config.ready_delay,
            pod_ip=f"10.244.{(self._next_ip // 250) % 250}.{self._next_ip % 250 + 2}",
        )
        self._next_ip += 1
        key = (state.namespace, state.name)
        self.pods[key] = state
        if state.main().kind != workload.CRASH:
            state.port = self.net.open(key)
        node_name = spec.get("nodeName") or NODE_NAME
        self._recorder.record(
            pod,
            reason="Scheduled",
            component="default-scheduler",
            message=f"Successfully assigned {state.namespace}/{state.name} to {node_name}",
        )
        for c in containers:
            self._recorder.record(
                pod,
                reason="Pulled",
                component=COMPONENT,
                message=f'Container image "{c.image}" already present on machine',
            )
            self._recorder.record(
                pod, reason="Created", component=COMPONENT, message=f"Created container: {c.name}"
            )
            self._recorder.record(
                pod, reason="Started", component=COMPONENT, message=f"Started container {c.name}"
            )
        return state

    def _advance(self, state: PodState, now: float) -> None:
        """Crash and restart containers whose time has come; schedule the next change."""
        due = [
            at
            for i, c in enumerate(state.containers)
            if c.kind == workload.CRASH and (at := self._advance_crash(state, i, now)) is not None
        ]
        if state.ready_since is None and self._all_running(state):
            if now >= state.ready_at:
                state.ready_since = state.ready_at
            else:
                due.append(state.ready_at)
        if due:
            key = ("pod", state.namespace, state.name)
            self._schedule(key, max(0.0, min(due) - now) + 0.001)

    def _advance_crash(self, state: PodState, index: int, now: float) -> float | None:
        """Step a crash-looping container; returns when it next changes."""
        container = state.containers[index]
        until = state.waiting_until.get(container.name)
        if until is not None and now >= until:  # back-off over: a new attempt starts
            state.waiting_until.pop(container.name)
            container = dataclasses.replace(
                container, started_at=now, attempt=container.attempt + 1, ended_at=None
            )
            state.containers[index] = container
        if container.name in state.waiting_until:
            return state.waiting_until[container.name]
        crash_at = container.started_at + container.crash_after
        if now < crash_at:
            return crash_at
        container.ended_at = crash_at
        state.previous[container.name] = container
        restarts = state.restarts.get(container.name, 0) + 1
        state.restarts[container.name] = restarts
        backoff: float = min(
            self._config.backoff_max, self._config.backoff_base * 2 ** (restarts - 1)
        )
        state.waiting_until[container.name] = now + backoff
        stored = self._store.get(resources.PODS, state.namespace, state.name)
        if stored is not None:
            self._recorder.record(
                stored.obj,
                reason="BackOff",
                component=COMPONENT,
                warning=True,
                message=f"Back-off restarting failed container {container.name} in pod "
                f"{state.name}_{state.namespace}({state.uid})",
            )
        return now + backoff

    @staticmethod
    def _all_running(state: PodState) -> bool:
        return all(c.kind != workload.CRASH for c in state.containers)

    def _write_status(self, stored: store.Stored, state: PodState, now: float) -> None:
        pod = stored.obj
        ready = state.ready_since is not None
        started_at = store.rfc3339(min(c.started_at for c in state.containers))
        statuses = []
        for c in state.containers:
            restarts = state.restarts.get(c.name, 0)
            status: dict[str, Any] = {
                "name": c.name,
                "state": {},
                "lastState": {},
                "ready": ready,
                "restartCount": restarts,
                "image": c.image,
                "imageID": _image_id(c.image),
                "containerID": _container_id(state.uid, c.name, c.attempt),
                "started": c.name not in state.waiting_until,
            }
            if c.name in state.waiting_until:
                status["state"] = {
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": f"back-off restarting failed container={c.name} "
                        f"pod={state.name}_{state.namespace}({state.uid})",
                    }
                }
            else:
                status["state"] = {"running": {"startedAt": store.rfc3339(c.started_at)}}
            prev = state.previous.get(c.name)
            if prev is not None and prev.ended_at is not None:
                status["lastState"] = {
                    "terminated": {
                        "exitCode": 1,
                        "reason": "Error",
                        "startedAt": store.rfc3339(prev.started_at),
                        "finishedAt": store.rfc3339(prev.ended_at),
                        "containerID": _container_id(state.uid, c.name, prev.attempt),
                    }
                }
            statuses.append(status)
        transition = store.rfc3339(state.ready_since) if ready else started_at
        not_ready = [c.name for c in state.containers if not ready]
        ready_cond: dict[str, Any] = {
            "type": "Ready",
            "status": "True" if ready else "False",
            "lastProbeTime": None,
            "lastTransitionTime": transition,
        }
        containers_ready = dict(ready_cond, type="ContainersReady")
        if not ready:
            message = f"containers with unready status: [{' '.join(not_ready)}]"
            ready_cond.update(reason="ContainersNotReady", message=message)
            containers_ready.update(reason="ContainersNotReady", message=message)
        conditions = [
            {
                "type": "PodReadyToStartContainers",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": started_at,
            },
            {
                "type": "Initialized",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": started_at,
            },
            ready_cond,
            containers_ready,
            {
                "type": "PodScheduled",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": started_at,
            },
        ]
        new_status = {
            "phase": "Running",
            "conditions": conditions,
            "hostIP": HOST_IP,
            "hostIPs": [{"ip": HOST_IP}],
            "podIP": state.pod_ip,
            "podIPs": [{"ip": state.pod_ip}],
            "startTime": started_at,
            "containerStatuses": statuses,
            "qosClass": (pod.get("status") or {}).get("qosClass", "BestEffort"),
        }
        new = json.loads(stored.raw)
        new["status"] = new_status
        new["spec"].setdefault("nodeName", NODE_NAME)
        annotations = new["metadata"].setdefault("annotations", {})
        if state.port is not None:
            annotations[PORT_ANNOTATION] = str(state.port)
        if not annotations:
            del new["metadata"]["annotations"]
        if new != pod:
            self._store.replace(resources.PODS, new)

    def _terminate(self, stored: store.Stored, state: PodState, now: float) -> None:
        """A deleted pod: SIGTERM, wait for the containers (at most the grace period), then
        the final delete (``killPod`` and the status manager's ``canBeDeleted``)."""
        if state.stop_at is None:
            grace = float(stored.obj["metadata"].get("deletionGracePeriodSeconds") or 0)
            running = any(c.name not in state.waiting_until for c in state.containers)
            shutdown = self._config.shutdown_seconds if running else 0.0
            state.stop_at = now + min(grace, shutdown)
            state.killed = shutdown > grace
            for c in state.containers:
                self._recorder.record(
                    stored.obj,
                    reason="Killing",
                    component=COMPONENT,
                    message=f"Stopping container {c.name}",
                )
        if now < state.stop_at:
            self._schedule(("pod", state.namespace, state.name), state.stop_at - now + 0.001)
            return
        for c in state.containers:
            if c.ended_at is None:
                c.ended_at = state.stop_at
        self._write_terminated(stored, state)
        self._forget((state.namespace, state.name), state, now)
        self._deleter.finish(resources.PODS, state.namespace, state.name)

    def _write_terminated(self, stored: store.Stored, state: PodState) -> None:
        """Containers terminated (0 after SIGTERM, 137 when killed), the pod in a terminal phase."""
        code, reason = (137, "Error") if state.killed else (0, "Completed")
        new = json.loads(stored.raw)
        status = new.setdefault("status", {})
        for cs in status.get("containerStatuses") or []:
            container = next((c for c in state.containers if c.name == cs.get("name")), None)
            started = container.started_at if container is not None else state.stop_at or 0.0
            cs["ready"] = False
            cs["started"] = False
            cs["state"] = {
                "terminated": {
                    "exitCode": code,
                    "reason": reason,
                    "startedAt": store.rfc3339(started),
                    "finishedAt": store.rfc3339(state.stop_at),
                    "containerID": cs.get("containerID", ""),
                }
            }
        for cond in status.get("conditions") or []:
            if cond.get("type") in ("Ready", "ContainersReady") and cond.get("status") == "True":
                cond.update(
                    status="False",
                    reason="PodCompleted",
                    lastTransitionTime=store.rfc3339(state.stop_at),
                )
        status["phase"] = "Failed" if state.killed else "Succeeded"
        if new != stored.obj:
            self._store.replace(resources.PODS, new)

    def _forget(self, key: PodKey, state: PodState, now: float) -> None:
        self.pods.pop(key, None)
        self.net.close(key)
        main = state.main()
        if main.kind != workload.CRASH:
            retired_key = (state.namespace, frozenset(state.labels.items()))
            self.retired.setdefault(retired_key, workload.Counters()).add(main.counters(now))

    def is_ready(self, namespace: str, name: str) -> bool:
        """Ready and not terminating (a terminating pod is no longer a ready endpoint)."""
        state = self.pods.get((namespace, name))
        return state is not None and state.ready_since is not None and state.stop_at is None


def respond(
    container: workload.Container, method: str, path: str, now: float
) -> tuple[int, str, bytes]:
    """What a pod's port answers: ``/health``, ``/metrics``, or 404."""
    if method not in ("GET", "HEAD"):
        return 405, "application/json", b'{"error":"method not allowed"}\n'
    if path in ("/health", "/healthz", "/ready"):
        code, body = container.health(now)
        return code, "application/json", json.dumps(body).encode() + b"\n"
    if path == "/metrics":
        text = workload.render_metrics(
            container.counters(now),
            container.gauges(now),
            labels={"version": container.version, "mode": container.mode, "pod": container.pod},
        )
        return 200, "text/plain; version=0.0.4; charset=utf-8", text.encode()
    return 404, "application/json", b'{"error":"not found"}\n'
