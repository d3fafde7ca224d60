"""The source checklist's rollback verification, item by item, proved from the journal.

The checklist says: legacy mode active; performance restored; errors ceased; users notified;
incident documented; and "Rollback time < 5 minutes". Each item is ``passed`` only when a
journalled step proves it (with the value it saw), ``failed`` when the step meant to prove it
failed, and ``not_verified`` (saying why) when nothing in the run looked.
"""

from __future__ import annotations

from collections.abc import Sequence

from crystal_runbook.engine import journal
from crystal_runbook.incident import facts
from crystal_runbook.incident.model import TARGET_SECONDS, CheckItem

LEGACY = ("CRYSTAL_MODE", "legacy")


def items(
    run: journal.RunRecord,
    text: facts.RunbookText,
    *,
    document: str,
    restore_seconds: float | None,
) -> list[CheckItem]:
    """The checklist for ``run``; ``document`` is the Markdown path being written."""
    return [
        legacy_mode(run, text),
        _metric(
            run,
            text,
            "Performance restored",
            ("latency", "p99", "performance"),
            what="p99 latency",
            unit="s",
        ),
        _metric(run, text, "Errors ceased", ("error",), what="error rate", unit="%"),
        *_health(run),
        users_notified(run),
        CheckItem("Incident documented", "passed", f"this document: {document}"),
        _rollback_time(restore_seconds),
    ]


def legacy_mode(run: journal.RunRecord, text: facts.RunbookText) -> CheckItem:
    """`CRYSTAL_MODE=legacy` in the rolled-back template, confirmed by a `k8s.set_env` step."""
    item = "Legacy mode active"
    undo = facts.rollback_step(run)
    setters = [
        s
        for s in facts.main_steps(run)
        if s.uses == "k8s.set_env"
        and facts.as_mapping(text.withs.get(s.id, {}).get("env")).get(LEGACY[0]) == LEGACY[1]
    ]
    failed = [s for s in ([undo] if undo else []) + setters if s.status == "failed"]
    if failed:
        step = failed[0]
        return CheckItem(item, "failed", f"step {step.id} failed: {step.error}", step.id)
    proofs: list[str] = []
    proved_by: str | None = None
    if undo is not None and undo.status == "ok":
        to_env = facts.as_mapping(undo.outputs.get("to_env"))
        if to_env.get(LEGACY[0]) == LEGACY[1]:
            revision = undo.outputs.get("to_revision")
            proofs.append(
                f"CRYSTAL_MODE=legacy in the template of revision {revision} that step "
                f"{undo.id} rolled out (rollout complete)"
            )
            proved_by = undo.id
    for step in setters:
        if step.status == "ok":
            how = "set" if step.changed else "already set, checked"
            proofs.append(f"step {step.id}: CRYSTAL_MODE=legacy {how} at {_clock(step.ended_at)}")
            proved_by = proved_by or step.id
    if proofs:
        return CheckItem(item, "passed", "; ".join(proofs), proved_by)
    return CheckItem(item, "not_verified", "no step of this run set or checked CRYSTAL_MODE=legacy")


def _metric(
    run: journal.RunRecord,
    text: facts.RunbookText,
    item: str,
    keywords: Sequence[str],
    *,
    what: str,
    unit: str,
) -> CheckItem:
    steps = [
        s
        for s in facts.main_steps(run)
        if s.uses == "metrics.check"
        and any(k in (text.rule_of(s) or s.id).lower() for k in keywords)
    ]
    if not steps:
        return CheckItem(
            item, "not_verified", f"no metrics.check step of this run checks the {what}"
        )
    for step in steps:
        if step.status == "failed":
            return CheckItem(item, "failed", f"step {step.id} failed: {step.error}", step.id)
    done = [s for s in steps if s.status == "ok"]
    if done:
        step = done[-1]
        rule = text.rule_of(step) or step.id
        value = facts.finite(step.outputs.get("value"))
        threshold = facts.finite(step.outputs.get("threshold"))
        return CheckItem(
            item,
            "passed",
            f"{what} {_value(value, unit)} (rule {rule}, threshold {_value(threshold, unit)}) "
            f"at {_clock(step.ended_at)}, step {step.id}",
            step.id,
        )
    skipped = [s for s in steps if s.status == "skipped"]
    if skipped:
        return CheckItem(
            item,
            "not_verified",
            f"step {skipped[0].id} was skipped (its `when` was false: no metrics source "
            "for this environment)",
            skipped[0].id,
        )
    return CheckItem(item, "not_verified", f"step {steps[0].id} has not run", steps[0].id)


def _health(run: journal.RunRecord) -> list[CheckItem]:
    out = []
    for step in facts.main_steps(run):
        if step.uses != "http.health":
            continue
        if step.status == "ok":
            status = step.outputs.get("status")
            latency = step.outputs.get("latency_ms")
            out.append(
                CheckItem(
                    "Health endpoint answers",
                    "passed",
                    f"HTTP {status} in {latency} ms at {_clock(step.ended_at)}, step {step.id}",
                    step.id,
                )
            )
        elif step.status == "failed":
            out.append(
                CheckItem(
                    "Health endpoint answers",
                    "failed",
                    f"step {step.id} failed: {step.error}",
                    step.id,
                )
            )
    return out


def users_notified(run: journal.RunRecord) -> CheckItem:
    """Read from the run's `slack.notify` steps (permalink, or the outbox entry)."""
    item = "Users notified"
    sent = facts.notifications(run)
    if not sent:
        return CheckItem(item, "not_verified", "not notified (no slack.notify step)")
    delivered = [
        (s, where)
        for s, where in sent
        if s.status == "ok"
        and where
        and not s.outputs.get("error")
        and not s.outputs.get("pending")
    ]
    undelivered = [s for s, _ in sent if s.status == "ok" and s.outputs.get("error")]
    pending = [s for s, _ in sent if s.status == "ok" and s.outputs.get("pending")]
    failed = [s for s, _ in sent if s.status == "failed"]
    if delivered:
        detail = "; ".join(f"step {s.id}: {where}" for s, where in delivered)
        if failed:
            detail += "; " + "; ".join(f"step {s.id} failed: {s.error}" for s in failed)
        return CheckItem(item, "passed", detail, delivered[0][0].id)
    if failed:
        return CheckItem(
            item, "failed", f"step {failed[0].id} failed: {failed[0].error}", failed[0].id
        )
    if undelivered:
        first_step = undelivered[0]
        kept = first_step.outputs.get("outbox")
        waits = (
            f"the message waits in {kept} (`crystal-runbook outbox flush` delivers it)"
            if kept
            else "the message was printed on the console only"
        )
        return CheckItem(
            item,
            "failed",
            f"step {first_step.id}: Slack delivery failed ({first_step.outputs['error']}); "
            + waits,
            first_step.id,
        )
    if pending:
        first_step = pending[0]
        return CheckItem(
            item,
            "not_verified",
            f"step {first_step.id}: still being delivered when this document was written "
            f"({first_step.outputs['pending']}); `crystal-runbook runs show {run.id}` and "
            "`crystal-runbook outbox` tell whether it arrived",
            first_step.id,
        )
    return CheckItem(
        item,
        "not_verified",
        "slack.notify step(s) "
        + ", ".join(f"{s.id} ({s.status})" for s, _ in sent)
        + " recorded no permalink or outbox entry",
        sent[0][0].id,
    )


def _rollback_time(restore_seconds: float | None) -> CheckItem:
    item = "Rollback time < 5 minutes"
    if restore_seconds is None:
        return CheckItem(item, "not_verified", "the service was not verified restored in this run")
    if restore_seconds < TARGET_SECONDS:
        return CheckItem(item, "passed", f"restored in {_seconds(restore_seconds)}")
    return CheckItem(
        item,
        "failed",
        f"restored in {_seconds(restore_seconds)}, "
        f"{_seconds(restore_seconds - TARGET_SECONDS)} over the target",
    )


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "(no value)"
    if unit == "%":
        return f"{value * 100:.2f} %"
    return f"{value:.3g} {unit}"


def _clock(at: str | None) -> str:
    return f"{at[11:19]} UTC" if at and len(at) >= 19 else "an unknown time"


def _seconds(value: float) -> str:
    from crystal_runbook.engine import durations

    return durations.format_duration(value)
