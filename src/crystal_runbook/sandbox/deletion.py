"""Deleting objects the way the API server and the garbage collector do.

Used by the REST layer (a client's DELETE), the ReplicaSet controller (surplus pods), the
garbage collector (dependents of a deleted owner) and the Deployment controller (pruned
ReplicaSets), so every deletion has the same semantics:

- preconditions (uid, resourceVersion) answer 409, ``dryRun`` changes nothing;
- an object with finalizers is only marked (``deletionTimestamp``) and disappears when the
  last finalizer is removed (``BeforeDelete`` / ``deletionFinalizersForGarbageCollection``);
- ``Orphan`` removes the ownerReferences of the dependents first; ``Foreground`` adds the
  ``foregroundDeletion`` finalizer, and the garbage collector removes it once the
  dependents are gone;
- a pod is deleted gracefully (``pkg/registry/core/pod/strategy.go``
  ``CheckGracefulDelete``): it gets ``deletionTimestamp`` = now + grace period and
  ``deletionGracePeriodSeconds`` and stays (Terminating) until the kubelet has stopped its
  containers and deletes it for good; ``gracePeriodSeconds: 0`` removes it at once.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from crystal_runbook.sandbox import apierrors, resources, store

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
DEFAULT_GRACE = 30  # seconds: a pod spec's terminationGracePeriodSeconds default


def parse_json_body(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise apierrors.bad_request(f"the DeleteOptions is not valid JSON: {exc}") from exc


@dataclass(frozen=True)
class DeleteOptions:
    """What a DELETE asks for, from its body (kubectl sends one) or query string."""

    propagation: str = "Background"
    dry_run: bool = False
    uid: str | None = None
    resource_version: str | None = None
    grace_period: int | None = None

    @classmethod
    def parse(cls, body: bytes, query: dict[str, str]) -> DeleteOptions:
        data = parse_json_body(body) if body.strip() else {}
        if not isinstance(data, dict):
            raise apierrors.bad_request("DeleteOptions must be a JSON object")
        propagation = data.get("propagationPolicy") or query.get("propagationPolicy")
        if data.get("orphanDependents") is True:
            propagation = "Orphan"
        propagation = propagation or "Background"
        if propagation not in ("Background", "Foreground", "Orphan"):
            raise apierrors.bad_request(f"unsupported propagationPolicy {propagation!r}")
        dry_run = data.get("dryRun") or ([query["dryRun"]] if "dryRun" in query else [])
        pre = data.get("preconditions") or {}
        grace = data.get("gracePeriodSeconds", query.get("gracePeriodSeconds"))
        try:
            grace_period = None if grace is None else max(0, int(grace))
        except (TypeError, ValueError) as exc:
            raise apierrors.bad_request(f"invalid gracePeriodSeconds {grace!r}") from exc
        return cls(
            propagation=propagation,
            dry_run="All" in dry_run,
            uid=pre.get("uid"),
            resource_version=pre.get("resourceVersion"),
            grace_period=grace_period,
        )


class Deleter:
    """Deletes objects of one store with the API server's semantics."""

    def __init__(self, st: store.Store) -> None:
        self.store = st

    def delete(
        self, res: resources.Resource, ns: str, name: str, options: DeleteOptions
    ) -> tuple[store.Stored, bool]:
        """Delete an object; returns it and whether it is gone (False while it terminates)."""
        with self.store.lock:
            current = self.store.get(res, ns, name)
            if current is None:
                raise apierrors.not_found(res, name)
            meta = current.obj["metadata"]
            self._preconditions(res, name, meta, options)
            if options.dry_run:
                return current, True
            finalizers = list(meta.get("finalizers") or [])
            grace = self._grace(res, current.obj, options)
            if meta.get("deletionTimestamp"):
                # deleting again: only a shorter grace period changes anything (a force delete)
                if res is resources.PODS and grace == 0 and not finalizers:
                    return self.store.delete(res, ns, name), True
                return current, False
            if options.propagation == "Orphan":
                self.orphan_dependents(meta["uid"])
            elif options.propagation == "Foreground" and self.store.dependents(meta["uid"]):
                finalizers.append(FOREGROUND)
            if not finalizers and not grace:
                return self.store.delete(res, ns, name), True
            new = current.copy()
            if finalizers:
                new["metadata"]["finalizers"] = finalizers
            new["metadata"]["deletionTimestamp"] = store.rfc3339(time.time() + grace)
            new["metadata"]["deletionGracePeriodSeconds"] = grace
            return self.store.replace(res, new), False

    @staticmethod
    def _grace(res: resources.Resource, obj: dict[str, Any], options: DeleteOptions) -> int:
        """The grace period of a pod (``CheckGracefulDelete``); 0 for everything else."""
        if res is not resources.PODS:
            return 0
        if options.grace_period is not None:
            return options.grace_period
        spec_grace = (obj.get("spec") or {}).get("terminationGracePeriodSeconds")
        return int(spec_grace) if isinstance(spec_grace, int) else DEFAULT_GRACE

    @staticmethod
    def _preconditions(
        res: resources.Resource, name: str, meta: dict[str, Any], options: DeleteOptions
    ) -> None:
        if options.uid and options.uid != meta["uid"]:
            raise apierrors.conflict(
                res,
                name,
                f"Precondition failed: UID in precondition: {options.uid}, "
                f"UID in object meta: {meta['uid']}",
            )
        if options.resource_version and options.resource_version != meta["resourceVersion"]:
            raise apierrors.conflict(
                res,
                name,
                "Precondition failed: ResourceVersion in precondition: "
                f"{options.resource_version}, ResourceVersion in object meta: "
                f"{meta['resourceVersion']}",
            )

    def orphan_dependents(self, uid: str) -> None:
        """Remove ownerReferences to ``uid`` from every object (``propagationPolicy=Orphan``)."""
        with self.store.lock:
            for dep_res, dep in self.store.dependents(uid):
                new = dep.copy()
                refs = [r for r in new["metadata"]["ownerReferences"] if r.get("uid") != uid]
                if refs:
                    new["metadata"]["ownerReferences"] = refs
                else:
                    del new["metadata"]["ownerReferences"]
                self.store.replace(dep_res, new)

    def finish(self, res: resources.Resource, ns: str, name: str) -> bool:
        """The kubelet's final delete of a pod whose containers stopped (grace 0).

        Returns True if the pod is gone; a pod with finalizers stays until they are removed.
        """
        with self.store.lock:
            current = self.store.get(res, ns, name)
            if current is None:
                return True
            if current.obj["metadata"].get("finalizers"):
                if current.obj["metadata"].get("deletionGracePeriodSeconds") != 0:
                    new = current.copy()
                    new["metadata"]["deletionGracePeriodSeconds"] = 0
                    self.store.replace(res, new)
                return False
            self.store.delete(res, ns, name)
            return True
