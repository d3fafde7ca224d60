"""Leader election on a coordination.k8s.io/v1 Lease, with client-go's rules.

Why not our own consensus: the API server is the consensus. Every write of the Lease names
the ``resourceVersion`` it read, so of two replicas writing at once exactly one succeeds and
the other gets 409 Conflict; that compare-and-swap is all an election needs. This module is
client-go's ``leaderelection`` algorithm (``tryAcquireOrRenew``) over our ``kube.client``:

- *acquire*: read the Lease (create it when absent). When another identity holds it and the
  record has changed within ``lease_duration`` as observed **on this replica's monotonic
  clock**, it is held; otherwise write ourselves in as holder (a transition: acquireTime now,
  ``leaseTransitions`` + 1) with the resourceVersion read. Expiry is judged from when this
  replica last saw the record change, not from the holder's ``renewTime``, so replicas whose
  clocks disagree never take a live Lease (client-go does the same).
- *renew*: the holder writes a new ``renewTime`` over the version it last wrote (one PUT; on
  409 it reads again and decides as in acquire).
- *release*: the holder writes an empty holder with a one-second duration (client-go's
  ``ReleaseOnCancel``), so a follower takes over on its next look instead of waiting for the
  Lease to expire.

Why not the official client's ``kubernetes.leaderelection``: it cannot be stopped (``run``
loops forever in ``time.sleep``), never releases the Lease on shutdown, talks through the
process-wide default client rather than a target's kubeconfig and context, and imports the
generated API classes (more than a second here). The Lease it writes is the same object.

The loop that calls these (when to look, when to step down) is ``service.leader``.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from crystal_runbook import errors
from crystal_runbook.kube.client import ConflictError, Kube, KubeTarget, NotFound, connect
from crystal_runbook.kube.resources import LEASES

REQUEST_SECONDS = 5.0
"""Bound of one election request (with its retries): shorter than any sensible renew period."""


def micro_time(at: datetime) -> str:
    """A Lease time (MicroTime: RFC 3339 with microseconds, UTC)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Record:
    """What a Lease says about its holder."""

    holder: str
    """``holderIdentity``; empty when nobody holds it (released)."""
    lease_duration: float
    acquire_time: str
    renew_time: str
    transitions: int
    resource_version: str

    @classmethod
    def of(cls, lease: dict[str, Any]) -> Record:
        spec = lease.get("spec") or {}
        return cls(
            holder=str(spec.get("holderIdentity") or ""),
            lease_duration=float(spec.get("leaseDurationSeconds") or 0),
            acquire_time=str(spec.get("acquireTime") or ""),
            renew_time=str(spec.get("renewTime") or ""),
            transitions=int(spec.get("leaseTransitions") or 0),
            resource_version=str((lease.get("metadata") or {}).get("resourceVersion") or ""),
        )


class LeaseElection:
    """One candidate (``identity``) for one Lease (``name`` in ``target``'s namespace)."""

    def __init__(
        self,
        target: KubeTarget,
        name: str,
        *,
        identity: str,
        lease_duration: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target = target
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.clock = clock
        self.observed: Record | None = None
        """The record as last read or written."""
        self.observed_at = 0.0
        """When (``clock``) the observed record last changed."""
        self._lease: dict[str, Any] | None = None
        """The Lease object as last read or written (the base of the next write)."""

    @property
    def where(self) -> str:
        return f"lease {self.target.namespace}/{self.name}"

    @property
    def kube(self) -> Kube:
        return connect(self.target)

    @property
    def holder(self) -> str:
        """Who holds the Lease as last seen ("" nobody, or not looked yet)."""
        return self.observed.holder if self.observed is not None else ""

    @property
    def leading(self) -> bool:
        return self.holder == self.identity

    def expires_in(self) -> float:
        """Seconds until the observed holder's Lease expires here (0: free or expired)."""
        if self.observed is None or not self.observed.holder:
            return 0.0
        return max(0.0, self.observed_at + self.observed.lease_duration - self.clock())

    def _path(self, name: str | None = None) -> str:
        return self.target.path(LEASES, "leases", name)

    def _request(self, method: str, what: str, body: Any = None) -> dict[str, Any]:
        return self.kube.json(
            method,
            self._path(None if method == "POST" else self.name),
            body=body,
            what=f"{what} {self.where}",
            where=self.target.where,
            deadline=time.monotonic() + REQUEST_SECONDS,
        )

    def _observe(self, lease: dict[str, Any]) -> Record:
        record = Record.of(lease)
        if self.observed is None or record != self.observed:
            self.observed = record
            self.observed_at = self.clock()
        self._lease = lease
        return record

    def _body(self, *, acquire_time: str, transitions: int) -> dict[str, Any]:
        now = micro_time(datetime.now(UTC))
        base = dict(self._lease or {})
        metadata = dict(base.get("metadata") or {})
        metadata.update(name=self.name, namespace=self.target.namespace)
        annotations = dict(metadata.get("annotations") or {})
        annotations["crystal-runbook.io/host"] = socket.gethostname()
        metadata["annotations"] = annotations
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": max(1, round(self.lease_duration)),
                "acquireTime": acquire_time or now,
                "renewTime": now,
                "leaseTransitions": transitions,
            },
        }

    def try_acquire_or_renew(self) -> bool:
        """One look: True when this candidate holds the Lease afterwards.

        Raises:
            errors.ActionError: the API server did not answer (unreachable, forbidden).
        """
        try:
            lease = self._request("GET", "read")
        except NotFound:
            return self._create()
        record = self._observe(lease)
        mine = record.holder == self.identity
        if record.holder and not mine and self.expires_in() > 0:
            return False  # held, and renewed within its duration as seen from here
        body = self._body(
            acquire_time=record.acquire_time if mine else "",
            transitions=record.transitions + (0 if mine else 1),
        )
        return self._write(body)

    def renew(self) -> bool:
        """The holder's renewal: one write over the version it last wrote (a read only when
        that version is stale). True while this candidate still holds the Lease."""
        if not self.leading or self._lease is None or self.observed is None:
            return self.try_acquire_or_renew()
        body = self._body(
            acquire_time=self.observed.acquire_time, transitions=self.observed.transitions
        )
        try:
            return self._write(body, quiet=True)
        except ConflictError:
            return self.try_acquire_or_renew()

    def release(self) -> bool:
        """Give the Lease up at once (empty holder, one-second duration), if we hold it.

        Returns whether a release was written. Never raises: a replica that stops must not
        fail on it (the Lease then expires on its own).
        """
        if not self.leading or self.observed is None:
            return False
        body = self._body(acquire_time="", transitions=self.observed.transitions)
        body["spec"].update(holderIdentity="", leaseDurationSeconds=1)
        try:
            written = self._request("PUT", "release", body)
        except errors.CrystalError:  # a conflict too: someone took it over meanwhile
            return False
        self._observe(written)
        return True

    def _create(self) -> bool:
        self._lease = None
        body = self._body(acquire_time="", transitions=0)
        try:
            created = self._request("POST", "create", body)
        except ConflictError:
            return False  # another candidate created it first
        self._observe(created)
        return True

    def _write(self, body: dict[str, Any], *, quiet: bool = False) -> bool:
        """PUT ``body`` over the resourceVersion it carries; True if we hold it afterwards.

        A conflict means someone else wrote first: False (or raised with ``quiet`` so that
        ``renew`` can read again)."""
        try:
            written = self._request("PUT", "update", body)
        except ConflictError:
            if quiet:
                raise
            return False
        return self._observe(written).holder == self.identity
