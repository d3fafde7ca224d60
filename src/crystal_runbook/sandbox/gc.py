"""The garbage collector: deletes dependents whose owners are gone, finishes foreground deletion.

Deleting a Deployment with the default (Background) propagation removes it at once; its
ReplicaSets, whose ownerReferences now point at nothing, are deleted here, and their pods on
the next pass, as Kubernetes' garbage collector does (``attemptToDeleteItem``). Deletions go
through ``deletion.Deleter``, so a dependent with finalizers only gets a
``deletionTimestamp`` and a pod terminates gracefully. With Foreground propagation the owner
stays (``deletionTimestamp`` set, ``foregroundDeletion`` finalizer) until every dependent is
gone, the dependents themselves being deleted in the foreground (``processDeletingDependentsItem``);
Orphan propagation is handled before the owner is removed.
"""

from __future__ import annotations

from crystal_runbook.sandbox import deletion, resources, store

BACKGROUND = deletion.DeleteOptions()
FOREGROUND = deletion.DeleteOptions(propagation="Foreground")


class GarbageCollector:
    """One pass over every object; cheap at sandbox sizes (hundreds of objects)."""

    def __init__(self, st: store.Store) -> None:
        self._store = st
        self._deleter = deletion.Deleter(st)

    def sync(self) -> bool:
        """Collect what can be collected now; True if anything was deleted or changed."""
        changed = False
        with self._store.lock:
            live = set(self._store.by_uid)
            for res, stored in self._store.all_objects():
                meta = stored.obj["metadata"]
                if self._store.get(res, stored.namespace, stored.name) is not stored:
                    continue  # changed during this pass; the next pass sees it
                refs = meta.get("ownerReferences") or []
                terminating = bool(meta.get("deletionTimestamp"))
                if refs and not terminating and not any(ref.get("uid") in live for ref in refs):
                    self._deleter.delete(res, stored.namespace, stored.name, BACKGROUND)
                    changed = True
                    continue
                finalizers = meta.get("finalizers") or []
                if terminating and deletion.FOREGROUND in finalizers:
                    changed |= self._foreground(res, stored)
        return changed

    def _foreground(self, res: resources.Resource, owner: store.Stored) -> bool:
        dependents = self._store.dependents(owner.uid)
        if dependents:
            deleted = False
            for dep_res, dep in dependents:
                if not dep.obj["metadata"].get("deletionTimestamp"):
                    self._deleter.delete(dep_res, dep.namespace, dep.name, FOREGROUND)
                    deleted = True
            return deleted  # terminating dependents: wait until they are gone
        new = owner.copy()
        finalizers = [f for f in new["metadata"]["finalizers"] if f != deletion.FOREGROUND]
        if finalizers:
            new["metadata"]["finalizers"] = finalizers
            self._store.replace(res, new)
        else:
            self._store.delete(res, owner.namespace, owner.name)
        return True
