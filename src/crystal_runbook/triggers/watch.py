"""The loop behind `crystal-runbook watch`: evaluate every interval, act on what fires.

Each tick evaluates every rule at a scheduled time (``start + k * interval``, as Prometheus
schedules rule groups, so ``for: 10s`` at ``interval: 1s`` fires on the eleventh look, not
"somewhere after ten seconds"), announces state changes, and acts:

- a rule with ``action: rollback`` fires and auto-rollback is on: one rollback runs through
  the service layer with the rule and its evidence as reason and run metadata. That opens an
  *incident*; while it is open no other rollback starts, whatever fires (the windows of a
  rate still hold the bad minutes after a good rollback, and a second `rollout undo` would
  bring the bad release back). It closes once every rollback rule is clear and ``cooldown``
  has passed since the rollback started. One incident, one rollback.
- ``action: approve``: a person is asked (in a terminal) before the rollback; elsewhere it is
  announced as needing approval. ``action: notify``, or auto-rollback off: announced only.
- a rule turning ``no_data`` or ``error`` is announced as loudly as a firing one.

Rule windows and the open incident are saved after every tick (``store``), before a rollback
starts too, so a crash or restart can never produce a second rollback for the same incident.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from crystal_runbook.triggers import store
from crystal_runbook.triggers.evaluator import Evaluator, Report, RuleReport, iso

MAX_REASON = 1000
"""The rollback runbook's `reason` parameter limit (the source checklist's input limit)."""


@dataclass(frozen=True)
class WatchSettings:
    """How `watch` paces itself and when it may act."""

    interval: float = 15.0
    """Seconds between evaluations. Prometheus' usual evaluation interval; with `for:` windows
    of minutes, 15 s adds at most 15 s to detection. Use 1 s for fast sandboxes and tests."""
    auto_rollback: bool = False
    """Run the rollback runbook when a rollback rule fires. Off by default: an automatic
    production change is opted into (`--auto-rollback`), never assumed."""
    cooldown: float = 600.0
    """Seconds after a rollback starts before another incident may start another rollback.
    Ten minutes covers a rollout plus the longest shipped window (5 min) clearing."""
    state_ttl: float = 300.0
    """Saved rule windows older than this are not trusted after a restart: the condition
    may have cleared while nobody was looking. Five minutes lets a cron `watch --once` every
    minute (or a quick restart) keep its pending windows."""


@dataclass(frozen=True)
class RollbackAttempt:
    """What starting the rollback runbook gave."""

    run_id: str | None
    status: str
    """``ok``, ``failed``, ``interrupted`` (a run) or ``refused`` (it could not start)."""
    error: str | None = None


@dataclass(frozen=True)
class Notice:
    """Something a person should hear about: a rule firing, data missing, a rollback."""

    level: Literal["info", "warning", "critical"]
    message: str
    rule: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


Rollback = Callable[[str, dict[str, Any]], RollbackAttempt]
"""Runs the rollback runbook: ``(reason, evidence) -> attempt`` (the service layer's)."""

ACTING = ("rollback", "approve")


def reason_for(report: Report, rules: list[RuleReport]) -> str:
    """The rollback's reason: which rules, their values and windows (at most 1000 chars)."""
    parts = []
    for r in rules:
        value = "no data" if r.value is None else f"{r.value:.4g}"
        since = f", holding since {iso(r.active_at)}" if r.active_at else ""
        parts.append(f"{r.name}: {value} ({r.condition}){since}")
    text = f"trigger fired for {report.service} in {report.env}: " + "; ".join(parts)
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"


def evidence_for(
    report: Report, rules: list[RuleReport], settings: WatchSettings
) -> dict[str, Any]:
    """The run metadata of an automatic rollback: what fired, with values over time."""
    return {
        "service": report.service,
        "env": report.env,
        "detected_at": iso(report.at),
        "rules": [r.evidence() for r in rules],
        "all_rules": [r.as_json() for r in report.rules],
        "watch": {"interval_seconds": settings.interval, "auto_rollback": settings.auto_rollback},
    }


class Watcher:
    """Evaluates a service's rules on a schedule and decides what to do about them."""

    def __init__(
        self,
        evaluator: Evaluator,
        *,
        settings: WatchSettings,
        notify: Callable[[Notice], None],
        rollback: Rollback | None = None,
        approve: Callable[[str], bool] | None = None,
        state_path: Path | None = None,
        samples_path: Path | None = None,
        clock: Callable[[], float] = time.time,
        incident: dict[str, Any] | None = None,
    ) -> None:
        self.evaluator = evaluator
        self.settings = settings
        self.notify = notify
        self.rollback = rollback
        self.approve = approve
        self.state_path = state_path
        self.samples_path = samples_path
        """Where the latest samples are kept for the next process (``store.samples_path``)."""
        self.clock = clock
        self.incident: dict[str, Any] | None = incident
        """The open incident (its rollback); given by the caller when another process
        opened it (`serve`'s previous leader, from the journal), else from the saved state."""
        self.rollbacks: list[RollbackAttempt] = []
        self._previous: dict[str, str] = {}
        self._new_firing: set[str] = set()

    # -- start --------------------------------------------------------------------------------

    def start(self) -> None:
        """Take back recent saved state, then fill windows from sources with a past."""
        now = self.clock()
        if self.state_path is not None:
            saved = store.load(self.state_path)
            rules_data = saved.get("rules")
            if isinstance(rules_data, dict):
                self.evaluator.restore(rules_data, now=now, max_age=self.settings.state_ttl)
            incident = saved.get("incident")
            if isinstance(incident, dict):
                self.incident = incident
        if self.samples_path is not None:
            recent = store.load(self.samples_path).get("targets")
            if isinstance(recent, dict):
                self.evaluator.load_samples(recent, now=now)
        seeded = self.evaluator.seed(now, self.settings.interval)
        if seeded:
            self.notify(
                Notice(
                    "info",
                    f"windows of {', '.join(seeded)} filled from Prometheus' history",
                )
            )

    # -- the loop -----------------------------------------------------------------------------

    def run(
        self,
        *,
        once: bool = False,
        stop: threading.Event | None = None,
        on_report: Callable[[Report], None] = lambda _r: None,
    ) -> Report:
        """Evaluate until ``stop`` is set (or once); returns the last report."""
        stop = stop or threading.Event()
        self.start()
        scheduled = self.clock()
        while True:
            report = self.tick(scheduled)
            on_report(report)
            if once or stop.is_set():
                return report
            scheduled += self.settings.interval
            now = self.clock()
            if scheduled < now:  # a slow evaluation or a rollback: skip missed ticks
                missed = int((now - scheduled) // self.settings.interval) + 1
                scheduled += missed * self.settings.interval
            if stop.wait(max(0.0, scheduled - self.clock())):
                return report

    def tick(self, at: float) -> Report:
        """One evaluation at scheduled time ``at``, its announcements and actions."""
        report = self.evaluator.evaluate(at)
        self._announce(report)
        self._act(report)
        self._save()
        return report

    # -- announcements ------------------------------------------------------------------------

    def _announce(self, report: Report) -> None:
        self._new_firing = set()
        for r in report.rules:
            before = self._previous.get(r.name)
            self._previous[r.name] = r.state
            if r.state == before:
                continue
            where = f"{report.service}/{report.env}"
            if r.state == "firing":
                self._new_firing.add(r.name)
                self.notify(
                    Notice(
                        "critical",
                        f"FIRING {r.name} ({where}, {r.severity}, action {r.action}): "
                        f"{_value(r)} — {r.condition}",
                        r.name,
                        r.evidence(),
                    )
                )
            elif r.state in ("no_data", "error"):
                self.notify(
                    Notice(
                        "warning",
                        f"{r.state.upper().replace('_', ' ')} {r.name} ({where}): {r.message}"
                        " — this rule cannot see the service; it is not healthy",
                        r.name,
                    )
                )
            elif before == "firing" and r.state == "inactive":
                self.notify(Notice("info", f"resolved {r.name} ({where}): {_value(r)}", r.name))

    # -- actions ------------------------------------------------------------------------------

    def _act(self, report: Report) -> None:
        acting = [r for r in report.firing if r.action in ACTING]
        if self.incident is not None:
            self._maybe_close(report)
            return
        if not acting:
            return
        if not self.settings.auto_rollback:
            if any(r.name in self._new_firing for r in acting):
                self.notify(
                    Notice(
                        "critical",
                        f"rollback rule(s) firing for {report.service} in {report.env}: "
                        f"{', '.join(r.name for r in acting)}; auto-rollback is off "
                        f"(run `crystal-runbook rollback {report.service} --env {report.env}`"
                        " or watch with --auto-rollback)",
                    )
                )
            return
        if all(r.action == "approve" for r in acting):
            question = (
                f"{', '.join(r.name for r in acting)} firing for {report.service} in "
                f"{report.env}. Roll back now?"
            )
            if self.approve is None or not self.approve(question):
                self.notify(
                    Notice("critical", f"rollback needs approval: {question} (not approved)")
                )
                self._open_incident(report, acting, approved=False)
                return
        self._start_rollback(report, acting)

    def _open_incident(self, report: Report, acting: list[RuleReport], *, approved: bool) -> None:
        self.incident = {
            "opened_at": report.at,
            "rules": [r.name for r in acting],
            "rollback": None,
            "approved": approved,
        }
        self._save()

    def _start_rollback(self, report: Report, acting: list[RuleReport]) -> None:
        reason = reason_for(report, acting)
        evidence = evidence_for(report, acting, self.settings)
        self._open_incident(report, acting, approved=True)
        self.notify(Notice("critical", f"starting rollback: {reason}", data=evidence))
        if self.rollback is None:
            attempt = RollbackAttempt(None, "refused", "no rollback runner configured")
        else:
            attempt = self.rollback(reason, evidence)
        self.rollbacks.append(attempt)
        self.incident = {
            **(self.incident or {}),
            "rollback": {
                "run_id": attempt.run_id,
                "status": attempt.status,
                "error": attempt.error,
            },
        }
        self._save()
        outcome = {"rollback": {"run_id": attempt.run_id, "status": attempt.status}}
        if attempt.status == "ok":
            self.notify(
                Notice("info", f"rollback run {attempt.run_id} finished ok", data=outcome)
            )
        else:
            self.notify(
                Notice(
                    "critical",
                    f"rollback {attempt.status}"
                    + (f" (run {attempt.run_id})" if attempt.run_id else "")
                    + f": {attempt.error or 'see the run'}; not retried automatically in this "
                    "incident",
                    data=outcome,
                )
            )

    def _maybe_close(self, report: Report) -> None:
        incident = self.incident or {}
        acting_rules = [r for r in report.rules if r.action in ACTING]
        clear = all(r.state == "inactive" for r in acting_rules)
        opened = float(incident.get("opened_at") or 0.0)
        if clear and report.at - opened >= self.settings.cooldown:
            self.notify(
                Notice(
                    "info",
                    f"incident closed for {report.service} in {report.env}: rollback rules "
                    "clear and the cooldown has passed",
                )
            )
            self.incident = None

    def _save(self) -> None:
        if self.samples_path is not None:
            recent = self.evaluator.dump_samples()
            if recent:
                store.save(self.samples_path, {"targets": recent})
        if self.state_path is None:
            return
        store.save(
            self.state_path,
            {"rules": self.evaluator.dump(), "incident": self.incident, "saved_at": self.clock()},
        )


def _value(r: RuleReport) -> str:
    return "no value" if r.value is None else f"value {r.value:.4g}"
