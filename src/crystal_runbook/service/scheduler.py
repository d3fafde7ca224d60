"""`serve --scheduler`: the drill scheduler, as the duty of one leader among the replicas.

Every ``interval`` the leader of the scheduler's Lease does what `drill due --run` does
(``drill_schedule.run_due``: the same decision in ``drills.schedule``, under the same
`drill-due/<service>/<env>` lock), after resuming the runs that a replica left unfinished
(``service.recovery``: the scheduler's drills and the Slack app's runs). So each due slot
runs once whichever replica leads, and a replica that dies mid-drill is finished by the next.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from crystal_runbook import errors
from crystal_runbook.service import drill_schedule, recovery
from crystal_runbook.service.workspace import Workspace

log = logging.getLogger("crystal_runbook.serve")

DUTY = "scheduler"
RECOVERS = {DUTY, "slack"}
"""Duties whose unfinished runs the scheduler's leader resumes (the Slack app runs on every
replica and has no leader of its own)."""


def tick(
    ws: Workspace,
    *,
    stop: threading.Event,
    interval: float,
    said: dict[tuple[str, str], str] | None = None,
) -> list[drill_schedule.DueOutcome]:
    """One look: resume what was left unfinished, then run every drill that is due (waiting
    out a slot's jitter when it ends within ``interval``). What it did is logged; ``said``
    keeps the last message per drill so that a refusal repeated every look is said once."""
    said = {} if said is None else said
    recovery.resume_orphans(ws, RECOVERS)
    if stop.is_set():
        return []
    outcomes = drill_schedule.run_due(ws, max_wait=interval, stop=stop, progress=log.debug)
    for outcome in outcomes:
        key = (outcome.service, outcome.env)
        if outcome.action not in ("ran", "resumed", "refused", "skipped"):
            said.pop(key, None)
            continue
        line = f"{outcome.action} ({outcome.message})"
        if said.get(key) != line or outcome.action in ("ran", "resumed"):
            log.log(
                logging.WARNING if outcome.failed else logging.INFO,
                "drill of %s in %s: %s",
                outcome.service,
                outcome.env,
                line,
            )
        said[key] = line
    return outcomes


def duty(
    make_workspace: Callable[[], Workspace], *, interval: float
) -> Callable[[threading.Event], None]:
    """The scheduler's duty: ``tick`` every ``interval`` until stopped."""

    def run(stop: threading.Event) -> None:
        ws = make_workspace()
        said = ""
        told: dict[tuple[str, str], str] = {}
        try:
            while not stop.is_set():
                try:
                    tick(ws, stop=stop, interval=interval, said=told)
                    said = ""
                except errors.Interrupted:
                    raise KeyboardInterrupt from None  # journalled; the next leader resumes it
                except errors.CrystalError as exc:  # a broken drills.yaml: said once, retried
                    if str(exc) != said:
                        log.error("scheduler: %s", exc)
                    said = str(exc)
                stop.wait(interval)
        finally:
            ws.close()

    return run
