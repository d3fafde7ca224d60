"""Journal records -> ``model.Document``: the one function that decides what a document says.

Inputs are only what the journal holds: the run (steps, outputs, evidence, changes,
timestamps, the trigger evidence in ``meta``), its events, and other runs of the same service
(for the review's deployment and incident counts). Nothing is measured again.

A document written by the run itself (its `incident.write` step, ``writer``) describes the
run as it stood when that step started (``asof``): the writer's own transitions and anything
after them are left out, so writing it again (a resumed run, a second check) produces the
same bytes.

This module only composes the sections; each has its own module: ``asof`` (the run as of the
writer, the status), ``trigger`` (what started the run, severity), ``timeline``, ``changes``
(steps and changes tables), ``failure`` (the Failure section), ``summary`` (title and
summary), ``verification``, ``review`` and ``drill``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from crystal_runbook.engine import journal
from crystal_runbook.incident import (
    asof,
    changes,
    drill,
    facts,
    failure,
    review,
    summary,
    timeline,
    trigger,
    verification,
)
from crystal_runbook.incident.model import Chart, Document, Links


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
    steps, events = asof.as_of_writer(run, events, writer)
    view = dataclasses.replace(run, steps=steps)
    text = facts.RunbookText.of(run)
    status = asof.status(view, writer, alive)
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
    trig = trigger.trigger(view)
    failed = failure.failure(view, events, status)
    return Document(
        run_id=run.id,
        runbook=run.runbook,
        service=run.service,
        env=run.env,
        actor=run.actor,
        drill=run.drill,
        title=summary.title(view, trig, status, failed),
        status=status,
        severity=trigger.severity(view, trig),
        summary=summary.summary(
            view,
            trig,
            status=status,
            failure=failed,
            restore=timing.time_to_restore_seconds,
            as_of=as_of,
        ),
        as_of=as_of,
        started_at=run.started_at,
        ended_at=None if writer is not None else run.ended_at,
        trigger=trig,
        timeline=timeline.timeline(view, events, trig),
        steps=[changes.step_row(s, text) for s in steps],
        changes=changes.changes(view, events),
        verification=checks,
        durations=timing,
        review=review.review(
            view, related, timing=timing, checks=checks, as_of=as_of, status=status
        ),
        failure=failed,
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
