"""The title and the two-sentence summary at the top of a document.

They are what a reader sees in a list of incidents or a Slack message: what happened to
which service where, why (the rules that fired, or the manual reason), and how it ended.
"""

from __future__ import annotations

from typing import Any

from crystal_runbook.engine import durations as durations_mod
from crystal_runbook.engine import journal
from crystal_runbook.incident import facts, timeline
from crystal_runbook.incident.model import Failure, Status, Trigger


def title(run: journal.RunRecord, trig: Trigger, status: Status, failure: Failure | None) -> str:
    """One line: which service where, what happened, and why."""
    where = f"{run.service or run.runbook} in {run.env}"
    undo = facts.rollback_step(run)
    kind = "rollback" if undo is not None else f"{run.runbook} run"
    if status == "failed" and failure is not None:
        what = f"{kind} failed at step {failure.step}"
    elif status == "interrupted" and failure is not None:
        what = f"{kind} interrupted at step {failure.step}"
    elif status == "in_progress":
        what = f"{kind} in progress"
    elif undo is not None and undo.changed:
        what = (
            f"rolled back from revision {undo.outputs.get('from_revision')} to "
            f"{undo.outputs.get('to_revision')}"
        )
    elif undo is not None:
        what = f"rollback found revision {undo.outputs.get('to_revision')} already running"
    else:
        what = f"{kind} completed"
    if trig.kind == "automatic" and trig.rules:
        names = ", ".join(r.name for r in trig.rules)
        cause = f" after {names} fired"
    elif trig.reason:
        cause = f" (manual: {_cut(trig.reason, 80)})"
    else:
        cause = f" (manual, by {trig.actor})"
    prefix = "Rollback drill" if run.drill else "Incident"
    return f"{prefix}: {where} {what}{cause}"


def summary(
    run: journal.RunRecord,
    trig: Trigger,
    *,
    status: Status,
    failure: Failure | None,
    restore: float | None,
    as_of: str,
) -> str:
    """Two sentences: what started the run, and how it ended."""
    where = f"{run.service or run.runbook} in {run.env}"
    start = _clock(run.started_at)
    if trig.kind == "automatic" and trig.rules:
        plural = "rule" if len(trig.rules) == 1 else "rules"
        conditions = "; ".join(
            f"{r.name} {timeline.num(r.value)} {r.op} {r.threshold:g}"
            + (f" for {r.for_seconds:g}s" if r.for_seconds else "")
            for r in trig.rules
        )
        first = (
            f"The {', '.join(r.name for r in trig.rules)} {plural} fired for {where} at "
            f"{_clock(trig.detected_at)} ({conditions}), and watch started run {run.id} of "
            f"{run.runbook} at {start}."
        )
    elif trig.reason:
        first = (
            f"{run.actor} started run {run.id} of {run.runbook} for {where} at {start} "
            f"with the reason “{_cut(trig.reason, 200)}”."
        )
    else:
        first = f"{run.actor} started run {run.id} of {run.runbook} for {where} at {start}."
    undo = facts.rollback_step(run)
    if status == "failed" and failure is not None:
        second = (
            f"It failed at step {failure.step} ({failure.uses}) during its {failure.transition}"
            f" ({_cut(failure.error, 200)}); the Failure section lists the state left behind."
        )
    elif status == "interrupted" and failure is not None:
        second = (
            f"It was interrupted at step {failure.step}; `crystal-runbook resume {run.id}` "
            "continues it."
        )
    elif status == "in_progress":
        second = f"The run was still in progress at {_clock(as_of)}."
    else:
        took = "" if restore is None else f" in {durations_mod.format_duration(restore)}"
        target = (
            ""
            if restore is None
            else ", within the 5-minute target"
            if restore < 300
            else ", over the 5-minute target"
        )
        if undo is not None and undo.changed:
            mode = facts.as_mapping(undo.outputs.get("to_env")).get("CRYSTAL_MODE")
            second = (
                f"{run.service} went from revision {undo.outputs.get('from_revision')} "
                f"({_images(undo.outputs.get('from_images'))}) back to revision "
                f"{undo.outputs.get('to_revision')} ({_images(undo.outputs.get('to_images'))})"
                + (f" with CRYSTAL_MODE={mode}" if mode else "")
                + f" and was verified restored{took}{target}."
            )
        elif undo is not None:
            second = (
                f"Revision {undo.outputs.get('to_revision')} was already running, so nothing "
                f"was changed, and the checks passed{took}{target}."
            )
        else:
            changed = sum(1 for s in facts.main_steps(run) if s.changed)
            second = f"Every step finished ({changed} changed something){took}{target}."
    return f"{first} {second}"


def _images(value: Any) -> str:
    return ", ".join(str(v) for v in facts.as_mapping(value).values()) or "no image recorded"


def _clock(at: str | None) -> str:
    return f"{at[11:19]} UTC" if at and len(at) >= 19 else "an unknown time"


def _cut(text: str, length: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= length else flat[: length - 1] + "…"
