"""Durations against the five-minute target, and the post-launch review fields.

The source checklist asks every incident for: deployment duration, rollback required,
incidents during deployment, time to stability, user impact (none / minor / major) and
lessons learned. Here each field is filled from the journal where it knows, with a note
saying where the number came from, and left to the reviewer (saying so) where it does not.

User impact is an estimate from the metrics the run journalled, never a measurement of
users: ``major`` when the error rate peaked at 10 % or more, or the bad state lasted five
minutes or more; ``minor`` when a rule fired but neither holds; ``none`` when the run's
metrics never crossed a threshold; ``unknown`` without metrics. A rollback started by hand
is judged on the rules' history before it (read by its `incident.write` step from the
metrics source): without any value from before the rollback it is ``unknown`` ("no data"),
never ``none`` on the strength of the healthy checks after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from crystal_runbook.engine import durations as durations_mod
from crystal_runbook.engine import journal
from crystal_runbook.incident import facts
from crystal_runbook.incident.model import (
    TARGET_SECONDS,
    CheckItem,
    Durations,
    Impact,
    Review,
)

MAJOR_ERROR_RATE = 0.10
"""An error-rate peak at or above this (10 % of requests failing) makes the impact major."""
MAJOR_EXPOSURE = TARGET_SECONDS
"""A bad state lasting this long (the rollback target, 5 minutes) makes the impact major."""


def durations(run: journal.RunRecord, *, restored_at: str | None) -> Durations:
    """Detection, start and restoration times of ``run``."""
    evidence = facts.trigger(run)
    condition: str | None = None
    detected: str | None = None
    if evidence is not None:
        starts = [
            str(r["pending_since"])
            for r in evidence.get("rules") or []
            if isinstance(r, dict) and isinstance(r.get("pending_since"), str)
        ]
        condition = min(starts) if starts else None
        detected = facts.text(evidence.get("detected_at")) or None
        note = (
            "Detect: from the first evaluation that saw the condition to the rule firing; "
            "start: from firing to the run starting; restore: from the run starting to the "
            "last restoring step done"
        )
    else:
        note = (
            "Manual run: the journal has no detection time; restore counts from the run's "
            "start to the last restoring step done"
        )
    restore = facts.seconds(run.started_at, restored_at)
    return Durations(
        target_seconds=TARGET_SECONDS,
        condition_started_at=condition,
        detected_at=detected,
        rollback_started_at=run.started_at,
        restored_at=restored_at,
        time_to_detect_seconds=facts.seconds(condition, detected),
        time_to_start_seconds=facts.seconds(detected, run.started_at),
        time_to_restore_seconds=restore,
        total_seconds=facts.seconds(condition or run.started_at, restored_at),
        within_target=None if restore is None else restore < TARGET_SECONDS,
        note=note,
    )


@dataclass(frozen=True)
class _Release:
    run: journal.RunRecord
    step: journal.StepRecord


def _release(run: journal.RunRecord, related: Sequence[journal.RunRecord]) -> _Release | None:
    """The latest earlier run in the same place that rolled out a new image."""
    for other in sorted(related, key=lambda r: r.started_at, reverse=True):
        if other.id == run.id or other.env != run.env or other.service != run.service:
            continue
        if other.started_at >= run.started_at:
            continue
        for step in other.steps:
            if step.uses == "k8s.set_image" and step.status == "ok" and step.changed:
                return _Release(other, step)
    return None


def _is_rollback(run: journal.RunRecord) -> bool:
    """A rollback run that started: a refused one changed nothing and is not an incident."""
    if run.status == "refused":
        return False
    return facts.trigger(run) is not None or facts.rollback_step(run) is not None


def review(
    run: journal.RunRecord,
    related: Sequence[journal.RunRecord],
    *,
    timing: Durations,
    checks: Sequence[CheckItem],
    as_of: str,
    status: str,
) -> Review:
    """The post-launch review fields of ``run``; ``related`` are other runs of its service."""
    release = _release(run, related)
    undo = facts.rollback_step(run)
    # deployment duration
    if release is not None:
        took = facts.seconds(release.step.started_at, release.step.ended_at)
        images = ", ".join(
            str(v) for v in facts.as_mapping(release.step.outputs.get("images")).values()
        )
        deployment_minutes = None if took is None else round(took / 60, 2)
        deployment_note = (
            f"{_short(took)}: release run {release.run.id} ({release.run.runbook}) rolled out "
            f"{images or 'an image'} from {_clock(release.step.started_at)} "
            f"to {_clock(release.step.ended_at)}"
        )
    else:
        deployment_minutes = None
        deployment_note = (
            "the release was not deployed by crystal-runbook, so its deployment is not in the "
            "journal; fill in by hand"
        )
    # rollback required
    if run.drill:
        required: bool | None = False
        required_note = "a drill: practice, not an incident"
    elif undo is None:
        required, required_note = None, f"runbook {run.runbook} does not roll back"
    elif undo.status == "ok" and undo.changed:
        required = True
        required_note = (
            f"rolled back from revision {undo.outputs.get('from_revision')} to "
            f"{undo.outputs.get('to_revision')}"
        )
    elif undo.status == "ok":
        required = True
        required_note = "requested; the target revision was already running, nothing changed"
    else:
        required = True
        required_note = f"requested; step {undo.id} is {undo.status}"
    # incidents during deployment
    if run.drill:
        incidents: int | None = 0
        incidents_note = "a drill"
    elif release is not None:
        during = [
            r
            for r in [*related, run]
            if r.env == run.env
            and r.service == run.service
            and release.run.started_at <= r.started_at <= run.started_at
            and _is_rollback(r)
        ]
        incidents = len({r.id for r in during})
        incidents_note = (
            f"rollback runs of {run.service} in {run.env} since release run {release.run.id}"
        )
    else:
        incidents = 1 if _is_rollback(run) else None
        incidents_note = "this run (no release run in the journal to count from)"
    # time to stability
    start = timing.condition_started_at or run.started_at
    total = facts.seconds(start, timing.restored_at)
    stability = None if total is None else round(total / 60, 2)
    stability_note = (
        f"from {'the condition first seen' if timing.condition_started_at else 'the run start'} "
        f"({_clock(start)}) to verified restored ({_clock(timing.restored_at)})"
        if total is not None
        else "the service was not verified restored in this run"
    )
    impact, basis = user_impact(run, timing, as_of=as_of)
    went_well, improve, actions = _lessons(run, timing, checks, status)
    return Review(
        deployment_duration_minutes=deployment_minutes,
        deployment_duration_note=deployment_note,
        rollback_required=required,
        rollback_required_note=required_note,
        incidents_during_deployment=incidents,
        incidents_note=incidents_note,
        time_to_stability_minutes=stability,
        time_to_stability_note=stability_note,
        user_impact=impact,
        user_impact_basis=basis,
        went_well=went_well,
        could_improve=improve,
        action_items=actions,
    )


def user_impact(run: journal.RunRecord, timing: Durations, *, as_of: str) -> tuple[Impact, str]:
    """An estimate (level, basis) from the run's metrics; see the module docstring."""
    evidence = facts.trigger(run) or {}
    fired = [r for r in evidence.get("rules") or [] if isinstance(r, dict)]
    measured: list[tuple[str, float, float | None, str]] = []  # rule, peak, threshold, op
    names = {str(r.get("name")) for r in fired}
    for entry in evidence.get("all_rules") or []:
        if isinstance(entry, dict) and entry.get("name"):
            names.add(str(entry["name"]))
    for step in run.steps:
        metrics = step.evidence.get("metrics")
        if isinstance(metrics, dict) and metrics.get("name"):
            names.add(str(metrics["name"]))
    names.update(facts.history_rules(run))
    if not fired and facts.rollback_step(run) is not None and not run.drill:
        before = [
            at
            for name in names
            for at, v in facts.rule_series(run, name)
            if v is not None and at < run.started_at
        ]
        if not before:
            past = facts.history(run)
            why = (
                f"the metrics source had no values of the rules from "
                f"{_clock(facts.text(past.get('since')))} to the rollback"
                + (f" ({past['error']})" if past.get("error") else "")
                if past
                else "no metrics source or no trigger rules to read the time before it from"
            )
            return (
                "unknown",
                f"no data: this rollback was started by hand and {why}; the checks after it "
                "cannot tell how users fared before",
            )
    crossed = False
    for name in sorted(names):
        values = [v for _, v in facts.rule_series(run, name) if v is not None]
        meta = _rule_meta(run, name)
        if meta is None:
            continue
        threshold, op, current = meta
        if current is not None:
            values.append(current)
        if not values:
            continue
        peak = max(values) if op in (">", ">=") else min(values)
        measured.append((name, peak, threshold, op))
        if threshold is not None and _holds(op, peak, threshold):
            crossed = True
    if not measured:
        return (
            "unknown",
            "no metrics in the journal for this run (no trigger evidence, no metric checks)",
        )
    end = timing.restored_at or as_of
    exposure = facts.seconds(timing.condition_started_at, end) if fired else None
    error_peaks = [peak for name, peak, _, _ in measured if "error" in name.lower()]
    parts = [
        f"{name} peaked at {_fmt(name, peak)} (threshold {_fmt(name, t)})"
        for name, peak, t, _ in measured
    ]
    if exposure is not None:
        parts.append(
            f"the bad state lasted about {durations_mod.format_duration(exposure)} "
            f"(condition first seen {_clock(timing.condition_started_at)} to "
            f"{'restored' if timing.restored_at else 'this document'} {_clock(end)})"
        )
    basis = "; ".join(parts)
    if not fired and not crossed:
        return "none", "estimated from the run's metric checks: " + basis
    major = any(p >= MAJOR_ERROR_RATE for p in error_peaks) or (
        exposure is not None and exposure >= MAJOR_EXPOSURE
    )
    return ("major" if major else "minor"), "estimated from the journalled metrics: " + basis


def _rule_meta(run: journal.RunRecord, name: str) -> tuple[float | None, str, float | None] | None:
    """(threshold, op, value at detection) of rule ``name`` from the run's evidence."""
    evidence = facts.trigger(run) or {}
    for group in ("rules", "all_rules"):
        for entry in evidence.get(group) or []:
            if isinstance(entry, dict) and entry.get("name") == name:
                return (
                    facts.finite(entry.get("threshold")),
                    str(entry.get("op", ">")),
                    facts.finite(entry.get("value")),
                )
    past = facts.history_rules(run).get(name)
    if past is not None:
        return facts.finite(past.get("threshold")), str(past.get("op", ">")), None
    for step in run.steps:
        metrics = step.evidence.get("metrics")
        if isinstance(metrics, dict) and metrics.get("name") == name:
            return facts.finite(metrics.get("threshold")), str(metrics.get("op", ">")), None
    return None


def _holds(op: str, value: float, threshold: float) -> bool:
    return {
        ">": value > threshold,
        ">=": value >= threshold,
        "<": value < threshold,
        "<=": value <= threshold,
    }.get(op, value != threshold)


def _lessons(
    run: journal.RunRecord, timing: Durations, checks: Sequence[CheckItem], status: str
) -> tuple[list[str], list[str], list[str]]:
    went_well: list[str] = []
    improve: list[str] = []
    actions: list[str] = []
    evidence = facts.trigger(run)
    if evidence is not None and timing.time_to_detect_seconds is not None:
        rules = ", ".join(
            str(r.get("name")) for r in evidence.get("rules") or [] if isinstance(r, dict)
        )
        went_well.append(
            f"Detected automatically ({rules}) "
            f"{durations_mod.format_duration(timing.time_to_detect_seconds)} after the "
            "condition was first seen; the rollback started without waiting for a person."
        )
    restore = timing.time_to_restore_seconds
    if restore is not None and restore < TARGET_SECONDS:
        went_well.append(
            f"Restored and verified in {durations_mod.format_duration(restore)}, within the "
            "5-minute target."
        )
    elif restore is not None:
        improve.append(
            f"Restoration took {durations_mod.format_duration(restore)}, over the 5-minute target."
        )
    for check in checks:
        if check.state == "failed":
            improve.append(f"{check.item}: {check.detail}.")
            actions.append(f"Find and fix why '{check.item}' failed.")
        elif check.state == "not_verified":
            improve.append(f"{check.item} was not verified: {check.detail}.")
            actions.append(f"Make the runbook prove '{check.item}'.")
    if status in ("failed", "interrupted"):
        actions.append(
            f"Finish the run: `crystal-runbook resume {run.id}` once the cause is fixed."
        )
    return went_well, improve, actions


def _fmt(name: str, value: float | None) -> str:
    if value is None:
        return "no value"
    if "error" in name.lower() and abs(value) <= 1:
        return f"{value * 100:.1f} %"
    if any(k in name.lower() for k in ("latency", "p99")):
        return f"{value:.3g} s"
    return f"{value:.4g}"


def _short(value: float | None) -> str:
    return "unknown" if value is None else durations_mod.format_duration(value)


def _clock(at: str | None) -> str:
    return f"{at[11:19]} UTC" if at and len(at) >= 19 else "unknown"
