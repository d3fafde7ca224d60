"""What the Kubernetes actions share: the target, reads, the patch, the wait and the diff."""

from __future__ import annotations

import copy
import dataclasses
import functools
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import Field

from crystal_runbook import errors
from crystal_runbook.engine.model import MAX_INPUT_LENGTH
from crystal_runbook.engine.registry import Action, Args, Change, Check, Outcome, StepContext
from crystal_runbook.engine.secrets import looks_secret
from crystal_runbook.kube import client as kube_client
from crystal_runbook.kube import resources, rollout, wait

A = TypeVar("A", bound=type[Action])

MAX_REPLICAS = 1000
INT32_MAX = 2**31 - 1
"""Kubernetes keeps replica counts in an int32: more is refused by any API server."""
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,252}$")


class KubeArgs(Args):
    deployment: str | None = Field(
        default=None, description="Default: target.kubernetes.deployment"
    )
    namespace: str | None = Field(default=None, description="Default: target.kubernetes.namespace")


def target_of(args: KubeArgs, ctx: StepContext) -> kube_client.KubeTarget:
    base = kube_client.KubeTarget.from_target(ctx.target) if ctx.target.get("kubernetes") else None
    if base is None and args.deployment is None:
        raise errors.ConfigurationError(
            "no deployment: the service has no `kubernetes:` block for this environment and "
            "the step names none",
            hint="add kubernetes: {namespace, deployment} to "
            "inventory/services.yaml or `deployment:` to the step's `with:`",
        )
    return kube_client.KubeTarget(
        deployment=args.deployment or (base.deployment if base else ""),
        namespace=args.namespace or (base.namespace if base else "default"),
        context=base.context if base else None,
        kubeconfig=base.kubeconfig if base else None,
        container=base.container if base else None,
    )


def deadline(ctx: StepContext, default: float = 60.0) -> float:
    return ctx.deadline if ctx.deadline is not None else time.monotonic() + default


def deployment(
    kube: kube_client.Kube, target: kube_client.KubeTarget, ctx: StepContext
) -> dict[str, Any]:
    return resources.deployment(kube, target, deadline(ctx))


def replicasets(
    kube: kube_client.Kube,
    target: kube_client.KubeTarget,
    deployment: dict[str, Any],
    ctx: StepContext,
) -> list[dict[str, Any]]:
    return resources.replicasets(kube, target, deployment, deadline(ctx))


SHARED_READ_SECONDS = 5.0
"""How long a check's reads may stand in for the next check's or the apply's (see below)."""


class SharedReads:
    """A check's reads of the Deployment and its ReplicaSets, handed to what follows in the
    same step: the step's own check after the preflight's, and the apply after the check.

    The reads are only an optimisation of the request count, never of the guarantees: the
    apply's patch carries a resourceVersion `test`, so if the Deployment changed since it
    was read, the patch is refused (422) and the apply reads it again and checks again. The
    apply takes the reads out (``take``), so a check after it (the engine's re-check of a
    failed apply) always reads afresh. Reads older than ``SHARED_READ_SECONDS`` are not used.
    """

    def __init__(self, size: int = 16) -> None:
        self._reads: OrderedDict[
            tuple[str, str], tuple[float, dict[str, Any], list[dict[str, Any]]]
        ] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def keep(
        self, ctx: StepContext, deployment: dict[str, Any], owned: list[dict[str, Any]]
    ) -> None:
        with self._lock:
            self._reads[(ctx.run_id, ctx.step_id)] = (time.monotonic(), deployment, owned)
            while len(self._reads) > self._size:
                self._reads.popitem(last=False)

    def get(
        self, ctx: StepContext, *, take: bool = False
    ) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        """The step's recent reads, if any (``take``: and forget them)."""
        key = (ctx.run_id, ctx.step_id)
        with self._lock:
            found = self._reads.pop(key, None) if take else self._reads.get(key)
        if found is None or time.monotonic() - found[0] > SHARED_READ_SECONDS:
            return None
        return copy.deepcopy(found[1]), copy.deepcopy(found[2])


def patch(
    kube: kube_client.Kube,
    target: kube_client.KubeTarget,
    ctx: StepContext,
    body: Any,
    content_type: str,
    *,
    sub: str | None = None,
) -> dict[str, Any]:
    return kube.json(
        "PATCH",
        target.path(resources.APPS, "deployments", target.deployment, sub),
        body=body,
        content_type=content_type,
        what=f"patch deployment {target.deployment}" + (f"/{sub}" if sub else ""),
        where=target.where,
        deadline=deadline(ctx),
    )


def wait_done(
    kube: kube_client.Kube, target: kube_client.KubeTarget, ctx: StepContext, crash_grace: float
) -> Check:
    state = wait.wait_rollout(
        kube, target, deadline=deadline(ctx, 300.0), crash_grace=crash_grace, progress=ctx.progress
    )
    return Check(satisfied=state.done, summary=state.message)


def valid_env(value: dict[str, str]) -> dict[str, str]:
    for key, item in value.items():
        if not ENV_NAME.fullmatch(key):
            raise ValueError(f"{key[:60]!r} is not a valid environment variable name")
        if len(str(item)) > MAX_INPUT_LENGTH:
            raise ValueError(f"value of {key} is longer than {MAX_INPUT_LENGTH} characters")
    return {k: str(v) for k, v in value.items()}


def mask(name: str, value: Any) -> Any:
    return "*****" if looks_secret(name) and value is not None else value


def image_list(template: Mapping[str, Any]) -> str:
    return ", ".join(rollout.images(template).values())


def image_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Change]:
    old, new = rollout.images(before), rollout.images(after)
    return [
        Change(f"image[{name}]", old.get(name), image)
        for name, image in new.items()
        if old.get(name) != image
    ]


def env_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Change]:
    changes = []
    for container in after.get("spec", {}).get("containers") or []:
        name = container.get("name")
        old, new = rollout.env_of(before, name), rollout.env_of(after, name)
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                changes.append(
                    Change(
                        f"env[{name}].{key}", old.get(key), new.get(key), secret=looks_secret(key)
                    )
                )
    return changes


def hpa_for(
    kube: kube_client.Kube, target: kube_client.KubeTarget, ctx: StepContext
) -> dict[str, Any] | None:
    """The HorizontalPodAutoscaler that scales the target Deployment, as name, min and max."""
    listed = kube.json(
        "GET",
        target.path(resources.HPAS, "horizontalpodautoscalers"),
        what="list horizontalpodautoscalers",
        where=target.where,
        deadline=deadline(ctx),
    )
    for hpa in listed.get("items", []):
        ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        if ref.get("kind") == "Deployment" and ref.get("name") == target.deployment:
            spec = hpa["spec"]
            return {
                "name": hpa["metadata"]["name"],
                "min": int(spec.get("minReplicas", 1)),
                "max": int(spec.get("maxReplicas", 1)),
            }
    return None


# --- API request counts ---------------------------------------------------------------------

REQUESTS = "api_requests"
"""Evidence key: Kubernetes API requests the step has made so far (check, apply, verify and
their retries). Drill reports add them up per phase."""
_TALLY: OrderedDict[tuple[str, str], int] = OrderedDict()
_TALLY_LOCK = threading.Lock()
_TALLY_SIZE = 256


def _tally(ctx: StepContext, sent: int) -> int:
    """Add ``sent`` to the step's running count and return it (the last steps are kept)."""
    key = (ctx.run_id, ctx.step_id)
    with _TALLY_LOCK:
        total = _TALLY.pop(key, 0) + sent
        _TALLY[key] = total
        while len(_TALLY) > _TALLY_SIZE:
            _TALLY.popitem(last=False)
    return total


def _counted(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def counted(self: Action, args: Any, ctx: StepContext, *rest: Any) -> Any:
        before = kube_client.requests_sent()
        result = fn(self, args, ctx, *rest)
        total = _tally(ctx, kube_client.requests_sent() - before)
        if isinstance(result, Check | Outcome):
            return dataclasses.replace(result, evidence={**result.evidence, REQUESTS: total})
        return result

    counted.__counts_requests__ = True  # type: ignore[attr-defined]  # marker: wrapped once
    return counted


def count_requests(cls: A) -> A:
    """Make ``cls``'s check, apply and verify record the step's API requests in evidence.

    Counted on the calling thread (``kube.client.requests_sent``), so the lock's heartbeat
    and other threads never add to a step's count. Methods ``cls`` does not define stay the
    base class's, so ``Action.read_only`` and ``Action.verifies`` keep their meaning.
    """
    for name in ("check", "apply", "verify"):
        fn = getattr(cls, name)
        if fn is getattr(Action, name) or getattr(fn, "__counts_requests__", False):
            continue
        setattr(cls, name, _counted(fn))
    return cls
