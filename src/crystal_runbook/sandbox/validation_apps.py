"""Validation of Deployments, ReplicaSets and pods, worded as the API server words it.

Follows ``pkg/apis/apps/validation`` (``ValidateDeploymentSpec``,
``ValidateDeploymentStrategy``, ``ValidateRollingUpdateDeployment``,
``ValidateReplicaSetSpec``, ``ValidatePodTemplateSpecForReplicaSet``) and the parts of
``pkg/apis/core/validation`` (``ValidatePodSpec``) that a wrong client or runbook trips
on, in upstream's order, so a 422 lists the same causes with the same text a real cluster
sends. What is not checked here (most of the pod spec's fields) is accepted.
"""

from __future__ import annotations

from typing import Any

from crystal_runbook.sandbox import fielderr as fe
from crystal_runbook.sandbox import selectors

Obj = dict[str, Any]
Causes = list[fe.Cause]

RESTART_POLICIES = ["Always", "OnFailure", "Never"]
INT32_MAX = 2**31 - 1
"""Largest replica count: `spec.replicas` is an int32 in the Kubernetes API."""


def pod_spec(spec: Any, path: str, *, restart: list[str] | None = None) -> Causes:
    """``ValidatePodSpec``'s checks of containers and restart policy (``restart``: allowed)."""
    if not isinstance(spec, dict):
        return [fe.required(path)]
    causes: Causes = []
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        causes.append(fe.required(f"{path}.containers"))
        containers = []
    seen: set[str] = set()
    for i, container in enumerate(containers):
        where = f"{path}.containers[{i}]"
        if not isinstance(container, dict):
            causes.append(fe.invalid(where, container, "must be an object"))
            continue
        name = container.get("name")
        if not name:
            causes.append(fe.required(f"{where}.name"))
        elif name in seen:
            causes.append(fe.duplicate(f"{where}.name", name))
        else:
            seen.add(str(name))
        if not container.get("image"):
            causes.append(fe.required(f"{where}.image"))
        for j, env in enumerate(container.get("env") or []):
            if not isinstance(env, dict) or not env.get("name"):
                causes.append(fe.required(f"{where}.env[{j}].name"))
    policy = spec.get("restartPolicy", "Always")
    allowed = restart or RESTART_POLICIES
    if policy not in allowed:
        causes.append(fe.not_supported(f"{path}.restartPolicy", policy, allowed))
    grace = spec.get("terminationGracePeriodSeconds")
    causes += fe.nonnegative(f"{path}.terminationGracePeriodSeconds", grace)
    return causes


def _selector(selector: Any, path: str, kind: str) -> tuple[Causes, selectors.LabelSelector | None]:
    if not isinstance(selector, dict):
        return [fe.required(path)], None
    causes: Causes = []
    if not (selector.get("matchLabels") or selector.get("matchExpressions")):
        causes.append(fe.invalid(path, selector, f"empty selector is invalid for {kind}"))
    try:
        return causes, selectors.from_structured(selector)
    except selectors.SelectorError:
        return [*causes, fe.invalid(path, selector, "invalid label selector")], None


def template_for_replicaset(
    template: Any, selector: selectors.LabelSelector | None, path: str
) -> Causes:
    """``ValidatePodTemplateSpecForReplicaSet``: labels match, restartPolicy Always."""
    if not isinstance(template, dict):
        return [fe.required(path)]
    causes: Causes = []
    labels = (template.get("metadata") or {}).get("labels") or {}
    if selector is not None and not selector.empty and not selector.matches(labels):
        causes.append(
            fe.invalid(
                f"{path}.metadata.labels", labels, "`selector` does not match template `labels`"
            )
        )
    causes += pod_spec(template.get("spec"), f"{path}.spec", restart=["Always"])
    if isinstance(template.get("spec"), dict) and "activeDeadlineSeconds" in template["spec"]:
        causes.append(
            fe.forbidden(
                f"{path}.spec.activeDeadlineSeconds",
                "activeDeadlineSeconds in ReplicaSet is not Supported",
            )
        )
    return causes


def _strategy(strategy: Any) -> Causes:
    """``ValidateDeploymentStrategy`` and ``ValidateRollingUpdateDeployment``."""
    path = "spec.strategy"
    strategy = strategy if isinstance(strategy, dict) else {}
    kind = strategy.get("type")
    if kind == "Recreate":
        if strategy.get("rollingUpdate") is not None:
            return [
                fe.forbidden(
                    f"{path}.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                )
            ]
        return []
    if kind != "RollingUpdate":
        return [fe.not_supported(path, kind, ["Recreate", "RollingUpdate"])]
    rolling = strategy.get("rollingUpdate")
    if not isinstance(rolling, dict):
        return [fe.required(f"{path}.rollingUpdate", "this should be defaulted and never be nil")]
    unavailable = rolling.get("maxUnavailable", 0)
    surge = rolling.get("maxSurge", 0)
    causes = fe.positive_int_or_percent(f"{path}.rollingUpdate.maxUnavailable", unavailable)
    causes += fe.positive_int_or_percent(f"{path}.rollingUpdate.maxSurge", surge)
    if fe.int_or_percent_value(unavailable) == 0 and fe.int_or_percent_value(surge) == 0:
        causes.append(
            fe.invalid(
                f"{path}.rollingUpdate.maxUnavailable",
                unavailable,
                "may not be 0 when `maxSurge` is 0",
                shown=fe.int_or_string(unavailable),
            )
        )
    causes += fe.not_more_than_100_percent(f"{path}.rollingUpdate.maxUnavailable", unavailable)
    return causes


def replicas_problem(replicas: Any) -> str | None:
    """Why ``replicas`` is not a valid replica count (an int32 of at least 0), or None."""
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        return f"Invalid value: {fe.go_value(replicas)}: {fe.NEGATIVE}"
    if replicas > INT32_MAX:
        return f"Invalid value: {replicas}: must be less than or equal to {INT32_MAX}"
    return None


def _replicas(value: Any) -> Causes:
    problem = replicas_problem(value)
    return [] if problem is None else [("FieldValueInvalid", "spec.replicas", problem)]


def deployment_spec(spec: Any) -> Causes:
    """``ValidateDeploymentSpec``, in its order."""
    if not isinstance(spec, dict):
        return [fe.required("spec")]
    causes = _replicas(spec.get("replicas", 1))
    selector_causes, selector = _selector(spec.get("selector"), "spec.selector", "deployment")
    causes += selector_causes
    causes += template_for_replicaset(spec.get("template"), selector, "spec.template")
    causes += _strategy(spec.get("strategy"))
    min_ready = spec.get("minReadySeconds", 0)
    causes += fe.nonnegative("spec.minReadySeconds", min_ready)
    causes += fe.nonnegative("spec.revisionHistoryLimit", spec.get("revisionHistoryLimit"))
    deadline = spec.get("progressDeadlineSeconds")
    if isinstance(deadline, int) and not isinstance(deadline, bool):
        causes += fe.nonnegative("spec.progressDeadlineSeconds", deadline)
        if isinstance(min_ready, int) and deadline <= min_ready:
            causes.append(
                fe.invalid(
                    "spec.progressDeadlineSeconds", deadline, "must be greater than minReadySeconds"
                )
            )
    return causes


def replicaset_spec(spec: Any) -> Causes:
    """``ValidateReplicaSetSpec``."""
    if not isinstance(spec, dict):
        return [fe.required("spec")]
    causes = _replicas(spec.get("replicas", 1))
    causes += fe.nonnegative("spec.minReadySeconds", spec.get("minReadySeconds", 0))
    selector_causes, selector = _selector(spec.get("selector"), "spec.selector", "deployment")
    causes += selector_causes
    causes += template_for_replicaset(spec.get("template"), selector, "spec.template")
    return causes


def selector_immutable(obj: Obj, old: Obj | None) -> Causes:
    """apps/v1 selectors cannot change (``ValidateDeploymentUpdate`` via the strategy)."""
    if old is None:
        return []
    before = (old.get("spec") or {}).get("selector")
    after = (obj.get("spec") or {}).get("selector")
    if before == after:
        return []
    return [fe.invalid("spec.selector", after, "field is immutable")]
