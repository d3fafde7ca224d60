"""A document written from inside its run describes the run as it stood when the writer started.

The run's own `incident.write` step (the writer) must produce the same bytes however often
it runs (a resumed run, a second check): so its own transitions and everything after them
are cut here, once, before anything else reads the run. The document's status follows from
that view.
"""

from __future__ import annotations

from collections.abc import Sequence

from crystal_runbook.engine import journal
from crystal_runbook.incident import facts
from crystal_runbook.incident.model import Status

WRITING = "writing"
"""Status shown for the `incident.write` step that is writing the document."""


def as_of_writer(
    run: journal.RunRecord,
    events: Sequence[journal.EventRecord],
    writer: journal.StepRecord | None,
) -> tuple[list[journal.StepRecord], list[journal.EventRecord]]:
    """The run's steps and events as they stood when ``writer`` started (all of them if None).

    The writer shows as `writing`, later steps of its phase as `pending`, and events from
    the writer's first one on are left out. Applying it twice gives the same result.
    """
    if writer is None:
        return list(run.steps), list(events)
    cut = len(events)
    for i, event in enumerate(events):
        if event.step_id == writer.id and event.at >= (writer.started_at or ""):
            cut = i
            break
    steps = []
    for step in run.steps:
        if step.phase == writer.phase and step.index == writer.index:
            steps.append(
                journal.StepRecord(
                    run_id=step.run_id,
                    phase=step.phase,
                    index=step.index,
                    id=step.id,
                    uses=step.uses,
                    status=WRITING,
                    started_at=step.started_at,
                )
            )
        elif step.phase == writer.phase and step.index > writer.index:
            steps.append(
                journal.StepRecord(
                    run_id=step.run_id,
                    phase=step.phase,
                    index=step.index,
                    id=step.id,
                    uses=step.uses,
                )
            )
        else:
            steps.append(step)
    return steps, list(events[:cut])


def status(run: journal.RunRecord, writer: journal.StepRecord | None, alive: bool) -> Status:
    """The document's status: the run's end, or (written from inside it) how far it got."""
    final: dict[str, Status] = {"ok": "resolved", "failed": "failed", "interrupted": "interrupted"}
    if writer is None and run.status in final:
        return final[run.status]
    main = facts.main_steps(run)
    if any(s.status == "failed" for s in main):
        return "failed"
    if any(s.status == "interrupted" for s in main):
        return "interrupted"
    if writer is not None:
        if writer.phase == "on_failure":
            return "failed"
        before = [s for s in main if s.index < writer.index]
        return "resolved" if all(s.status in facts.DONE for s in before) else "in_progress"
    return "in_progress" if alive else "interrupted"
