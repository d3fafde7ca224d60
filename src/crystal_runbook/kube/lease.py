"""Locks as coordination.k8s.io/v1 Leases, so two machines cannot roll back one service at once.

The SQLite lock protects one machine. Two engineers on two laptops (or a laptop and the Slack
app) share only the cluster, so a run on a target with a `kubernetes:` block also holds the
Lease `crystal-runbook-<key>` in the target's namespace (key `maia/production` gives
`crystal-runbook-maia-production`). The holder is written in `holderIdentity` and in
annotations (run id, actor, host, pid, start time) so the refusal can name them; the lease
is renewed by the run's heartbeat and expires `leaseDurationSeconds` after the last renewal.

A crash must never block the emergency rollback, so a Lease that has not expired is taken
over at once (with a warning) when its holder is dead for sure: a run on this host whose
process is gone, or a run the journal shows as ended. A holder on another host is taken over
only when its Lease expired, or when asked (`rollback --break-lock`, ``acquire(force=True)``,
confirmed and journalled by the executor).

A free lock costs one request: the Lease is created (POST) without reading first; only when
it exists (409) is it read to name or take over its holder.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from crystal_runbook import errors
from crystal_runbook.engine import journal, locks
from crystal_runbook.kube.client import ConflictError, Kube, KubeTarget, NotFound, connect
from crystal_runbook.kube.resources import LEASES

PREFIX = "crystal-runbook-"
ANNOTATION = "crystal-runbook.io/"


def lease_name(key: str) -> str:
    """A valid Lease name for a lock key: `maia/prod` -> `crystal-runbook-maia-prod`."""
    slug = re.sub(r"[^a-z0-9-]+", "-", key.lower()).strip("-")
    return (PREFIX + slug)[:63].rstrip("-")


def _micro(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class LeaseLocks:
    """Lock backend on Kubernetes Leases in one target's namespace."""

    can_break = True
    """``acquire(force=True)`` takes over a live holder (`--break-lock`)."""

    def __init__(self, target: KubeTarget, *, ended: Callable[[str], bool] | None = None) -> None:
        self.target = target
        self.host = socket.gethostname()
        self.ended = ended or (lambda _run_id: False)
        """Whether the journal shows a run as ended (its Lease was left behind)."""

    @property
    def kube(self) -> Kube:
        return connect(self.target)

    def _path(self, name: str | None = None) -> str:
        return self.target.path(LEASES, "leases", name)

    def _read(self, kube: Kube, name: str, deadline: float) -> dict[str, Any] | None:
        try:
            return kube.json(
                "GET",
                self._path(name),
                what=f"read lease {name}",
                where=self.target.where,
                deadline=deadline,
            )
        except NotFound:
            return None

    def dead(self, holder: locks.Holder) -> str | None:
        """Why ``holder`` is certainly gone (None when it may be alive)."""
        if holder.host == self.host and holder.pid > 0 and not journal.process_alive(holder.pid):
            return f"its process {holder.pid} on {holder.host} is gone"
        if self.ended(holder.run_id):
            return "the journal shows its run ended"
        return None

    def acquire(
        self,
        key: str,
        *,
        run_id: str,
        actor: str,
        ttl: float = locks.DEFAULT_TTL,
        force: bool = False,
    ) -> LeaseLease:
        name = lease_name(key)
        kube = self.kube
        now = datetime.now(UTC)
        deadline = time.monotonic() + 30
        body: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": name,
                "namespace": self.target.namespace,
                "annotations": {
                    ANNOTATION + "key": key,
                    ANNOTATION + "run-id": run_id,
                    ANNOTATION + "actor": actor,
                    ANNOTATION + "host": self.host,
                    ANNOTATION + "pid": str(os.getpid()),
                    ANNOTATION + "acquired-at": _micro(now),
                },
            },
            "spec": {
                "holderIdentity": f"{run_id} {actor}@{self.host}",
                "leaseDurationSeconds": max(1, int(ttl)),
                "acquireTime": _micro(now),
                "renewTime": _micro(now),
            },
        }
        takeover: locks.Holder | None = None
        try:  # the usual case, a free lock: the Lease is created in one request
            self._create(kube, name, body, deadline)
            return LeaseLease(self, key, name, run_id, None)
        except ConflictError:
            pass  # it exists: whose is it, and may it be taken over?
        existing = self._read(kube, name, deadline)
        try:
            if existing is None:  # released since: create it now
                self._create(kube, name, body, deadline)
            else:
                holder = self._holder(existing, key)
                mine = holder.run_id == run_id and holder.host == self.host
                free = force or self._expired(existing) or self.dead(holder) is not None
                if not mine and not free:
                    raise errors.LockHeld(
                        key,
                        run_id=holder.run_id,
                        actor=holder.actor,
                        host=holder.host,
                        started_at=holder.acquired_at,
                    )
                takeover = None if mine else holder
                body["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
                transitions = int((existing.get("spec") or {}).get("leaseTransitions") or 0)
                body["spec"]["leaseTransitions"] = transitions + (0 if mine else 1)
                kube.json(
                    "PUT",
                    self._path(name),
                    body=body,
                    what=f"take lease {name}",
                    where=self.target.where,
                    deadline=deadline,
                )
        except ConflictError:
            # someone created or took it between our read and our write: they hold it now
            current = self._read(kube, name, deadline) or {}
            holder = self._holder(current, key)
            raise errors.LockHeld(
                key,
                run_id=holder.run_id,
                actor=holder.actor,
                host=holder.host,
                started_at=holder.acquired_at,
            ) from None
        return LeaseLease(self, key, name, run_id, takeover)

    def _create(self, kube: Kube, name: str, body: dict[str, Any], deadline: float) -> None:
        """POST the Lease; ``ConflictError`` (409) when it already exists."""
        kube.json(
            "POST",
            self._path(),
            body=body,
            what=f"create lease {name}",
            where=self.target.where,
            deadline=deadline,
        )

    @staticmethod
    def _holder(lease: dict[str, Any], key: str) -> locks.Holder:
        annotations = lease.get("metadata", {}).get("annotations") or {}
        spec = lease.get("spec") or {}
        try:
            pid = int(annotations.get(ANNOTATION + "pid") or 0)
        except ValueError:
            pid = 0
        return locks.Holder(
            key=key,
            run_id=annotations.get(ANNOTATION + "run-id", str(spec.get("holderIdentity") or "?")),
            actor=annotations.get(ANNOTATION + "actor", "?"),
            host=annotations.get(ANNOTATION + "host", "?"),
            pid=pid,
            acquired_at=annotations.get(ANNOTATION + "acquired-at", str(spec.get("acquireTime"))),
            heartbeat_at=str(spec.get("renewTime") or ""),
        )

    @staticmethod
    def _expired(lease: dict[str, Any]) -> bool:
        spec = lease.get("spec") or {}
        if not spec.get("holderIdentity"):
            return True
        renewed = _parse(spec.get("renewTime") or spec.get("acquireTime"))
        if renewed is None:
            return True
        duration = float(spec.get("leaseDurationSeconds") or 0)
        return (datetime.now(UTC) - renewed).total_seconds() > duration

    def renew(self, name: str) -> None:
        self.kube.json(
            "PATCH",
            self._path(name),
            what=f"renew lease {name}",
            body={"spec": {"renewTime": _micro(datetime.now(UTC))}},
            content_type="application/merge-patch+json",
            where=self.target.where,
            deadline=time.monotonic() + 10,
        )

    def release(self, name: str, run_id: str) -> None:
        kube = self.kube
        lease = self._read(kube, name, time.monotonic() + 10)
        annotations = (lease or {}).get("metadata", {}).get("annotations") or {}
        if lease is None or annotations.get(ANNOTATION + "run-id") != run_id:
            return  # gone, or someone took it over: not ours to delete
        kube.json(
            "DELETE",
            self._path(name),
            what=f"delete lease {name}",
            where=self.target.where,
            deadline=time.monotonic() + 10,
            body={"preconditions": {"resourceVersion": lease["metadata"]["resourceVersion"]}},
        )


class LeaseLease:
    """A held Lease."""

    def __init__(
        self, backend: LeaseLocks, key: str, name: str, run_id: str, takeover: locks.Holder | None
    ) -> None:
        self.backend = backend
        self.key = key
        self.name = name
        self.run_id = run_id
        self.takeover = takeover

    def renew(self) -> None:
        self.backend.renew(self.name)

    def release(self) -> None:
        self.backend.release(self.name, self.run_id)
