"""The Deployment controller's arithmetic, as pure functions over plain dicts.

Everything here follows ``pkg/controller/deployment/util/deployment_util.go`` and
``pkg/controller/deployment/sync.go`` and changes nothing: the controller (``deployments``
and ``rollout``) decides, these functions only count. Keeping them pure lets unit tests
check the exact ReplicaSet sizes upstream computes for a scaling event during a rollout.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from crystal_runbook.sandbox import store

Obj = dict[str, Any]

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"


def revision(obj: Obj) -> int:
    """The ``deployment.kubernetes.io/revision`` of an object (0 if missing or bad)."""
    try:
        return int((obj["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def _int_annotation(rs: Obj, key: str) -> int | None:
    """``getIntFromAnnotation``: None when missing or not a number."""
    value = (rs["metadata"].get("annotations") or {}).get(key)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def desired_annotation(rs: Obj) -> int | None:
    """``GetDesiredReplicasAnnotation``."""
    return _int_annotation(rs, DESIRED_REPLICAS)


def max_replicas_annotation(rs: Obj) -> int | None:
    """``getMaxReplicasAnnotation``."""
    return _int_annotation(rs, MAX_REPLICAS)


def scaled_value(value: Any, total: int, *, round_up: bool) -> int:
    """``intstrutil.GetScaledValueFromIntOrPercent``: ``1`` or ``"25%"`` of ``total``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.endswith("%"):
        try:
            pct = float(value[:-1])
        except ValueError:
            return 0
        exact = pct * total / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return 0


def replicas(obj: Obj) -> int:
    """``spec.replicas`` (Deployments and ReplicaSets default to 1)."""
    return int(obj["spec"].get("replicas", 1))


def is_rolling(deployment: Obj) -> bool:
    strategy = deployment["spec"].get("strategy") or {}
    return bool(strategy.get("type", "RollingUpdate") == "RollingUpdate")


def fenceposts(deployment: Obj) -> tuple[int, int]:
    """``ResolveFenceposts``: (maxSurge, maxUnavailable) for the desired count, never both 0."""
    if not is_rolling(deployment):
        return 0, 0
    rolling = (deployment["spec"].get("strategy") or {}).get("rollingUpdate") or {}
    want = replicas(deployment)
    surge = scaled_value(rolling.get("maxSurge", "25%"), want, round_up=True)
    unavailable = scaled_value(rolling.get("maxUnavailable", "25%"), want, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_surge(deployment: Obj) -> int:
    """``MaxSurge``."""
    return fenceposts(deployment)[0]


def max_unavailable(deployment: Obj) -> int:
    """``MaxUnavailable``: at most the desired count, 0 for Recreate or 0 replicas."""
    want = replicas(deployment)
    if not is_rolling(deployment) or want == 0:
        return 0
    return min(fenceposts(deployment)[1], want)


def spec_count(rss: Sequence[Obj]) -> int:
    """``GetReplicaCountForReplicaSets``."""
    return sum(replicas(rs) for rs in rss)


def status_count(rss: Sequence[Obj], field: str = "replicas") -> int:
    """A sum of one status count over ReplicaSets (``GetActualReplicaCount...``)."""
    return sum(int((rs.get("status") or {}).get(field) or 0) for rs in rss)


def active(rss: Sequence[Obj | None]) -> list[Obj]:
    """``FilterActiveReplicaSets``: those with spec.replicas > 0."""
    return [rs for rs in rss if rs is not None and replicas(rs) > 0]


def _created(rs: Obj) -> tuple[float, str]:
    return (
        store.parse_time(rs["metadata"].get("creationTimestamp")) or 0.0,
        rs["metadata"]["name"],
    )


def by_creation(rss: Sequence[Obj]) -> list[Obj]:
    """``ReplicaSetsByCreationTimestamp``: oldest first, then by name."""
    return sorted(rss, key=_created)


def by_size_newer(rss: Sequence[Obj]) -> list[Obj]:
    """``ReplicaSetsBySizeNewer``: largest first; on a tie, the newer first."""
    newest_first = sorted(rss, key=_created, reverse=True)
    return sorted(newest_first, key=replicas, reverse=True)


def by_size_older(rss: Sequence[Obj]) -> list[Obj]:
    """``ReplicaSetsBySizeOlder``: largest first; on a tie, the older first."""
    return sorted(by_creation(rss), key=replicas, reverse=True)


def find_active_or_latest(new_rs: Obj | None, old_rs: Sequence[Obj]) -> Obj | None:
    """``FindActiveOrLatest``: the only active ReplicaSet, or the newest when none is."""
    if new_rs is None and not old_rs:
        return None
    newest_first = sorted(old_rs, key=_created, reverse=True)
    live = active([*newest_first, new_rs])
    if not live:
        return new_rs if new_rs is not None else newest_first[0]
    return live[0] if len(live) == 1 else None


def is_saturated(deployment: Obj, rs: Obj | None) -> bool:
    """``IsSaturated``: the new ReplicaSet has all the desired replicas, and all available."""
    if rs is None:
        return False
    want = replicas(deployment)
    available = int((rs.get("status") or {}).get("availableReplicas") or 0)
    return replicas(rs) == want and desired_annotation(rs) == want and available == want


def replica_set_fraction(rs: Obj, deployment: Obj) -> int:
    """``getReplicaSetFraction``: how many replicas ``rs`` gains (or loses) in a resize."""
    want = replicas(deployment)
    if want == 0:
        return -replicas(rs)
    max_now = want + max_surge(deployment)
    max_before = max_replicas_annotation(rs)
    if not max_before:
        # no annotation: fall back to the Deployment's current size
        max_before = int((deployment.get("status") or {}).get("replicas") or 0)
        if max_before == 0:
            return 0
    exact = replicas(rs) * max_now / max_before
    rounded = math.floor(exact + 0.5) if exact >= 0 else -math.floor(-exact + 0.5)
    return int(rounded) - replicas(rs)  # integer.RoundToInt32: half away from zero


def replica_set_proportion(rs: Obj, deployment: Obj, to_add: int, added: int) -> int:
    """``GetReplicaSetProportion``: the fraction, bounded by what is left to add/remove."""
    if replicas(rs) == 0 or to_add in (0, added):
        return 0
    fraction = replica_set_fraction(rs, deployment)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


def proportional_sizes(
    deployment: Obj, new_rs: Obj | None, old_rs: Sequence[Obj]
) -> tuple[list[tuple[Obj, int]], str]:
    """The sizes ``scale()`` gives the active ReplicaSets of a rolling Deployment.

    Follows the proportional branch of ``DeploymentController.scale`` (sync.go): what is to
    be added or removed is shared out by each ReplicaSet's fraction, largest first (newer
    first when scaling up, older first when scaling down), and the rounding leftover goes
    to the first. Returns (ReplicaSet, new size) in that order and "up"/"down"/"".
    """
    live = active([*old_rs, new_rs])
    want = replicas(deployment)
    allowed = want + max_surge(deployment) if want > 0 else 0
    to_add = allowed - spec_count(live)
    if to_add > 0:
        ordered, operation = by_size_newer(live), "up"
    elif to_add < 0:
        ordered, operation = by_size_older(live), "down"
    else:
        ordered, operation = live, ""
    sizes: list[int] = []
    added = 0
    for rs in ordered:
        if to_add != 0:
            proportion = replica_set_proportion(rs, deployment, to_add, added)
            sizes.append(replicas(rs) + proportion)
            added += proportion
        else:
            sizes.append(replicas(rs))
    if ordered and to_add != 0:
        sizes[0] = max(0, sizes[0] + to_add - added)
    return list(zip(ordered, sizes, strict=True)), operation


def new_rs_new_replicas(deployment: Obj, all_rs: Sequence[Obj], new_rs: Obj) -> int:
    """``NewRSNewReplicas``: how far the new ReplicaSet may grow now."""
    want = replicas(deployment)
    if not is_rolling(deployment):
        return want
    rolling = (deployment["spec"].get("strategy") or {}).get("rollingUpdate") or {}
    surge = scaled_value(rolling.get("maxSurge", "25%"), want, round_up=True)
    current = spec_count(all_rs)
    most = want + surge
    if current >= most:
        return replicas(new_rs)
    return replicas(new_rs) + min(most - current, want - replicas(new_rs))


def replicas_annotations_need_update(rs: Obj, desired: int, most: int) -> bool:
    """``ReplicasAnnotationsNeedUpdate``."""
    annotations = rs["metadata"].get("annotations") or {}
    return annotations.get(DESIRED_REPLICAS) != str(desired) or annotations.get(
        MAX_REPLICAS
    ) != str(most)


def deployment_complete(deployment: Obj, status: Obj) -> bool:
    """``DeploymentComplete``."""
    want = replicas(deployment)
    return bool(
        int(status.get("updatedReplicas") or 0) == want
        and int(status.get("replicas") or 0) == want
        and int(status.get("availableReplicas") or 0) == want
        and int(status.get("observedGeneration") or 0)
        >= int(deployment["metadata"].get("generation") or 1)
    )
