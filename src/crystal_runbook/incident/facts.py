"""Small readings of journal records shared by the parts of the document.

Which steps restored the service (and when that was done), the step names and rules written
in the journalled runbook text, the trigger evidence kept in the run's metadata, a rule's
values over time and the notifications sent: each is read here once, so the verification
checklist, the durations, the chart and the summary agree on what happened.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import yaml

from crystal_runbook.engine import journal

ROLLBACK_USES = "k8s.rollout_undo"
RESTORING_USES = frozenset(
    {
        "k8s.rollout_undo",
        "k8s.set_env",
        "k8s.rollout_status",
        "http.health",
        "metrics.check",
        "sql.check",
    }
)
"""Steps that roll back and prove the service is back: the rollback's restoration block."""
NEUTRAL_USES = frozenset({"slack.notify", "wait", "approval"})
"""Steps that may sit inside the restoration block without belonging to it."""
DOCUMENT_USES = "incident.write"
NOTIFY_USES = "slack.notify"
DONE = frozenset({"ok", "skipped"})


def parse(text: str | None) -> datetime | None:
    """A journal timestamp as an aware datetime (None stays None)."""
    return None if not text else journal.parse_iso(text)


def seconds(start: str | None, end: str | None) -> float | None:
    """Seconds from ``start`` to ``end`` (journal timestamps), None if either is unknown."""
    a, b = parse(start), parse(end)
    if a is None or b is None:
        return None
    return round((b - a).total_seconds(), 3)


def finite(value: Any) -> float | None:
    """A number that JSON can carry, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return None if math.isnan(number) or math.isinf(number) else number


_SAFE_LOADER: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader when PyYAML has it (the pure-Python one is ten times slower)."""


@functools.lru_cache(maxsize=8)
def _parsed(text: str) -> Any:
    """A journalled runbook text, parsed once per process (a run's document is built twice:
    by the check and by the apply of `incident.write`). Callers only read it."""
    return yaml.load(text, Loader=_SAFE_LOADER)  # noqa: S506 - a safe loader, C or Python  # nosec B506


def main_steps(run: journal.RunRecord) -> list[journal.StepRecord]:
    return [s for s in run.steps if s.phase == "main"]


@dataclass(frozen=True)
class RunbookText:
    """What the journalled runbook text says about each step: its name and `with:`."""

    names: dict[str, str]
    withs: dict[str, dict[str, Any]]

    @classmethod
    def of(cls, run: journal.RunRecord) -> RunbookText:
        try:
            data = _parsed(run.runbook_text or "") or {}
        except yaml.YAMLError:
            data = {}
        names: dict[str, str] = {}
        withs: dict[str, dict[str, Any]] = {}
        if isinstance(data, dict):
            for group in ("steps", "on_failure"):
                for i, step in enumerate(data.get(group) or []):
                    if not isinstance(step, dict):
                        continue
                    sid = str(step.get("id") or f"on_failure-{i + 1}")
                    if isinstance(step.get("name"), str):
                        names.setdefault(sid, step["name"])
                    if isinstance(step.get("with"), dict):
                        withs.setdefault(sid, step["with"])
        return cls(names, withs)

    def rule_of(self, step: journal.StepRecord) -> str | None:
        """The rule a `metrics.check` step checks: its output, else its literal `with.rule`."""
        found = step.outputs.get("rule")
        if isinstance(found, str):
            return found
        literal = self.withs.get(step.id, {}).get("rule")
        return literal if isinstance(literal, str) and "{" not in literal else None


def restoration(run: journal.RunRecord) -> list[journal.StepRecord]:
    """The steps that roll the service back and prove it is back.

    From the first `k8s.rollout_undo` on, every restoring step up to the first step of
    another kind (a drill's restore, the document itself); notices and waits in between are
    passed over. A run without a rollback step: all its main steps but notices and documents.
    """
    steps = main_steps(run)
    start = next((i for i, s in enumerate(steps) if s.uses == ROLLBACK_USES), None)
    if start is None:
        return [s for s in steps if s.uses not in NEUTRAL_USES and s.uses != DOCUMENT_USES]
    block = [steps[start]]
    for step in steps[start + 1 :]:
        if step.uses in NEUTRAL_USES:
            continue
        if step.uses not in RESTORING_USES or step.uses == ROLLBACK_USES:
            break
        block.append(step)
    return block


def restored_at(block: Sequence[journal.StepRecord]) -> str | None:
    """When the last restoring step ended, if every one of them is done (ok or skipped)."""
    if not block or any(s.status not in DONE for s in block):
        return None
    ends = [s.ended_at for s in block if s.ended_at]
    return max(ends) if ends else None


def rollback_step(run: journal.RunRecord) -> journal.StepRecord | None:
    return next((s for s in main_steps(run) if s.uses == ROLLBACK_USES), None)


def trigger(run: journal.RunRecord) -> dict[str, Any] | None:
    """The evidence `watch` journalled when it started this run, if it did."""
    found = run.meta.get("trigger")
    return found if isinstance(found, dict) else None


def points(history: Any) -> list[tuple[str, float | None]]:
    """``[[iso, value], ...]`` from the journal as (iso, value) pairs, bad entries dropped."""
    out: list[tuple[str, float | None]] = []
    for item in history if isinstance(history, list) else []:
        if isinstance(item, list | tuple) and len(item) == 2 and isinstance(item[0], str):
            out.append((item[0], finite(item[1])))
    return out


def holds(op: str, value: float, threshold: float) -> bool:
    """``value op threshold`` for a rule's comparison."""
    return {
        ">": value > threshold,
        ">=": value >= threshold,
        "<": value < threshold,
        "<=": value <= threshold,
    }.get(op, value != threshold)


def history(run: journal.RunRecord) -> Mapping[str, Any]:
    """The rules' values before a manual rollback, as its `incident.write` step read them
    from the metrics source: ``{since, until, release_at, rules: {name: {op, threshold,
    points}}}`` (empty when there are none)."""
    return as_mapping(run.meta.get("history"))


def history_rules(run: journal.RunRecord) -> Mapping[str, Mapping[str, Any]]:
    return {
        str(name): entry
        for name, entry in as_mapping(history(run).get("rules")).items()
        if isinstance(entry, Mapping)
    }


def rule_series(run: journal.RunRecord, rule: str) -> list[tuple[str, float | None]]:
    """Every value of ``rule`` the journal holds: the trigger's window (or, for a manual
    rollback, the history read from the metrics source), then verification."""
    found: dict[str, float | None] = {}
    evidence = trigger(run) or {}
    for entry in evidence.get("rules") or []:
        if isinstance(entry, dict) and entry.get("name") == rule:
            found.update(points(entry.get("history")))
    found.update(points(as_mapping(history_rules(run).get(rule)).get("points")))
    for step in run.steps:
        metrics = step.evidence.get("metrics")
        if isinstance(metrics, dict) and metrics.get("name") == rule:
            found.update(points(metrics.get("history")))
    return sorted(found.items(), key=lambda p: p[0])


def notifications(run: journal.RunRecord) -> list[tuple[journal.StepRecord, str | None]]:
    """Each `slack.notify` step with where its message went (permalink, channel or outbox),
    and the permalink of the file it shared, if any."""
    out: list[tuple[journal.StepRecord, str | None]] = []
    for step in run.steps:
        if step.uses != NOTIFY_USES:
            continue
        outputs = step.outputs
        where: str | None = None
        if outputs.get("permalink"):
            where = str(outputs["permalink"])
        elif outputs.get("channel") and outputs.get("ts"):
            where = f"Slack {outputs['channel']} (ts {outputs['ts']})"
        elif outputs.get("outbox"):
            where = f"outbox entry {outputs['outbox']}"
        if where and outputs.get("file_permalink"):
            where += f" (file: {outputs['file_permalink']})"
        out.append((step, where))
    return out


def resumed_by(message: str) -> str | None:
    """The actor of a `resumed by X` run event (the journal keeps it in the message)."""
    prefix = "resumed by "
    if not message.startswith(prefix):
        return None
    return message[len(prefix) :].strip() or None


def first(items: Iterable[Any]) -> Any:
    return next(iter(items), None)


def text(value: Any) -> str:
    return "" if value is None else str(value)


def as_mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
