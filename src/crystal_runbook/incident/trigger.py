"""What started the run, and how severe it was: the trigger section of a document.

An automatic rollback journals the watch's evidence (each fired rule with its history and
the other rules' states) in the run's ``meta``; a manual one has only its actor and reason.
Both become one ``model.Trigger``, which the timeline, title and summary read.
"""

from __future__ import annotations

from crystal_runbook.engine import journal
from crystal_runbook.incident import facts
from crystal_runbook.incident.model import OtherRule, RuleEvidence, Sample, Severity, Trigger

SEVERITY_ORDER = ("info", "warning", "critical")


def trigger(run: journal.RunRecord) -> Trigger:
    """What started the run: the watch's evidence (automatic) or its actor and reason."""
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


def severity(run: journal.RunRecord, trig: Trigger) -> Severity:
    """The highest severity among the fired rules (a drill has none)."""
    if run.drill:
        return "none"
    levels = [r.severity for r in trig.rules if r.severity in SEVERITY_ORDER]
    if not levels:
        return "unassessed"
    top = max(levels, key=SEVERITY_ORDER.index)
    return "critical" if top == "critical" else "warning" if top == "warning" else "info"
