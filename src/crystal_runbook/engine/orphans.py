"""Runs whose process is gone: said so honestly, and journalled when their lock is taken over.

A run killed with ``kill -9`` never writes its own end: the journal keeps it `running`.
Two places make that true again:

- ``as_seen``: `runs` and `runs show` show such a run (same host, its process gone) as
  `interrupted`, "process gone", with the `resume` command, without writing anything;
- ``journal_interrupted``: when another run takes over its lock or Lease (stale, or
  ``--break-lock``), the dead run is journalled `interrupted` before the new run goes on,
  its busy steps too, so every reader of the journal (the incident document, `serve`'s
  recovery, `resume`) sees the same thing. `resume` of it keeps working.
"""

from __future__ import annotations

import os
import socket
from dataclasses import replace

from crystal_runbook import errors
from crystal_runbook.engine import journal as journal_mod

BUSY = ("checking", "applying", "applied", "verifying")
"""Step states a run only has while its process works on the step."""


def resume_hint(run_id: str) -> str:
    return f"`crystal-runbook resume {run_id}`"


def process_gone(run: journal_mod.RunRecord) -> bool:
    """Whether ``run`` is journalled `running` on this host in a process that no longer
    exists (killed: it could not journal its own end)."""
    return (
        run.status == "running"
        and run.host == socket.gethostname()
        and run.pid != os.getpid()
        and not journal_mod.process_alive(run.pid)
    )


def as_seen(run: journal_mod.RunRecord) -> journal_mod.RunRecord:
    """``run`` as `runs` shows it: `interrupted` when its process is gone, else unchanged."""
    if not process_gone(run):
        return run
    return replace(
        run,
        status="interrupted",
        error=f"process gone; {resume_hint(run.id)}",
        steps=[replace(s, status="interrupted") if s.status in BUSY else s for s in run.steps],
    )


def journal_interrupted(journal: journal_mod.Journal, run_id: str, why: str) -> bool:
    """Journal ``run_id`` as `interrupted` because ``why`` (its lock was taken over), when
    the journal still shows it `running`. Its end is its last sign of life (its last event).
    Returns whether it wrote anything; a run this journal does not know is left alone."""
    try:
        run = journal.get_run(run_id)
    except errors.InputError:  # not a run of this journal (e.g. `serve`'s recovery lock)
        return False
    if run.status != "running":
        return False
    events = journal.events(run_id)
    last = events[-1].at if events else run.started_at
    reason = f"process gone ({why}); {resume_hint(run_id)}"
    for step in run.steps:
        if step.status in BUSY:
            step.status, step.ended_at, step.error = "interrupted", last, reason
            journal.save_step(step, message=f"interrupted: {reason}")
    run.status, run.ended_at, run.error = "interrupted", last, reason
    journal.update_run(run, event="interrupted", message=f"run {run_id} interrupted: {reason}")
    return True
