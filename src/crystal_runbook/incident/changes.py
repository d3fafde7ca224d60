"""The steps table and the changes table of a document: what each step did, and what this
run changed.

A change counts when the step's apply took effect (journalled `applied`), and it is the
change the run set out to make (its journalled intent), not what a later check found:
after a resume the document still tells what this run did. Secret values stay masked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from crystal_runbook.engine import journal
from crystal_runbook.incident import asof, facts
from crystal_runbook.incident.model import ChangeRow, StepRow


def step_row(step: journal.StepRecord, text: facts.RunbookText) -> StepRow:
    """One row of the steps table."""
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


def applied(step: journal.StepRecord, events: Sequence[journal.EventRecord]) -> bool:
    """Whether the step's apply took effect (journalled as `applied`)."""
    if step.changed:
        return True
    return any(e.step_id == step.id and e.kind == "step" and e.status == "applied" for e in events)


def intent(step: journal.StepRecord, events: Sequence[journal.EventRecord]) -> list[Any]:
    """What the step set out to change: its record's changes, else the intent journalled
    with its last `applying` transition (what this run did, not what a later check found)."""
    if step.changes:
        return list(step.changes)
    for event in reversed(events):
        intent = event.data.get("intent") if isinstance(event.data, dict) else None
        if event.step_id == step.id and event.status == "applying" and intent:
            return list(intent)
    return []


def changes(run: journal.RunRecord, events: Sequence[journal.EventRecord]) -> list[ChangeRow]:
    """What this run changed: each applied step's intent, secret values masked."""
    rows = []
    for step in run.steps:
        if step.status == asof.WRITING or not applied(step, events):
            continue
        for change in intent(step, events):
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
