"""Wait for a Deployment's rollout by watching it, and fail fast when it cannot succeed.

kubectl's `rollout status` re-reads the Deployment on every watch event; so does this, and
it adds what an on-call engineer wants before a five-minute deadline: pods of the new
ReplicaSet stuck in CrashLoopBackOff or ImagePullBackOff for longer than a grace period end
the wait at once, naming the pods and the last lines of their logs. No sleep-polling: the
watch wakes on every change; pods are looked at when a watch's server-side timeout (a few
seconds) rolls over.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import Any

from crystal_runbook import errors
from crystal_runbook.kube import resources, rollout
from crystal_runbook.kube.client import Kube, KubeTarget

STUCK_REASONS = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "CreateContainerConfigError",
        "InvalidImageName",
    }
)
WATCH_SLICE = 3
"""Server-side timeout of one watch request (seconds); pods are checked between slices."""


def wait_rollout(
    kube: Kube,
    target: KubeTarget,
    *,
    deadline: float,
    crash_grace: float = 15.0,
    progress: Callable[[str], None] = lambda _m: None,
) -> rollout.Progress:
    """Block until the rollout completes, fails, or ``deadline`` passes; return where it is.

    Raises:
        errors.VerificationFailed: progress deadline exceeded, or stuck pods past the grace.
    """
    started = time.monotonic()
    dep = resources.deployment(kube, target, deadline)
    last_message = ""
    while True:
        state = rollout.rollout_progress(dep)
        if state.failed:
            raise errors.VerificationFailed(
                state.message,
                hint="`kubectl describe deployment` shows why; roll back to "
                "another revision, or fix the image",
                evidence="\n".join(_stuck_pods(kube, target, dep, deadline)) or None,
            )
        if state.done:
            return state
        if state.message != last_message:
            progress(state.message)
            last_message = state.message
        if time.monotonic() - started >= crash_grace:
            stuck = _stuck_pods(kube, target, dep, deadline)
            if stuck:
                raise errors.VerificationFailed(
                    f"rollout of {target.deployment!r} cannot succeed: {stuck[0].splitlines()[0]}",
                    hint="the new pods do not start; roll back to another revision or fix the "
                    "image",
                    evidence="\n".join(stuck),
                )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return state
        events: Generator[dict[str, Any], None, None] = kube.watch(
            resources.deployments_path(target),
            what=f"watch deployment {target.deployment}",
            where=target.where,
            timeout_seconds=max(1, min(WATCH_SLICE, int(remaining))),
            query={
                "fieldSelector": f"metadata.name={target.deployment}",
                "resourceVersion": dep.get("metadata", {}).get("resourceVersion"),
            },
        )
        for event in events:
            kind = event.get("type")
            if kind == "DELETED":
                raise errors.VerificationFailed(
                    f"deployment {target.deployment!r} was deleted during the rollout"
                )
            if kind in ("ADDED", "MODIFIED"):
                dep = event["object"]
                current = rollout.rollout_progress(dep)
                if current.done or current.failed:
                    events.close()
                    break
            elif kind == "BOOKMARK":
                rv = event.get("object", {}).get("metadata", {}).get("resourceVersion")
                if rv:
                    dep.setdefault("metadata", {})["resourceVersion"] = rv
        else:
            # the watch ended by its timeout (or a 410): re-read to be exact
            dep = resources.deployment(kube, target, deadline)


def _stuck_pods(kube: Kube, target: KubeTarget, dep: dict[str, Any], deadline: float) -> list[str]:
    """One entry per new pod stuck in a waiting reason that will not clear by itself."""
    template = dep.get("spec", {}).get("template") or {}
    owned = resources.replicasets(kube, target, dep, deadline)
    new = next(
        (
            rs
            for rs in owned
            if rollout.templates_equal(rs.get("spec", {}).get("template") or {}, template)
        ),
        None,
    )
    pod_hash = ((new or {}).get("metadata", {}).get("labels") or {}).get(rollout.HASH_LABEL)
    if not pod_hash:
        return []
    selector = f"{rollout.selector_string(dep)},{rollout.HASH_LABEL}={pod_hash}"
    found = []
    for pod in resources.pods(kube, target, selector, deadline)[0]:
        name = pod.get("metadata", {}).get("name", "?")
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (status.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") not in STUCK_REASONS:
                continue
            try:
                text = resources.pod_log(
                    kube,
                    target,
                    name,
                    container=status.get("name"),
                    tail=5,
                    since=None,
                    deadline=time.monotonic() + 5,
                )
                tail = "\n".join("    " + line for line in text.splitlines()[-5:])
            except errors.CrystalError:
                tail = ""
            found.append(
                f"pod {name} container {status.get('name')}: {waiting['reason']} "
                f"(restarts {status.get('restartCount', 0)})"
                + (f"; last log lines:\n{tail}" if tail else "")
            )
    return found
