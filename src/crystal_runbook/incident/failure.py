"""The Failure section of a failed or interrupted run: where it stopped, in which phase,
whether that step's change was already applied, the state it left behind, and how to go on.

On-call engineers read this first after a failed rollback: it must say plainly what is in
place and what is not, from the journal alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from crystal_runbook.engine import journal
from crystal_runbook.incident import asof, changes, facts
from crystal_runbook.incident.model import Failure, Status


def failure(
    run: journal.RunRecord, events: Sequence[journal.EventRecord], status: Status
) -> Failure | None:
    """The Failure section, or None when the run did not fail or stop midway."""
    if status not in ("failed", "interrupted"):
        return None
    main = facts.main_steps(run)
    stopped = next((s for s in main if s.status in ("failed", "interrupted")), None)
    if stopped is None:  # killed between steps, or while running one
        stopped = next((s for s in main if s.status not in facts.DONE), None)
    if stopped is None:
        return None
    transitions = [e.status for e in events if e.step_id == stopped.id and e.kind == "step"]
    before = [t for t in transitions if t not in ("failed", "interrupted")]
    phase = {"checking": "check", "applying": "apply", "applied": "verify", "verifying": "verify"}
    transition = phase.get(before[-1], "check") if before else "before it started"
    applied = changes.applied(stopped, events)
    left: list[str] = []
    for step in main:
        if step is stopped:
            break
        if step.status == "ok" and step.changed:
            what = "; ".join(
                f"{c.get('field')}: {c.get('before')!r} -> {c.get('after')!r}"
                if not c.get("secret")
                else f"{c.get('field')}: ***** -> *****"
                for c in step.changes
            )
            left.append(f"step {step.id} changed {what or 'something'} and was verified")
    if applied:
        what = "; ".join(
            f"{c.get('field')}: {c.get('before')!r} -> {c.get('after')!r}"
            if not c.get("secret")
            else f"{c.get('field')}: ***** -> *****"
            for c in changes.intent(stopped, events)
        )
        left.append(
            f"step {stopped.id} applied its change ({what or stopped.summary}) but it did not "
            "verify: the change is in place, its effect is not proven"
        )
    else:
        left.append(f"step {stopped.id} changed nothing (it stopped during its {transition})")
    undo = facts.rollback_step(run)
    if undo is not None and undo.outputs.get("from_revision") is not None:
        images = ", ".join(
            str(v) for v in facts.as_mapping(undo.outputs.get("from_images")).values()
        )
        if undo.status == "ok" or (undo is stopped and applied):
            left.append(
                f"{undo.outputs.get('deployment')}: template of revision "
                f"{undo.outputs.get('to_revision')} sent (was revision "
                f"{undo.outputs.get('from_revision')}, {images})"
            )
        else:
            left.append(
                f"{undo.outputs.get('deployment')}: still revision "
                f"{undo.outputs.get('from_revision')} ({images}) as far as the journal knows"
            )
    not_run = [s.id for s in main if s.status == "pending" and s is not stopped]
    if not_run:
        left.append("not run: " + ", ".join(not_run))
    for step in run.steps:
        if step.phase == "on_failure" and step.status != asof.WRITING:
            left.append(f"on_failure step {step.id} ({step.uses}): {step.status}")
    next_step = (
        f"fix the cause, then `crystal-runbook resume {run.id}` continues from step "
        f"{stopped.id} (its check sees whether its change already took effect)"
    )
    return Failure(
        step=stopped.id,
        uses=stopped.uses,
        error=stopped.error or run.error or f"step {stopped.id} did not finish",
        transition=transition,
        change_applied=applied,
        state_left_behind=left,
        next_step=next_step,
    )
