"""What a `serve` replica campaigns for: its duties and their Leases, from `serve.yaml`.

``plan`` reads `inventory/serve.yaml` (``serving.loader``, checked against `services.yaml`)
and returns one ``leader.Leadership`` per duty: the drill scheduler (``--scheduler``; its
Lease where `leader_election.kubernetes` says, or in the pod's own namespace) and one watcher
per listed service and environment (``--watch``; its Lease beside the watched Deployment).
Each duty works in a workspace of its own (its own journal connection, no terminal) whose
runs carry the replica and the duty (``recovery.origin``).
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crystal_runbook import errors
from crystal_runbook.service import leader, recovery, scheduler, watchers
from crystal_runbook.service.workspace import Workspace, display, inventory_variables

if TYPE_CHECKING:
    from crystal_runbook.kube.client import KubeTarget
    from crystal_runbook.serving.loader import LoadedServe
    from crystal_runbook.triggers.evaluator import Report

POD_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def replica_identity() -> str:
    """This process among the replicas: host (the pod's name), pid and a random suffix (a
    restarted container keeps its host name and often its pid)."""
    return f"{socket.gethostname()}_{os.getpid()}_{secrets.token_hex(3)}"


def config(ws: Workspace) -> LoadedServe:
    """`<inventory>/serve.yaml`, validated against `services.yaml` (absent: the defaults).

    Raises:
        errors.RunbookInvalid: file:line:column of every problem (exit 2).
    """
    from crystal_runbook.serving import loader

    path = ws.inventory_dir / loader.FILENAME
    return loader.load(path, display=display(path), inventory=ws.inventory)


def derive(base: Workspace, **changes: Any) -> Workspace:
    """A workspace like ``base`` (same directories, secrets and observers) for one duty, with
    its own connections and nobody at a terminal."""
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    fields.update(sink=None, confirm=None, interactive=False)
    fields.update(changes)
    ws = Workspace(**fields)
    ws.redactor = base.redactor
    return ws


@dataclass
class Plan:
    """The duties of this replica, not started."""

    identity: str
    leaderships: list[leader.Leadership] = field(default_factory=list)
    clusters: list[KubeTarget] = field(default_factory=list)
    """Where this replica's Leases live (`/readyz` checks that each answers)."""


def _expand(text: str | None, state_dir: Path) -> str | None:
    if text is None:
        return None
    variables = inventory_variables(state_dir)
    return re.sub(r"\{(state_dir)\}", lambda m: variables[m.group(1)](), text)


def _pod_namespace() -> str | None:
    found = os.environ.get("POD_NAMESPACE", "").strip()
    if found:
        return found
    try:
        return POD_NAMESPACE_FILE.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def scheduler_place(ws: Workspace, loaded: LoadedServe) -> KubeTarget:
    """Where the scheduler's Lease lives.

    Raises:
        errors.ConfigurationError: not said in serve.yaml, and not running in a pod.
    """
    from crystal_runbook.kube.client import KubeTarget

    place = loaded.serve.leader_election.kubernetes
    if place is not None:
        return KubeTarget(
            deployment="-",
            namespace=place.namespace,
            context=place.context,
            kubeconfig=_expand(place.kubeconfig, ws.state_dir),
        )
    namespace = _pod_namespace() if os.environ.get("KUBERNETES_SERVICE_HOST") else None
    if namespace is None:
        raise errors.ConfigurationError(
            f"`serve --scheduler` needs a place for its Lease: {loaded.path} has no "
            "leader_election.kubernetes and this is not a pod",
            hint="add leader_election: {kubernetes: {namespace: ..., context: ...}} to "
            f"{loaded.path} (docs/operations.md)",
        )
    return KubeTarget(deployment="-", namespace=namespace)


def plan(
    base: Workspace,
    *,
    scheduler_on: bool,
    watch_on: bool,
    identity: str | None = None,
    on_report: Callable[[Report], None] = lambda _r: None,
    on_change: Callable[[leader.Leadership], None] = lambda _l: None,
) -> Plan:
    """The Leaderships of this replica (not started).

    Raises:
        errors.InputError: serve.yaml or services.yaml is wrong, or the scheduler's Lease has
            no place (exit 2).
    """
    from crystal_runbook.kube import election, lease
    from crystal_runbook.kube.client import KubeTarget

    loaded = config(base)
    settings = loaded.serve.leader_election
    timing = leader.Timing(
        lease_duration=settings.lease_duration, renew_period=settings.renew_period
    )
    found = Plan(identity=identity or replica_identity())

    def add(duty_name: str, target: KubeTarget, duty: leader.Duty) -> None:
        candidate = election.LeaseElection(
            target,
            lease.lease_name(f"serve/{duty_name}"),
            identity=found.identity,
            lease_duration=settings.lease_duration,
        )
        found.leaderships.append(
            leader.Leadership(duty_name, candidate, duty, timing=timing, on_change=on_change)
        )
        found.clusters.append(target)

    if scheduler_on:
        place = scheduler_place(base, loaded)

        def scheduler_ws() -> Workspace:
            return derive(base, origin=recovery.origin(found.identity, scheduler.DUTY))

        add(
            scheduler.DUTY,
            place,
            scheduler.duty(scheduler_ws, interval=loaded.serve.scheduler.interval),
        )
    if watch_on:
        if not loaded.serve.watch:
            raise errors.ConfigurationError(
                f"`serve --watch` has nothing to watch: {loaded.path} lists no service",
                hint=f"add watch: [{{service: maia, env: production}}] to {loaded.path}",
            )
        for entry in loaded.serve.watch:
            name = watchers.duty_name(entry.service, entry.env)
            target = base.inventory.target(entry.service, entry.env).model_dump(mode="json")

            def watch_ws(env: str = entry.env, duty_name: str = name) -> Workspace:
                return derive(base, env=env, origin=recovery.origin(found.identity, duty_name))

            add(
                name,
                KubeTarget.from_target(target),
                watchers.duty(watch_ws, entry, on_report=on_report),
            )
    return found
