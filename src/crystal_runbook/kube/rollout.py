"""What `kubectl rollout` decides, as pure functions over API objects (plain dicts).

Kept apart from the client so the semantics can be tested without a server:

- ``revision_of`` / ``owned_replicasets`` / ``pick_target``: the ReplicaSets a Deployment
  controls (by selector and controller reference), and the one to roll back to: revision 0
  means the previous one, the second-highest `deployment.kubernetes.io/revision`;
- ``rollback_template`` / ``templates_equal``: the target's pod template without
  `pod-template-hash`, with env overrides applied to its containers, compared semantically;
- ``rollback_annotations``: annotations as kubectl merges them on undo, plus ours;
- ``rollout_progress``: kubectl's rollout-status reading of a Deployment's status.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from crystal_runbook import errors

REVISION = "deployment.kubernetes.io/revision"
HASH_LABEL = "pod-template-hash"
# kubectl keeps these annotations of the Deployment rather than copying the ReplicaSet's
SKIPPED_ANNOTATIONS = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
)
OURS = "crystal-runbook.io/"
ROLLED_BACK_FROM = OURS + "rolled-back-from-revision"
ROLLED_BACK_TO = OURS + "rolled-back-to-revision"
ROLLBACK_RUN = OURS + "rollback-run"
ROLLBACK_AT = OURS + "rollback-at"
ROLLED_BACK_TEMPLATE = OURS + "rolled-back-to-template"


def revision_of(obj: Mapping[str, Any]) -> int:
    """The revision annotation of a ReplicaSet or Deployment (0 when absent or malformed)."""
    value = (obj.get("metadata", {}).get("annotations") or {}).get(REVISION, "")
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def owned_replicasets(
    deployment: Mapping[str, Any], replicasets: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """ReplicaSets whose controller reference is ``deployment`` (by uid)."""
    uid = deployment.get("metadata", {}).get("uid")
    owned = []
    for rs in replicasets:
        for ref in rs.get("metadata", {}).get("ownerReferences") or []:
            if ref.get("controller") and ref.get("uid") == uid:
                owned.append(dict(rs))
                break
    return owned


def pick_target(name: str, replicasets: list[dict[str, Any]], to_revision: int) -> dict[str, Any]:
    """The ReplicaSet to roll back to (kubectl's rule).

    Raises:
        errors.PermanentActionError: no history, or the revision is not in it.
    """
    if to_revision < 0:
        raise errors.PermanentActionError(f"revision {to_revision} is negative")
    if to_revision > 0:
        for rs in replicasets:
            if revision_of(rs) == to_revision:
                return rs
        known = sorted(revision_of(rs) for rs in replicasets)
        raise errors.PermanentActionError(
            f"deployment {name!r}: revision {to_revision} not found in its history",
            hint=f"revisions kept: {', '.join(map(str, known)) or 'none'} "
            "(`kubectl rollout history` lists them)",
        )
    latest, previous = None, None
    for rs in replicasets:
        revision = revision_of(rs)
        if latest is None or revision > revision_of(latest):
            latest, previous = rs, latest
        elif previous is None or revision > revision_of(previous):
            previous = rs
    if previous is None or revision_of(previous) == 0:
        raise errors.PermanentActionError(
            f"deployment {name!r}: no rollout history found (only one revision)",
            hint="there is no previous release to go back to; deploy a fixed image instead",
        )
    return previous


def apply_env(
    template: dict[str, Any], env: Mapping[str, str], containers: Iterable[str] | None
) -> dict[str, Any]:
    """``template`` with ``env`` set on the named containers (all when None)."""
    result = copy.deepcopy(template)
    wanted = None if containers is None else set(containers)
    for container in result.get("spec", {}).get("containers") or []:
        if wanted is not None and container.get("name") not in wanted:
            continue
        entries = list(container.get("env") or [])
        for key, value in env.items():
            for entry in entries:
                if entry.get("name") == key:
                    entry.pop("valueFrom", None)
                    entry["value"] = str(value)
                    break
            else:
                entries.append({"name": key, "value": str(value)})
        container["env"] = entries
    return result


def rollback_template(
    rs: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    containers: Iterable[str] | None = None,
) -> dict[str, Any]:
    """The target ReplicaSet's template without `pod-template-hash`, with env overrides."""
    template = copy.deepcopy(dict(rs.get("spec", {}).get("template") or {}))
    labels = template.get("metadata", {}).get("labels")
    if labels:
        labels.pop(HASH_LABEL, None)
    if env:
        template = apply_env(template, env, containers)
    return template


def _prune(value: Any) -> Any:
    """Drop empty values so that `{}`/`[]`/None compare like absent fields (semantic equality)."""
    if isinstance(value, Mapping):
        pruned = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in (None, {}, [], "")}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def _clean(template: Mapping[str, Any]) -> Any:
    result = copy.deepcopy(dict(template))
    labels = result.get("metadata", {}).get("labels")
    if labels:
        labels.pop(HASH_LABEL, None)
    return _prune(result)


def templates_equal(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Semantic equality of two pod templates (`pod-template-hash` ignored)."""
    return bool(_clean(a) == _clean(b))


def template_digest(template: Mapping[str, Any]) -> str:
    """A short digest of a pod template, equal for semantically equal templates."""
    text = json.dumps(_clean(template), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def rollback_annotations(
    deployment: Mapping[str, Any], rs: Mapping[str, Any], ours: Mapping[str, str]
) -> dict[str, str]:
    """Annotations after the undo: kubectl's merge, then our record of the rollback."""
    current = deployment.get("metadata", {}).get("annotations") or {}
    merged = {k: v for k, v in current.items() if k in SKIPPED_ANNOTATIONS}
    for key, value in (rs.get("metadata", {}).get("annotations") or {}).items():
        if key not in SKIPPED_ANNOTATIONS and not key.startswith(OURS):
            merged[key] = value
    merged.update(ours)
    return merged


def images(template: Mapping[str, Any]) -> dict[str, str]:
    """Container name -> image of a pod template."""
    return {
        c.get("name", "?"): c.get("image", "?")
        for c in template.get("spec", {}).get("containers") or []
    }


def env_of(template: Mapping[str, Any], container: str | None = None) -> dict[str, str]:
    """Env of the first (or the named) container; values from secrets show as `<valueFrom>`."""
    for c in template.get("spec", {}).get("containers") or []:
        if container is None or c.get("name") == container:
            found: dict[str, str] = {}
            for entry in c.get("env") or []:
                if "value" in entry:
                    found[entry["name"]] = str(entry["value"])
                elif entry.get("valueFrom"):
                    found[entry["name"]] = "<valueFrom>"
            return found
    return {}


def current_replicaset(replicasets: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The ReplicaSet with the highest revision (the one the Deployment is rolling to)."""
    return max(replicasets, key=revision_of, default=None)


def selector_string(deployment: Mapping[str, Any]) -> str:
    """The Deployment's `matchLabels` as a label selector (`app=maia,tier=web`)."""
    labels = (deployment.get("spec", {}).get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


@dataclass(frozen=True)
class Progress:
    """Where a rollout stands, in kubectl's words."""

    done: bool
    message: str
    failed: bool = False


def rollout_progress(deployment: Mapping[str, Any]) -> Progress:
    """kubectl's rollout-status reading, requiring updated = ready = available = replicas."""
    name = deployment.get("metadata", {}).get("name", "?")
    generation = deployment.get("metadata", {}).get("generation") or 0
    status = deployment.get("status") or {}
    spec = deployment.get("spec") or {}
    if (status.get("observedGeneration") or 0) < generation:
        return Progress(False, f"waiting for deployment {name!r} spec update to be observed")
    for condition in status.get("conditions") or []:
        if (
            condition.get("type") == "Progressing"
            and condition.get("reason") == "ProgressDeadlineExceeded"
        ):
            return Progress(
                False, f"deployment {name!r} exceeded its progress deadline", failed=True
            )
    wanted = spec.get("replicas", 1)
    updated = status.get("updatedReplicas") or 0
    replicas = status.get("replicas") or 0
    ready = status.get("readyReplicas") or 0
    available = status.get("availableReplicas") or 0
    if updated < wanted:
        return Progress(False, f"{updated} of {wanted} new replicas have been updated")
    if replicas > updated:
        return Progress(False, f"{replicas - updated} old replicas are pending termination")
    if available < updated or ready < updated:
        return Progress(False, f"{available} of {updated} updated replicas are available")
    return Progress(
        True, f"deployment {name!r} successfully rolled out ({available}/{wanted} available)"
    )
