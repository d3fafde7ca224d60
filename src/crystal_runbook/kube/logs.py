"""Logs of every pod of a Deployment: recent lines, or followed across restarts and rollouts.

`kubectl logs -f deployment/maia` follows one pod and stops when a rollout replaces it; at
3 a.m. that is exactly when you need the logs. ``follow`` watches the Deployment's pods by
label selector, starts a reader per running container, stops readers of deleted pods and
picks up the pods a rollout creates. Lines go through a bounded queue (memory stays bounded
however fast pods write) and are prefixed `pod/container`.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from typing import Any

from crystal_runbook import errors
from crystal_runbook.kube import resources, rollout
from crystal_runbook.kube.client import Kube, KubeTarget, iter_lines, translate

QUEUE_LINES = 10_000
"""Lines buffered between pod readers and the printer; readers wait when it is full."""


def _containers(pod: dict[str, Any], container: str | None) -> list[str]:
    names = [str(c.get("name", "")) for c in (pod.get("spec") or {}).get("containers") or []]
    return [container] if container is not None and container in names else names


def _selector(kube: Kube, target: KubeTarget, deadline: float) -> str:
    return rollout.selector_string(resources.deployment(kube, target, deadline))


def recent(
    kube: Kube,
    target: KubeTarget,
    *,
    since: float | None,
    tail: int | None,
    grep: str | None,
    container: str | None,
    limit: int,
    deadline: float,
) -> Iterator[str]:
    """Up to ``limit`` recent lines of every pod (``pod/container line``), oldest pods first."""
    pattern = re.compile(grep) if grep else None
    pods, _ = resources.pods(kube, target, _selector(kube, target, deadline), deadline)
    count = 0
    for pod in sorted(pods, key=lambda p: p.get("metadata", {}).get("creationTimestamp", "")):
        name = pod["metadata"]["name"]
        for cname in _containers(pod, container):
            text = resources.pod_log(
                kube, target, name, container=cname, tail=tail, since=since, deadline=deadline
            )
            for line in text.splitlines():
                if pattern is None or pattern.search(line):
                    yield f"{name}/{cname} {line}"
                    count += 1
                    if count >= limit:
                        return


class _Reader:
    """One container's log stream feeding the shared queue."""

    def __init__(
        self,
        kube: Kube,
        target: KubeTarget,
        pod: str,
        container: str,
        *,
        lines: queue.Queue[str],
        pattern: re.Pattern[str] | None,
        tail: int | None,
        since: float | None,
    ) -> None:
        self.kube, self.target, self.pod, self.container = kube, target, pod, container
        self.lines, self.pattern, self.tail, self.since = lines, pattern, tail, since
        self.done = threading.Event()
        self.response: Any = None
        self.thread = threading.Thread(target=self._run, name=f"log-{pod}/{container}", daemon=True)

    def _run(self) -> None:
        prefix = f"{self.pod}/{self.container} "
        try:
            self.response = self.kube.stream(
                self.target.path("", "pods", self.pod, "log"),
                what=f"follow logs of {self.pod}",
                where=self.target.where,
                query={
                    "container": self.container,
                    "follow": True,
                    "tailLines": self.tail,
                    "sinceSeconds": int(self.since) if self.since else None,
                },
            )
            if self.done.is_set():
                return
            # a stream cut by Ctrl-C (or by the pod going away) ends this reader quietly
            with translate(f"follow logs of {self.pod}", where=self.target.where):
                for line in iter_lines(self.response):
                    if self.done.is_set():
                        break
                    if self.pattern is None or self.pattern.search(line):
                        self._put(prefix + line)
        except (errors.CrystalError, OSError, ValueError, AttributeError, RuntimeError):
            return  # the pod went away, or we closed its stream: both end this reader
        finally:
            self.done.set()
            if self.response is not None:  # only this thread closes its own stream
                with suppress(OSError, RuntimeError):
                    self.response.close()

    def _put(self, line: str) -> None:
        while not self.done.is_set():
            try:
                self.lines.put(line, timeout=0.2)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        """Stop this reader from another thread: wake its blocked read, it closes the rest."""
        self.done.set()
        response = self.response
        if response is not None:
            # urllib3 raises ValueError/RuntimeError when the socket is already gone
            with suppress(AttributeError, OSError, RuntimeError, ValueError):
                response.shutdown()


def follow(
    kube: Kube,
    target: KubeTarget,
    *,
    since: float | None,
    tail: int | None,
    grep: str | None,
    container: str | None,
    emit: Callable[[str], None],
    stop: threading.Event,
    until: float | None = None,
) -> None:
    """Follow every pod's log until ``stop`` is set (or ``until``, a monotonic time)."""
    follower = _Follower(
        kube, target, container=container, pattern=re.compile(grep) if grep else None, stop=stop
    )
    follower.run(
        emit,
        since=since,
        tail=tail,
        end=until if until is not None else time.monotonic() + 7 * 24 * 3600,
    )


class _Follower:
    """The pod watch and the readers of one `logs --follow`."""

    def __init__(
        self,
        kube: Kube,
        target: KubeTarget,
        *,
        container: str | None,
        pattern: re.Pattern[str] | None,
        stop: threading.Event,
    ) -> None:
        self.kube, self.target, self.container = kube, target, container
        self.pattern, self.stop = pattern, stop
        self.lines: queue.Queue[str] = queue.Queue(maxsize=QUEUE_LINES)
        self.readers: dict[str, _Reader] = {}
        self.lock = threading.Lock()
        self.selector = ""
        self.rv = ""

    def start(
        self, pod: dict[str, Any], *, tail: int | None = None, since: float | None = None
    ) -> None:
        """Start readers for a running pod's containers that have none."""
        if (pod.get("status") or {}).get("phase") != "Running":
            return
        name = pod["metadata"]["name"]
        with self.lock:
            for cname in _containers(pod, self.container):
                key = f"{name}/{cname}"
                if key in self.readers and not self.readers[key].done.is_set():
                    continue
                reader = _Reader(
                    self.kube,
                    self.target,
                    name,
                    cname,
                    lines=self.lines,
                    pattern=self.pattern,
                    tail=tail,
                    since=since,
                )
                self.readers[key] = reader
                reader.thread.start()

    def forget(self, name: str) -> None:
        with self.lock:
            for key in [k for k in self.readers if k.startswith(name + "/")]:
                self.readers.pop(key).close()

    def watch_pods(self) -> None:
        """Start readers for new pods and stop those of deleted pods, until stopped."""
        while not self.stop.is_set():
            try:
                for event in self.kube.watch(
                    self.target.path("", "pods"),
                    what="watch pods",
                    where=self.target.where,
                    timeout_seconds=5,
                    query={"labelSelector": self.selector, "resourceVersion": self.rv},
                ):
                    pod = event.get("object") or {}
                    self.rv = pod.get("metadata", {}).get("resourceVersion", self.rv)
                    if event.get("type") == "DELETED":
                        self.forget(pod.get("metadata", {}).get("name", ""))
                    elif event.get("type") in ("ADDED", "MODIFIED"):
                        self.start(pod)
                    if self.stop.is_set():
                        return
            except errors.CrystalError:
                if self.stop.wait(1.0):
                    return
                current, self.rv = resources.pods(
                    self.kube, self.target, self.selector, time.monotonic() + 30
                )
                for pod in current:
                    self.start(pod)

    def run(
        self, emit: Callable[[str], None], *, since: float | None, tail: int | None, end: float
    ) -> None:
        self.selector = _selector(self.kube, self.target, time.monotonic() + 30)
        pods, self.rv = resources.pods(self.kube, self.target, self.selector, time.monotonic() + 30)
        for pod in pods:
            self.start(pod, tail=tail, since=since)
        watcher = threading.Thread(target=self.watch_pods, name="log-pod-watch", daemon=True)
        watcher.start()
        try:
            while not self.stop.is_set() and time.monotonic() < end:
                try:
                    emit(self.lines.get(timeout=0.2))
                except queue.Empty:
                    continue
        finally:
            self.stop.set()
            with self.lock:
                readers = list(self.readers.values())
            for reader in readers:
                reader.close()
            watcher.join(timeout=7)
            for reader in readers:
                reader.thread.join(timeout=2)
