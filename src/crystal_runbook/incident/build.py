"""Journal records -> ``model.Document``: the one function that decides what a document says.

Inputs are only what the journal holds: the run (steps, outputs, evidence, changes,
timestamps, the trigger evidence in ``meta``), its events, and other runs of the same service
(for the review's deployment and incident counts). Nothing is measured again.

A document written by the run itself (its `incident.write` step, ``writer``) describes the
run as it stood when that step started: the writer's own transitions and anything after them
are left out, so writing it again (a resumed run, a second check) produces the same bytes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from crystal_runbook.engine import durations as durations_mod
from crystal_runbook.engine import journal
from crystal_runbook.incident import drill, facts, review, verification
from crystal_runbook.incident.model import (
    ChangeRow,
    Chart,
    Document,
    Failure,
    Links,
    OtherRule,
    RuleEvidence,
    Sample,
    Severity,
    Status,
    StepRow,
    TimelineRow,
    Trigger,
)

DETAIL_LENGTH = 300
"""Longest detail kept in a timeline row (the journal has the rest)."""
SEVERITY_ORDER = ("info", "warning", "critical")
WRITING = "writing"
"""Status shown for the `incident.write` step that is writing the document."""


@dataclass(frozen=True)
class Paths:
    """Where the document's files go (as the reader should see them)."""

    markdown: str
    json: str


def build(
    run: journal.RunRecord,
    events: Sequence[journal.EventRecord],
    *,
    related: Sequence[journal.RunRecord] = (),
    writer: journal.StepRecord | None = None,
    paths: Paths,
    chart: Chart,
    alive: bool = False,
) -> Document:
    """The document of ``run``.

    Args:
        run: the run with its steps, as `journal.get_run` returns it.
        events: the run's events, in journal order.
        related: other runs of the same service (with steps), for the review fields.
        writer: the `incident.write` step writing this document from inside the run.
        paths: where the Markdown and JSON go.
        chart: the chart's file, or why there is none.
        alive: the run is `running` in a live process (else a `running` run was killed).
    """
    steps, events = as_of_writer(run, events, writer)
    view = dataclasses.replace(run, steps=steps)
    text = facts.RunbookText.of(run)
    status = _status(view, writer, alive)
    as_of = (
        writer.started_at
        if writer is not None and writer.started_at
        else run.ended_at or (events[-1].at if events else run.started_at)
    )
    block = facts.restoration(view)
    restored = facts.restored_at(block)
    timing = review.durations(view, restored_at=restored)
    checks = verification.items(
        view, text, document=paths.markdown, restore_seconds=timing.time_to_restore_seconds
    )
    trig = _trigger(view)
    failure = _failure(view, events, status)
    return Document(
        run_id=run.id,
        runbook=run.runbook,
        service=run.service,
        env=run.env,
        actor=run.actor,
        drill=run.drill,
        title=_title(view, trig, status, failure),
        status=status,
        severity=_severity(view, trig),
        summary=_summary(
            view,
            trig,
            status=status,
            failure=failure,
            restore=timing.time_to_restore_seconds,
            as_of=as_of,
        ),
        as_of=as_of,
        started_at=run.started_at,
        ended_at=None if writer is not None else run.ended_at,
        trigger=trig,
        timeline=_timeline(view, events, trig),
        steps=[_step_row(s, text) for s in steps],
        changes=_changes(view, events),
        verification=checks,
        durations=timing,
        review=review.review(
            view, related, timing=timing, checks=checks, as_of=as_of, status=status
        ),
        failure=failure,
        drill_report=drill.report(
            view, events, as_of=as_of, rollback_seconds=timing.time_to_restore_seconds
        )
        if run.drill
        else None,
        chart=chart,
        links=Links(
            run_id=run.id,
            show_command=f"crystal-runbook runs show {run.id}",
            dashboards=dict(
                facts.as_mapping(facts.as_mapping(run.meta.get("target")).get("dashboards"))
            ),
            notifications=[where for _, where in facts.notifications(view) if where],
            markdown=paths.markdown,
            json=paths.json,
        ),
    )


# -- the run as of the writer ---------------------------------------------------------------


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


def _status(run: journal.RunRecord, writer: journal.StepRecord | None, alive: bool) -> Status:
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


def _severity(run: journal.RunRecord, trig: Trigger) -> Severity:
    if run.drill:
        return "none"
    levels = [r.severity for r in trig.rules if r.severity in SEVERITY_ORDER]
    if not levels:
        return "unassessed"
    top = max(levels, key=SEVERITY_ORDER.index)
    return "critical" if top == "critical" else "warning" if top == "warning" else "info"


# -- trigger --------------------------------------------------------------------------------


def _trigger(run: journal.RunRecord) -> Trigger:
    evidence = facts.trigger(run)
    reason = facts.text(run.params.get("reason"))
    if evidence is None:
        return Trigger(kind="manual", reason=reason, actor=run.actor, detected_at=None)
    rules = []
    for entry in evidence.get("rules") or []:
        if not isinstance(entry, dict):
            continue
        rules.append(
            RuleEvidence(
                name=facts.text(entry.get("name")),
                description=facts.text(entry.get("description")),
                query=facts.text(entry.get("query")),
                op=facts.text(entry.get("op")),
                threshold=facts.finite(entry.get("threshold")) or 0.0,
                for_seconds=facts.finite(entry.get("for_seconds")) or 0.0,
                kind=facts.text(entry.get("kind")) or "threshold",
                severity=facts.text(entry.get("severity")),
                state=facts.text(entry.get("state")),
                value=facts.finite(entry.get("value")),
                pending_since=entry.get("pending_since") or None,
                firing_since=entry.get("since") or None,
                defined_at=facts.text(entry.get("defined_at")),
                observed=[Sample(at, v) for at, v in facts.points(entry.get("history"))],
            )
        )
    fired = {r.name for r in rules}
    others = [
        OtherRule(
            name=facts.text(e.get("name")),
            state=facts.text(e.get("state")),
            value=facts.finite(e.get("value")),
            threshold=facts.finite(e.get("threshold")),
            op=facts.text(e.get("op")),
        )
        for e in evidence.get("all_rules") or []
        if isinstance(e, dict) and e.get("name") not in fired
    ]
    return Trigger(
        kind="automatic",
        reason=reason,
        actor=run.actor,
        detected_at=facts.text(evidence.get("detected_at")) or None,
        rules=rules,
        other_rules=others,
    )


# -- timeline -------------------------------------------------------------------------------

_STEP_TRANSITIONS = {
    "checking": "check",
    "applying": "apply",
    "applied": "applied",
    "verifying": "verify",
    "ok": "done",
    "skipped": "skipped",
    "failed": "failed",
    "interrupted": "interrupted",
}
_RUN_TRANSITIONS = {
    "running": "run started",
    "resumed": "run resumed",
    "ok": "run finished ok",
    "failed": "run failed",
    "interrupted": "run interrupted",
}


def _timeline(
    run: journal.RunRecord, events: Sequence[journal.EventRecord], trig: Trigger
) -> list[TimelineRow]:
    rows: list[TimelineRow] = []
    for rule in trig.rules:
        condition = f"{rule.op} {rule.threshold:g}"
        if rule.pending_since:
            seen = next((s.value for s in rule.observed if s.at == rule.pending_since), None)
            rows.append(
                TimelineRow(
                    rule.pending_since,
                    f"rule {rule.name}",
                    "pending",
                    f"condition first held: {_num(seen)} {condition}",
                    "watch",
                )
            )
        if rule.firing_since:
            held = f" for {rule.for_seconds:g}s" if rule.for_seconds else ""
            rows.append(
                TimelineRow(
                    rule.firing_since,
                    f"rule {rule.name}",
                    "firing",
                    f"{_num(rule.value)} {condition}{held}",
                    "watch",
                )
            )
    if trig.kind == "automatic" and trig.detected_at:
        rows.append(
            TimelineRow(
                trig.detected_at,
                "watch",
                "rollback requested",
                _short(trig.reason) or "a rollback rule fired",
                "watch",
            )
        )
    who = run.actor
    for event in events:
        if event.kind == "run":
            if event.status == "resumed":
                who = facts.resumed_by(event.message) or who
            elif event.status == "running" and isinstance(event.data.get("actor"), str):
                who = event.data["actor"]
            transition = _RUN_TRANSITIONS.get(event.status, f"run {event.status}")
            detail = event.message
            if event.status == "running":
                via = " (by watch --auto-rollback)" if trig.kind == "automatic" else ""
                detail = f"{run.runbook} in {run.env}{via}"
            rows.append(TimelineRow(event.at, "run", transition, _short(detail), who))
            continue
        transition = (
            _STEP_TRANSITIONS.get(event.status, event.status)
            if event.kind == "step"
            else event.kind
        )
        detail = "" if event.message in ("checking", "verifying") else event.message
        rows.append(TimelineRow(event.at, event.step_id or "run", transition, _short(detail), who))
    return sorted(rows, key=lambda r: r.at)  # stable: equal times keep their order


def _short(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= DETAIL_LENGTH else flat[: DETAIL_LENGTH - 1] + "…"


def _num(value: float | None) -> str:
    return "no value" if value is None else f"{value:.4g}"


# -- steps and changes ----------------------------------------------------------------------


def _step_row(step: journal.StepRecord, text: facts.RunbookText) -> StepRow:
    return StepRow(
        id=step.id,
        name=text.names.get(step.id, ""),
        uses=step.uses,
        phase=step.phase,
        status=step.status,
        changed=step.changed,
        attempts=step.attempts,
        started_at=step.started_at,
        ended_at=step.ended_at,
        duration_seconds=facts.seconds(step.started_at, step.ended_at),
        summary=step.summary,
        error=step.error,
    )


def _applied(step: journal.StepRecord, events: Sequence[journal.EventRecord]) -> bool:
    """Whether the step's apply took effect (journalled as `applied`)."""
    if step.changed:
        return True
    return any(e.step_id == step.id and e.kind == "step" and e.status == "applied" for e in events)


def _intent(step: journal.StepRecord, events: Sequence[journal.EventRecord]) -> list[Any]:
    """What the step set out to change: its record's changes, else the intent journalled
    with its last `applying` transition (what this run did, not what a later check found)."""
    if step.changes:
        return list(step.changes)
    for event in reversed(events):
        intent = event.data.get("intent") if isinstance(event.data, dict) else None
        if event.step_id == step.id and event.status == "applying" and intent:
            return list(intent)
    return []


def _changes(run: journal.RunRecord, events: Sequence[journal.EventRecord]) -> list[ChangeRow]:
    rows = []
    for step in run.steps:
        if step.status == WRITING or not _applied(step, events):
            continue
        for change in _intent(step, events):
            secret = bool(change.get("secret"))
            rows.append(
                ChangeRow(
                    step=step.id,
                    field=facts.text(change.get("field")),
                    before="*****" if secret else change.get("before"),
                    after="*****" if secret else change.get("after"),
                )
            )
    return rows


# -- failure --------------------------------------------------------------------------------


def _failure(
    run: journal.RunRecord, events: Sequence[journal.EventRecord], status: Status
) -> Failure | None:
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
    applied = _applied(stopped, events)
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
            for c in _intent(stopped, events)
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
        if step.phase == "on_failure" and step.status != WRITING:
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


# -- title and summary ----------------------------------------------------------------------


def _title(run: journal.RunRecord, trig: Trigger, status: Status, failure: Failure | None) -> str:
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


def _summary(
    run: journal.RunRecord,
    trig: Trigger,
    *,
    status: Status,
    failure: Failure | None,
    restore: float | None,
    as_of: str,
) -> str:
    where = f"{run.service or run.runbook} in {run.env}"
    start = _clock(run.started_at)
    if trig.kind == "automatic" and trig.rules:
        plural = "rule" if len(trig.rules) == 1 else "rules"
        conditions = "; ".join(
            f"{r.name} {_num(r.value)} {r.op} {r.threshold:g}"
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
