"""What `serve`'s `/readyz` and `/metrics` ask of this replica's journal, clusters and outbox.

- ``journal``: the journal answers a one-row read (SQLite file, or the PostgreSQL server);
- ``cluster``: a Kubernetes API server answers `GET /version` (the clusters where this
  replica's Leases live);
- ``outbox_depth``: notifications waiting in `<state dir>/outbox/` (Slack did not take them).

Each probe is bounded (``TIMEOUT``) and returns the problem as text, or None when it is fine.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from crystal_runbook import errors
from crystal_runbook.service.workspace import Workspace

if TYPE_CHECKING:
    from crystal_runbook.kube.client import KubeTarget

TIMEOUT = 3.0
"""Seconds one probe may take (Kubernetes' default probe timeout is 1 s per request; ours is
called at most once a second and its answer reused)."""


def journal(ws: Workspace) -> str | None:
    """None when the journal answers a read, else what is wrong."""
    try:
        ws.journal.list_runs(limit=1)
    except errors.CrystalError as exc:
        return f"journal: {ws.redactor.text(exc.message)}"
    return None


def cluster(target: KubeTarget) -> str | None:
    """None when ``target``'s API server answers `GET /version`, else what is wrong."""
    from crystal_runbook.kube import client

    try:
        client.connect(target).json(
            "GET",
            "/version",
            what="read the API server's version",
            where=target.where,
            deadline=time.monotonic() + TIMEOUT,
        )
    except errors.CrystalError as exc:
        return f"kubernetes ({target.where}): {exc.message}"
    return None


def readiness(ws: Workspace, clusters: Sequence[KubeTarget]) -> list[str]:
    """What keeps this replica from being ready (`/readyz`): the journal, then each distinct
    cluster (kubeconfig and context) once; empty when all answer."""
    found = [p for p in [journal(ws)] if p]
    seen: set[tuple[str | None, str | None]] = set()
    for target in clusters:
        key = (target.kubeconfig, target.context)
        if key in seen:
            continue
        seen.add(key)
        problem = cluster(target)
        if problem:
            found.append(problem)
    return found


def outbox_depth(ws: Workspace) -> int:
    """How many notifications wait in the outbox (files; their contents are not read)."""
    from crystal_runbook.notify import outbox

    root = outbox.Outbox.of(ws.state_dir).root
    try:
        return sum(1 for _ in root.glob("*.json"))
    except OSError:
        return 0
