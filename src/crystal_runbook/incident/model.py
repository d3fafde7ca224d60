"""The incident document as plain values.

One frozen dataclass per part of the document. ``Document.as_json()`` is the JSON document
(`docs/incident-schema.json` describes it; a test validates against it) and the Markdown
template reads the same values, so the two formats can never disagree.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

SCHEMA = "crystal-runbook/incident/v1"
TARGET_SECONDS = 300.0
"""The source checklist's "Rollback time < 5 minutes"."""

Status = Literal["resolved", "failed", "interrupted", "in_progress"]
Severity = Literal["critical", "warning", "info", "none", "unassessed"]
CheckState = Literal["passed", "failed", "not_verified"]
Impact = Literal["none", "minor", "major", "unknown"]
Verdict = Literal["pass", "fail", "in_progress"]


@dataclass(frozen=True)
class Sample:
    """One observed value of a metric."""

    at: str
    value: float | None


@dataclass(frozen=True)
class RuleEvidence:
    """A trigger rule that fired, with what it saw (from the run's `meta.trigger`)."""

    name: str
    description: str
    query: str
    op: str
    threshold: float
    for_seconds: float
    kind: str
    severity: str
    state: str
    value: float | None
    pending_since: str | None
    firing_since: str | None
    defined_at: str
    observed: list[Sample] = field(default_factory=list)


@dataclass(frozen=True)
class OtherRule:
    """Another rule of the service at the moment of detection."""

    name: str
    state: str
    value: float | None
    threshold: float | None
    op: str


@dataclass(frozen=True)
class Trigger:
    """Why the run started: a rule's evidence (automatic) or a person's reason (manual)."""

    kind: Literal["automatic", "manual"]
    reason: str
    actor: str
    detected_at: str | None
    rules: list[RuleEvidence] = field(default_factory=list)
    other_rules: list[OtherRule] = field(default_factory=list)


@dataclass(frozen=True)
class TimelineRow:
    """One journalled transition (or a trigger moment), in time order."""

    at: str
    step: str
    transition: str
    detail: str
    who: str


@dataclass(frozen=True)
class StepRow:
    """One step of the run as the journal left it."""

    id: str
    name: str
    uses: str
    phase: str
    status: str
    changed: bool | None
    attempts: int
    started_at: str | None
    ended_at: str | None
    duration_seconds: float | None
    summary: str
    error: str | None


@dataclass(frozen=True)
class ChangeRow:
    """One field a step changed, before and after (secret values masked)."""

    step: str
    field: str
    before: Any
    after: Any


@dataclass(frozen=True)
class CheckItem:
    """One item of the checklist's rollback verification."""

    item: str
    state: CheckState
    detail: str
    step: str | None = None


@dataclass(frozen=True)
class Durations:
    """How long detection, the start and the restoration took (seconds; None: unknown)."""

    target_seconds: float
    condition_started_at: str | None
    detected_at: str | None
    rollback_started_at: str
    restored_at: str | None
    time_to_detect_seconds: float | None
    time_to_start_seconds: float | None
    time_to_restore_seconds: float | None
    total_seconds: float | None
    within_target: bool | None
    note: str


@dataclass(frozen=True)
class Review:
    """The source checklist's post-launch review fields, filled where the journal knows."""

    deployment_duration_minutes: float | None
    deployment_duration_note: str
    rollback_required: bool | None
    rollback_required_note: str
    incidents_during_deployment: int | None
    incidents_note: str
    time_to_stability_minutes: float | None
    time_to_stability_note: str
    user_impact: Impact
    user_impact_basis: str
    went_well: list[str] = field(default_factory=list)
    could_improve: list[str] = field(default_factory=list)
    action_items: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Failure:
    """Where a failed or interrupted run stopped and what it left behind."""

    step: str
    uses: str
    error: str
    transition: str
    change_applied: bool
    state_left_behind: list[str]
    next_step: str


@dataclass(frozen=True)
class DrillPhase:
    """A phase of a drill (consecutive steps with one purpose) and its timing."""

    phase: str
    steps: list[str]
    started_at: str | None
    ended_at: str | None
    duration_seconds: float | None
    status: str


@dataclass(frozen=True)
class DrillAnomaly:
    """Something a drill saw that was not as it should be, even when the drill passed."""

    kind: Literal["pod_not_ready", "trigger_fired", "verification_retry"]
    step: str | None
    detail: str


@dataclass(frozen=True)
class DrillBaseline:
    """What the drill recorded before it rolled back (and restored afterwards)."""

    revision: int | None
    images: list[str]
    replicas: int | None
    crystal_mode: str | None
    replicaset: str | None


@dataclass(frozen=True)
class DrillReport:
    """What a drill run (`run.drill`) adds: phases, figures against the target, the verdict."""

    verdict: Verdict
    failed_phase: str | None
    phases: list[DrillPhase]
    total_seconds: float | None
    rollback_seconds: float | None
    """The rollback phase, from its start to verified (the checklist's rollback time)."""
    restore_seconds: float | None
    """The restore of the baseline, from its start to verified."""
    target_seconds: float
    within_target: bool | None
    """Whether the rollback took less than the target."""
    restore_within_target: bool | None
    rollback_requests: int | None
    """Kubernetes API requests of the rollback phase (None: no step counted them)."""
    restore_requests: int | None
    baseline: DrillBaseline | None
    restored: bool | None
    """Whether the baseline's restore was verified (None: no baseline was recorded)."""
    anomalies: list[DrillAnomaly] = field(default_factory=list)


@dataclass(frozen=True)
class Chart:
    """The chart of the trigger metric: its file, or why there is none."""

    path: str | None
    rule: str | None
    points: int
    reason: str


@dataclass(frozen=True)
class Links:
    """Where to look next."""

    run_id: str
    show_command: str
    dashboards: dict[str, str]
    notifications: list[str]
    markdown: str
    json: str


@dataclass(frozen=True)
class Document:
    """The whole incident document (or drill report) of one run."""

    run_id: str
    runbook: str
    service: str | None
    env: str
    actor: str
    drill: bool
    title: str
    status: Status
    severity: Severity
    summary: str
    as_of: str
    started_at: str
    ended_at: str | None
    trigger: Trigger
    timeline: list[TimelineRow]
    steps: list[StepRow]
    changes: list[ChangeRow]
    verification: list[CheckItem]
    durations: Durations
    review: Review
    failure: Failure | None
    drill_report: DrillReport | None
    chart: Chart
    links: Links
    schema: str = SCHEMA

    def as_json(self) -> dict[str, Any]:
        """The JSON document (`docs/incident-schema.json`)."""
        data = dataclasses.asdict(self)
        return {"schema": data.pop("schema"), **data}
