"""The drill report: what a rollback drill's journal says about each phase, and the verdict.

A drill (`runbooks/drill.yaml`, a run with ``drill: true``) has four phases, found by the
actions its steps use rather than by their ids, so a team's own drill runbook gets the same
report:

- **baseline**: up to and including the first `k8s.baseline` step;
- **rollback**: from there to the step before the first `k8s.restore` (rollback.yaml's steps:
  the announcement, the undo in legacy mode and its verification);
- **restore**: from `k8s.restore` up to the first notice or document;
- **report**: the rest (the outcome in Slack, the document).

When a phase fails, the runbook's `on_failure` steps restore the baseline: those steps form
the phases "restore after failure" and "report after failure".

The figures: each phase's duration; the rollback time (the rollback phase, start to
verified: what the checklist's "rollback time < 5 minutes" is about) and the restore time,
each against the 5-minute target; the Kubernetes API requests of the rollback and of the
restore (the `api_requests` evidence every Kubernetes action records); anomalies (a pod that
was not Ready, a trigger rule whose condition held during the drill, a verification that
needed more than one attempt); and the verdict: pass when the baseline was recorded, the
rollback and the restore were verified and the rollback was within the target.

A run without a `k8s.baseline` step (a plain runbook run with ``drill: true``) is reported
the older way: its restoring block is the rollback, the notices and documents the report.
"""

from __future__ import annotations

from collections.abc import Sequence

from crystal_runbook.engine import journal
from crystal_runbook.incident import facts
from crystal_runbook.incident.model import (
    TARGET_SECONDS,
    DrillAnomaly,
    DrillBaseline,
    DrillPhase,
    DrillReport,
    Verdict,
)

BASELINE_USES = "k8s.baseline"
RESTORE_USES = "k8s.restore"
REPORT_USES = frozenset({facts.NOTIFY_USES, facts.DOCUMENT_USES})
REQUESTS = "api_requests"
"""Evidence key of the Kubernetes actions' request counts (actions/kubernetes/_common.py)."""
WRITING = "writing"
STOPPED = ("failed", "refused", "interrupted")
"""Phase statuses that end a drill: a step failed, a check refused before any change (the
engine's preflight), or the run was interrupted."""
_OTHER_RESTORING = facts.RESTORING_USES | {"k8s.set_image", "k8s.scale"}
_CONDITIONS = {
    ">": lambda v, t: v > t,
    ">=": lambda v, t: v >= t,
    "<": lambda v, t: v < t,
    "<=": lambda v, t: v <= t,
    "==": lambda v, t: v == t,
    "!=": lambda v, t: v != t,
}


def report(
    run: journal.RunRecord,
    events: Sequence[journal.EventRecord],
    *,
    as_of: str,
    rollback_seconds: float | None = None,
) -> DrillReport:
    """The drill report of ``run`` (its steps as the document sees them).

    Args:
        run: the run, its steps possibly cut at the document's writer (`asof.as_of_writer`).
        events: its events, in journal order.
        as_of: when the document is as of (the end of an unfinished run's total).
        rollback_seconds: the rollback time for runs without a `k8s.baseline` step.
    """
    main = facts.main_steps(run)
    labels = _phase_labels(main)
    if labels is None:
        return _legacy(run, main, rollback_seconds, as_of)
    phases = _group(list(zip(labels, main, strict=True)))
    failure = [s for s in run.steps if s.phase == "on_failure"]
    phases += _group([(_failure_label(s), s) for s in failure])
    by_name = {p.phase: p for p in phases}
    ran = {s.id for s in run.steps if s.status not in ("skipped", "pending")}
    rollback = by_name.get("rollback")
    restore = _restore_phase(by_name, ran)
    rollback_time = rollback.duration_seconds if rollback is not None else None
    restore_time = restore.duration_seconds if restore is not None else None
    baseline = by_name.get("baseline")
    restored = (
        None
        if restore is None or baseline is None or baseline.status != "ok"
        else restore.status == "ok"
    )
    failed = next((p.phase for p in phases if p.status in STOPPED), None)
    verdict = _verdict(by_name, restored, rollback_time)
    return DrillReport(
        verdict=verdict,
        failed_phase=failed,
        phases=phases,
        total_seconds=facts.seconds(run.started_at, run.ended_at or as_of),
        rollback_seconds=rollback_time,
        restore_seconds=restore_time,
        target_seconds=TARGET_SECONDS,
        within_target=None if rollback_time is None else rollback_time < TARGET_SECONDS,
        restore_within_target=None if restore_time is None else restore_time < TARGET_SECONDS,
        rollback_requests=_requests(run, rollback),
        restore_requests=_requests(run, restore),
        baseline=_baseline(main),
        restored=restored,
        anomalies=anomalies(run, events),
    )


def _phase_labels(main: Sequence[journal.StepRecord]) -> list[str] | None:
    base = next((i for i, s in enumerate(main) if s.uses == BASELINE_USES), None)
    if base is None:
        return None
    restore = next(
        (i for i, s in enumerate(main) if i > base and s.uses == RESTORE_USES), len(main)
    )
    labels: list[str] = []
    in_restore = True
    for i, step in enumerate(main):
        if i <= base:
            labels.append("baseline")
        elif i < restore:
            labels.append("rollback")
        else:
            in_restore = in_restore and step.uses not in REPORT_USES
            labels.append("restore" if in_restore else "report")
    return labels


def _failure_label(step: journal.StepRecord) -> str:
    return "report after failure" if step.uses in REPORT_USES else "restore after failure"


def _group(labelled: list[tuple[str, journal.StepRecord]]) -> list[DrillPhase]:
    """Consecutive steps with one label as a phase, timed from its first start to last end."""
    phases: list[DrillPhase] = []
    group: list[journal.StepRecord] = []
    for i, (label, step) in enumerate(labelled):
        group.append(step)
        if i + 1 < len(labelled) and labelled[i + 1][0] == label:
            continue
        starts = [s.started_at for s in group if s.started_at]
        ends = [s.ended_at for s in group if s.ended_at]
        start = min(starts) if starts else None
        end = max(ends) if ends and all(s.status in facts.DONE for s in group) else None
        phases.append(
            DrillPhase(
                phase=label,
                steps=[s.id for s in group],
                started_at=start,
                ended_at=end,
                duration_seconds=facts.seconds(start, end),
                status=_status({s.status for s in group}),
            )
        )
        group = []
    return phases


def _status(statuses: set[str]) -> str:
    if statuses <= facts.DONE:
        return "ok"
    for status in ("failed", "refused", "interrupted", WRITING):
        if status in statuses:
            return status
    return "running" if statuses & {"checking", "applying", "applied", "verifying"} else "pending"


def _restore_phase(
    by_name: dict[str, DrillPhase], ran: set[str]
) -> DrillPhase | None:
    """The restore that counts: the main one if it finished, else the one after a failure
    (when it ran: it is skipped when there is no baseline to restore)."""
    main = by_name.get("restore")
    after = by_name.get("restore after failure")
    if main is not None and main.status == "ok":
        return main
    if after is not None and ran & set(after.steps):
        return after
    return main


def _verdict(
    by_name: dict[str, DrillPhase], restored: bool | None, rollback_time: float | None
) -> Verdict:
    core = [by_name.get(name) for name in ("baseline", "rollback", "restore")]
    if any(p is not None and p.status in STOPPED for p in core):
        return "fail"
    if restored is False or "restore after failure" in by_name:
        return "fail"
    if any(p is None or p.status != "ok" for p in core):
        return "in_progress"
    if rollback_time is None or rollback_time >= TARGET_SECONDS:
        return "fail"
    return "pass"


def _requests(run: journal.RunRecord, phase: DrillPhase | None) -> int | None:
    if phase is None:
        return None
    ids = set(phase.steps)
    counts = [
        s.evidence[REQUESTS]
        for s in run.steps
        if s.id in ids and isinstance(s.evidence.get(REQUESTS), int)
    ]
    return sum(counts) if counts else None


def _baseline(main: Sequence[journal.StepRecord]) -> DrillBaseline | None:
    step = next((s for s in main if s.uses == BASELINE_USES and s.status == "ok"), None)
    if step is None:
        return None
    out = step.outputs
    revision = out.get("revision")
    replicas = out.get("replicas")
    return DrillBaseline(
        revision=revision if isinstance(revision, int) else None,
        images=[str(v) for v in facts.as_mapping(out.get("images")).values()],
        replicas=replicas if isinstance(replicas, int) else None,
        crystal_mode=facts.as_mapping(out.get("env")).get("CRYSTAL_MODE"),
        replicaset=facts.text(out.get("replicaset")) or None,
    )


# -- anomalies ------------------------------------------------------------------------------


def anomalies(
    run: journal.RunRecord, events: Sequence[journal.EventRecord]
) -> list[DrillAnomaly]:
    """Pods not Ready, trigger conditions that held, verifications that needed a retry."""
    found: list[DrillAnomaly] = []
    applies: dict[str, int] = {}
    verifying: set[str] = set()
    for event in events:
        if event.kind != "step" or event.step_id is None:
            continue
        if event.status == "applying":
            applies[event.step_id] = applies.get(event.step_id, 0) + 1
        elif event.status == "verifying":
            verifying.add(event.step_id)
    for step in run.steps:
        if step.status == WRITING:
            continue
        pods = step.evidence.get("pods_not_ready") or step.outputs.get("pods_not_ready")
        if isinstance(pods, list) and pods:
            found.append(
                DrillAnomaly(
                    kind="pod_not_ready",
                    step=step.id,
                    detail=f"not Ready at step {step.id}: {', '.join(map(str, pods[:10]))}",
                )
            )
        held = _condition_held(step)
        if held is not None:
            found.append(DrillAnomaly(kind="trigger_fired", step=step.id, detail=held))
        tries = step.attempts
        if step.id in verifying:
            tries -= max(1, applies.get(step.id, 0))
        if tries > 1 and step.status in facts.DONE | {"failed"}:
            what = "verification" if step.id in verifying else "check"
            found.append(
                DrillAnomaly(
                    kind="verification_retry",
                    step=step.id,
                    detail=f"step {step.id}'s {what} needed {tries} attempts",
                )
            )
    return found


def _condition_held(step: journal.StepRecord) -> str | None:
    """What a `metrics.check` step saw when its rule's condition held at some sample."""
    metrics = step.evidence.get("metrics")
    if not isinstance(metrics, dict):
        return None
    name = facts.text(metrics.get("name")) or "a rule"
    op = facts.text(metrics.get("op"))
    threshold = facts.finite(metrics.get("threshold"))
    if metrics.get("state") in ("pending", "firing"):
        return f"rule {name} was {metrics.get('state')} at step {step.id}"
    test = _CONDITIONS.get(op)
    if test is None or threshold is None or metrics.get("kind") == "trend":
        return None
    for at, value in facts.points(metrics.get("history")):
        if value is not None and test(value, threshold):
            return (
                f"rule {name}'s condition held at {at[11:19]} UTC ({value:.4g} {op} "
                f"{threshold:g}) during step {step.id}"
            )
    return None


# -- runs without a baseline step -----------------------------------------------------------


def _legacy(
    run: journal.RunRecord,
    main: Sequence[journal.StepRecord],
    rollback_seconds: float | None,
    as_of: str,
) -> DrillReport:
    block = {(s.phase, s.index) for s in facts.restoration(run)}
    labelled: list[tuple[str, journal.StepRecord]] = []
    seen_block = False
    for step in main:
        if (step.phase, step.index) in block:
            label, seen_block = "rollback", True
        elif not seen_block:
            label = "prepare"
        elif step.uses in REPORT_USES:
            label = "report"
        elif step.uses in _OTHER_RESTORING:
            label = "restore"
        else:
            label = "other"
        labelled.append((label, step))
    phases = _group(labelled)
    by_name = {p.phase: p for p in phases}
    rollback = by_name.get("rollback")
    failed = next((p.phase for p in phases if p.status in STOPPED), None)
    within = None if rollback_seconds is None else rollback_seconds < TARGET_SECONDS
    verdict: Verdict
    if failed is not None:
        verdict = "fail"
    elif rollback is None or rollback.status != "ok":
        verdict = "in_progress"
    else:
        verdict = "pass" if within else "fail"
    return DrillReport(
        verdict=verdict,
        failed_phase=failed,
        phases=phases,
        total_seconds=facts.seconds(run.started_at, run.ended_at or as_of),
        rollback_seconds=rollback_seconds,
        restore_seconds=None,
        target_seconds=TARGET_SECONDS,
        within_target=within,
        restore_within_target=None,
        rollback_requests=_requests(run, rollback),
        restore_requests=None,
        baseline=None,
        restored=None,
        anomalies=[],
    )
