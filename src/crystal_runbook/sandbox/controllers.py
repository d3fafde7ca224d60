"""Wires the controllers to the store: which change wakes which controller.

The store calls ``on_event`` after every commit; it maps the change to work-queue keys:
a Deployment change syncs that Deployment, a ReplicaSet change syncs it and its owning
Deployment, a pod change syncs the kubelet for that pod and its owning ReplicaSet, and any
deletion runs the garbage collector. The single worker thread then calls ``handle``.
"""

from __future__ import annotations

from collections.abc import Hashable

from crystal_runbook.sandbox import events, resources, store
from crystal_runbook.sandbox.config import SandboxConfig
from crystal_runbook.sandbox.deployments import DeploymentController
from crystal_runbook.sandbox.gc import GarbageCollector
from crystal_runbook.sandbox.kubelet import Kubelet
from crystal_runbook.sandbox.replicasets import ReplicaSetController, controller_ref
from crystal_runbook.sandbox.workqueue import WorkQueue

GC_KEY = ("gc",)


class Controllers:
    """Deployment and ReplicaSet controllers, garbage collector and kubelet on one queue."""

    def __init__(self, st: store.Store, config: SandboxConfig) -> None:
        self.store = st
        self.queue = WorkQueue(self.handle)
        self.recorder = events.Recorder(st)
        self.kubelet = Kubelet(st, self.recorder, config, self.queue.add_after)
        self.replicasets = ReplicaSetController(st, self.recorder, self.queue.add_after)
        self.deployments = DeploymentController(st, self.recorder, self.queue.add_after)
        self.gc = GarbageCollector(st)
        st.subscribe(self.on_event)

    def start(self) -> None:
        """Start the worker and queue a sync of everything already in the store."""
        for res, stored in self.store.all_objects():
            self.on_event(res, store.Event(stored.rv, "ADDED", stored.obj, stored.raw, None))
        self.queue.start()

    def stop(self) -> None:
        self.queue.stop()
        self.kubelet.stop()

    def on_event(self, res: resources.Resource, event: store.Event) -> None:
        meta = event.obj["metadata"]
        ns, name = meta.get("namespace") or "", meta["name"]
        owner = controller_ref(event.obj)
        if res is resources.DEPLOYMENTS:
            self.queue.add(("deploy", ns, name))
        elif res is resources.REPLICASETS:
            self.queue.add(("rs", ns, name))
            if owner is not None and owner.get("kind") == "Deployment":
                self.queue.add(("deploy", ns, owner["name"]))
        elif res is resources.PODS:
            self.queue.add(("pod", ns, name))
            if owner is not None and owner.get("kind") == "ReplicaSet":
                self.queue.add(("rs", ns, owner["name"]))
        deleting = event.type == "DELETED" or meta.get("deletionTimestamp")
        if deleting and res is not resources.EVENTS:
            self.queue.add(GC_KEY)

    def handle(self, key: Hashable) -> None:
        if key == GC_KEY:
            if self.gc.sync():
                self.queue.add(GC_KEY)
            return
        assert isinstance(key, tuple)  # noqa: S101 - keys are built in on_event only  # nosec B101
        kind, ns, name = key
        if kind == "deploy":
            self.deployments.sync(ns, name)
        elif kind == "rs":
            self.replicasets.sync(ns, name)
        elif kind == "pod":
            self.kubelet.sync(ns, name)
