"""What `serve`'s `/readyz` and `/metrics` ask of this replica's journal, clusters and outbox.

- ``journal``: the journal answers a one-row read (SQLite file, or the PostgreSQL server);
- ``cluster``: a Kubernetes API server answers `GET /version` (the clusters where this
  replica's Leases live);
- ``outbox_depth``: notifications waiting in `<state dir>/outbox/` (Slack did not take them).

Each probe is bounded (``TIMEOUT``: the cluster's by its request deadline, the journal's by
``Bounded``) and returns the problem as text, or None when it is fine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
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


class Bounded:
    """A probe that answers within ``timeout`` seconds whatever it waits for.

    The journal's read can wait far longer than a probe may (a pooled PostgreSQL connection
    is waited for up to 30 s while the server is down), so the probe runs in a thread of its
    own and, past ``timeout``, the answer is that it did not answer. At most one such thread
    at a time: while one still waits, the next call waits on that same one.
    """

    def __init__(
        self, probe: Callable[[], str | None], *, what: str, timeout: float = TIMEOUT
    ) -> None:
        self.probe = probe
        self.what = what
        self.timeout = timeout
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self._answer: str | None = None

    def _run(self, done: threading.Event) -> None:
        try:
            self._answer = self.probe()
        except Exception as exc:  # noqa: BLE001 - a probe reports, it never raises into /readyz
            # the type only: an untranslated error's text could hold a URL with its password
            self._answer = f"{self.what}: the probe failed ({type(exc).__name__})"
        finally:
            done.set()

    def __call__(self) -> str | None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._done = threading.Event()
                self._thread = threading.Thread(
                    target=self._run, args=(self._done,), name=f"probe-{self.what}", daemon=True
                )
                self._thread.start()
            done = self._done
        if done.wait(self.timeout):
            return self._answer
        return f"{self.what}: no answer within {self.timeout:.0f} s"


def readiness(
    ws: Workspace,
    clusters: Sequence[KubeTarget],
    *,
    journal_probe: Callable[[], str | None] | None = None,
) -> list[str]:
    """What keeps this replica from being ready (`/readyz`): the journal (``journal_probe``,
    by default ``journal(ws)`` unbounded), then each distinct cluster (kubeconfig and
    context) once; empty when all answer."""
    probe = journal_probe or (lambda: journal(ws))
    found = [p for p in [probe()] if p]
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
