"""The timeline of a document: the rules' pending and firing moments, then every journalled
transition, in time order, each with who was acting.

Only the journal's events are read (nothing is measured again); long details are cut to
``DETAIL_LENGTH`` characters, the journal keeps the rest.
"""

from __future__ import annotations

from collections.abc import Sequence

from crystal_runbook.engine import journal
from crystal_runbook.incident import facts
from crystal_runbook.incident.model import TimelineRow, Trigger

DETAIL_LENGTH = 300
"""Longest detail kept in a timeline row (the journal has the rest)."""

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


def timeline(
    run: journal.RunRecord, events: Sequence[journal.EventRecord], trig: Trigger
) -> list[TimelineRow]:
    """Rules pending and firing, then every journalled transition, in time order."""
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
                    f"condition first held: {num(seen)} {condition}",
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
                    f"{num(rule.value)} {condition}{held}",
                    "watch",
                )
            )
    if trig.kind == "automatic" and trig.detected_at:
        rows.append(
            TimelineRow(
                trig.detected_at,
                "watch",
                "rollback requested",
                short(trig.reason) or "a rollback rule fired",
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
            rows.append(TimelineRow(event.at, "run", transition, short(detail), who))
            continue
        transition = (
            _STEP_TRANSITIONS.get(event.status, event.status)
            if event.kind == "step"
            else event.kind
        )
        detail = "" if event.message in ("checking", "verifying") else event.message
        rows.append(TimelineRow(event.at, event.step_id or "run", transition, short(detail), who))
    return sorted(rows, key=lambda r: r.at)  # stable: equal times keep their order


def short(text: str) -> str:
    """``text`` on one line, cut to ``DETAIL_LENGTH`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= DETAIL_LENGTH else flat[: DETAIL_LENGTH - 1] + "…"


def num(value: float | None) -> str:
    """A measured value for prose: four significant digits, or "no value"."""
    return "no value" if value is None else f"{value:.4g}"
