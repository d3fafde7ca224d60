"""Runs a `serve` replica left unfinished are resumed by the next leader, once.

A replica that stops (SIGTERM past the grace period: the run is journalled `interrupted`) or
dies (kill -9, a lost node: the run stays `running` in the journal) leaves a run half done.
Every run a replica starts carries ``meta.serve`` (``origin``): which replica, and which duty
started it (``scheduler``, ``watch/<service>/<env>``, ``slack``). The leader of the duty looks
for such runs of its duty and resumes each with `resume`'s own rules (the journalled runbook,
drift refused):

- *orphaned*: `interrupted`, or `running` in a process that is gone (this host), or `running`
  on another host; there ``resume`` itself refuses while the run's lock is alive (its
  heartbeat), so a run still going on another replica is left alone;
- *once*: the resume happens under a `resume/<run id>` lock, with the run read again under
  it, so two leaders never resume it twice; a resume that was refused (drift, a secret
  parameter) is journalled and not tried again; a run resumed and interrupted again is
  resumed again by the next leader;
- *recent*: only runs whose last journal event is at most ``MAX_AGE`` old; an older one waits
  for a person (`crystal-runbook resume`), since the world has moved on since.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from crystal_runbook import errors
from crystal_runbook.engine import journal as journal_mod
from crystal_runbook.engine import locks as locks_mod
from crystal_runbook.service import runs
from crystal_runbook.service.workspace import Workspace

log = logging.getLogger("crystal_runbook.serve")

KEY = "serve"
"""The run metadata key of a run started by `serve`."""
MAX_AGE = 900.0
"""Seconds since a run's last journal event after which it is no longer resumed on its own."""
SCAN = 200
"""Recent runs read per look (newest first)."""
REFUSED = "resume refused"
"""The event status that marks a run as not to be resumed again automatically."""


def origin(replica: str, duty: str) -> dict[str, Any]:
    """The metadata every run started by ``duty`` on ``replica`` carries."""
    return {KEY: {"replica": replica, "duty": duty}}


def duty_of(run: journal_mod.RunRecord) -> str | None:
    """The duty of `serve` that started ``run`` (None: not started by `serve`)."""
    found = run.meta.get(KEY)
    if not isinstance(found, Mapping):
        return None
    duty = found.get("duty")
    return str(duty) if isinstance(duty, str) else None


def orphaned(run: journal_mod.RunRecord, *, host: str, pid: int) -> bool:
    """Whether ``run`` may have been left behind by its process (see the module docstring)."""
    if run.status == "interrupted":
        return True
    if run.status != "running":
        return False
    if run.host == host:
        return run.pid != pid and not journal_mod.process_alive(run.pid)
    return run.lock_key is not None  # resume refuses while its lock holder lives


def _age(event: journal_mod.EventRecord) -> float:
    return (datetime.now(UTC) - journal_mod.parse_iso(event.at)).total_seconds()


def _refused_since(events: list[journal_mod.EventRecord]) -> bool:
    """Whether an automatic resume was refused after the run last (re)started."""
    for event in reversed(events):
        if event.kind != "run":
            continue
        if event.status == REFUSED:
            return True
        if event.status in ("running", "resumed", "started"):
            return False
    return False


@dataclass(frozen=True)
class Recovered:
    """What one look did about one run."""

    run_id: str
    action: str
    """resumed, busy (its lock is held: still running somewhere), refused, or skipped."""
    status: str | None = None
    message: str = ""


def candidates(ws: Workspace, duties: set[str], *, service: str | None = None) -> list[str]:
    """Ids of recent orphaned runs of ``duties`` (oldest first)."""
    host, pid = socket.gethostname(), os.getpid()
    found = []
    for run in ws.journal.list_runs(service=service, limit=SCAN):
        if duty_of(run) in duties and orphaned(run, host=host, pid=pid):
            found.append(run.id)
    return list(reversed(found))


def resume_orphans(
    ws: Workspace, duties: set[str], *, service: str | None = None
) -> list[Recovered]:
    """Resume, once each, the orphaned runs of ``duties`` (of ``service``)."""
    done = []
    for run_id in candidates(ws, duties, service=service):
        outcome = _recover(ws, run_id)
        if outcome.action != "skipped":
            log.info("recovery of run %s: %s %s", run_id, outcome.action, outcome.message)
        done.append(outcome)
    return done


def _recover(ws: Workspace, run_id: str) -> Recovered:
    host, pid = socket.gethostname(), os.getpid()
    try:
        with locks_mod.hold_all(
            [ws.local_locks],
            f"resume/{run_id}",
            run_id=f"recover-{secrets.token_hex(4)}",
            actor=ws.actor,
        ):
            run = ws.journal.get_run(run_id)  # again, under the lock
            if not orphaned(run, host=host, pid=pid):
                return Recovered(run_id, "skipped", run.status, "no longer orphaned")
            events = ws.journal.events(run_id)
            if not events or _age(events[-1]) > MAX_AGE:
                return Recovered(run_id, "skipped", run.status, "too old to resume on its own")
            if _refused_since(events):
                return Recovered(run_id, "skipped", run.status, "its resume was refused before")
            return _resume(ws, run)
    except errors.LockHeld as exc:
        return Recovered(run_id, "busy", None, exc.message)


def _resume(ws: Workspace, run: journal_mod.RunRecord) -> Recovered:
    try:
        result = runs.resume(ws, run.id, assume_yes=True)
    except errors.LockHeld as exc:  # the run (or another on its lock) is alive somewhere
        return Recovered(run.id, "busy", run.status, exc.message)
    except errors.CrystalError as exc:
        if not isinstance(exc, errors.RunDrifted):  # drift journals its own refusal
            ws.journal.add_event(
                run.id,
                kind="run",
                status=REFUSED,
                message=f"not resumed by serve ({ws.actor}): {ws.redactor.text(exc.message)}",
            )
        return Recovered(run.id, "refused", run.status, ws.redactor.text(exc.message))
    return Recovered(run.id, "resumed", result.run.status, result.run.error or "")
