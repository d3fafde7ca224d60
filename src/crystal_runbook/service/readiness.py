"""`readiness SERVICE`: the checklist's rollback section, each item proved from evidence.

The production-readiness checklist asks that rollback procedures be documented and
practised, that a rollback take under five minutes, that people be told and that incidents be
documented. A tick box proves none of that; this report proves each line from the journal
(drills, rollbacks, their documents), the cluster, the monitoring sources, Slack and the lock
backends, *now*, and says for each line what the evidence is and how old it is:

1. a passing drill within ``max_drill_age`` (7 days);
2. rollback time under 5 minutes: the p95 of the last 10 drills' rollback times;
3. a previous revision to roll back to: a ReplicaSet the Deployment still keeps (within its
   revisionHistoryLimit) whose pods were seen Ready (by a verified rollback or drill to it,
   or Ready now);
4. the five rollback triggers defined, and each rule's source answering now;
5. Slack reachable (`auth.test`) when a token is set, else nothing waiting in the outbox;
6. the lock backends answering: this machine's lock table and, for a cluster, the Lease API;
7. the last real rollback wrote its incident document (with no real rollback yet, the last
   drill's document shows the same step works).

Nothing here changes anything: every check is a read.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crystal_runbook import errors
from crystal_runbook.engine import durations, orphans
from crystal_runbook.engine import journal as journal_mod
from crystal_runbook.incident.model import TARGET_SECONDS
from crystal_runbook.service import drills
from crystal_runbook.service.workspace import Workspace

MAX_DRILL_AGE = 7 * 86400.0
"""A passing drill must be at most this old (seconds): the issue's "within 7 days"."""
DRILLS_FOR_P95 = 10
"""The rollback time is the p95 of this many latest drills."""
TRIGGERS_NEEDED = 5
"""The checklist's automatic rollback conditions: coherence, error rate, p99, memory, DB pool."""
CHECK_TIMEOUT = 10.0
"""Seconds each live check (cluster, Slack, sources) may take."""
UNDO_USES = "k8s.rollout_undo"
RESTORE_USES = "k8s.restore"
DOCUMENT_USES = "incident.write"


@dataclass(frozen=True)
class Line:
    """One checklist item: passed or not, the evidence, and when that evidence is from."""

    key: str
    item: str
    ok: bool
    evidence: str
    at: str | None
    """When the evidence was recorded (UTC, ISO 8601); checks made now carry now."""
    age_seconds: float | None

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "item": self.item,
            "ok": self.ok,
            "evidence": self.evidence,
            "at": self.at,
            "age_seconds": self.age_seconds,
        }


@dataclass(frozen=True)
class Report:
    """Every line for one service in one environment."""

    service: str
    env: str
    checked_at: str
    lines: list[Line] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return bool(self.lines) and all(line.ok for line in self.lines)

    @property
    def failing(self) -> list[Line]:
        return [line for line in self.lines if not line.ok]

    def as_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "env": self.env,
            "ready": self.ready,
            "checked_at": self.checked_at,
            "failing": [line.key for line in self.failing],
            "lines": [line.as_json() for line in self.lines],
        }


class _Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)
        self.iso = journal_mod.now_iso()

    def line(self, key: str, item: str, ok: bool, evidence: str, at: str | None) -> Line:
        age = (
            None if at is None else max(0.0, (self.now - journal_mod.parse_iso(at)).total_seconds())
        )
        return Line(key, item, ok, evidence, at, None if age is None else round(age, 3))


def report(
    ws: Workspace,
    service: str,
    *,
    max_drill_age: float = MAX_DRILL_AGE,
    drills_for_p95: int = DRILLS_FOR_P95,
) -> Report:
    """Prove the checklist's rollback items for ``service`` in the workspace's environment.

    Raises:
        errors.TargetNotFound: unknown service or environment (exit 2).
    """
    env, target = ws.target(service)
    clock = _Clock()
    recent = [
        drills.summary(ws, r) for r in drills.drills_of(ws, service, env, limit=drills_for_p95)
    ]
    checks: list[Callable[[], Line]] = [
        lambda: _practised(clock, recent, max_drill_age),
        lambda: _rollback_time(clock, recent, drills_for_p95),
        lambda: _previous_revision(ws, clock, service, env, target),
        lambda: _triggers(ws, clock, service),
        lambda: _slack(ws, clock),
        lambda: _locks(ws, clock, service, env, target),
        lambda: _documented(ws, clock, service, env),
    ]
    lines = []
    for check in checks:
        lines.append(check())
    return Report(service=service, env=env, checked_at=clock.iso, lines=lines)


def span(seconds: float) -> str:
    """``7d`` for whole days, else the engine's short form (``36h00m``, ``90.0s``)."""
    if seconds >= 86400 and seconds % 86400 == 0:
        return f"{int(seconds // 86400)}d"
    return durations.format_duration(seconds)


# -- 1, 2: drills ---------------------------------------------------------------------------

PRACTISED = "Rollback procedure practised: a passing drill within {age}"
ROLLBACK_TIME = "Rollback time < 5 minutes (p95 of the last {n} drills)"


def _practised(clock: _Clock, recent: Sequence[drills.Summary], max_age: float) -> Line:
    item = PRACTISED.format(age=span(max_age))
    passed = next((s for s in recent if s.passed), None)
    if passed is None:
        if not recent:
            return clock.line("drill", item, False, "no drill in the journal yet", None)
        last = recent[0]
        why = f" at {last.failed_phase}" if last.failed_phase else ""
        return clock.line(
            "drill",
            item,
            False,
            f"none of the last {len(recent)} drill(s) passed; the last, {last.run.id}, "
            f"{last.verdict}{why}",
            last.run.started_at,
        )
    at = passed.run.ended_at or passed.run.started_at
    age = (clock.now - journal_mod.parse_iso(at)).total_seconds()
    rollback = durations.format_duration(passed.rollback_seconds or 0.0)
    evidence = (
        f"drill {passed.run.id} passed (rollback {rollback}, restore "
        f"{durations.format_duration(passed.restore_seconds or 0.0)})"
    )
    if age > max_age:
        return clock.line("drill", item, False, evidence + ": too old", at)
    return clock.line("drill", item, True, evidence, at)


def p95(values: Sequence[float]) -> float:
    """The 95th percentile by nearest rank (of 10 values: the largest)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(0.95 * len(ordered)))
    return ordered[rank - 1]


def _rollback_time(clock: _Clock, recent: Sequence[drills.Summary], count: int) -> Line:
    item = ROLLBACK_TIME.format(n=count)
    timed = [s for s in recent if s.rollback_seconds is not None]
    if not timed:
        return clock.line("rollback-time", item, False, "no drill has timed a rollback yet", None)
    value = p95([s.rollback_seconds for s in timed if s.rollback_seconds is not None])
    ok = value < TARGET_SECONDS
    evidence = (
        f"p95 {durations.format_duration(value)} over {len(timed)} drill(s) "
        f"(fastest {durations.format_duration(min(s.rollback_seconds or 0.0 for s in timed))})"
        + ("" if ok else f": over the {durations.format_duration(TARGET_SECONDS)} target")
    )
    return clock.line("rollback-time", item, ok, evidence, timed[0].run.started_at)


# -- 3: a previous revision ------------------------------------------------------------------

PREVIOUS = "A previous revision to roll back to (kept, its pods seen Ready)"


def _previous_revision(
    ws: Workspace, clock: _Clock, service: str, env: str, target: dict[str, Any]
) -> Line:
    if not target.get("kubernetes"):
        return clock.line(
            "previous-revision",
            PREVIOUS,
            False,
            f"{service} has no kubernetes block in {env}",
            None,
        )
    from crystal_runbook.kube import client as kube_client
    from crystal_runbook.kube import resources, rollout

    kube_target = kube_client.KubeTarget.from_target(target)
    deadline = time.monotonic() + CHECK_TIMEOUT
    try:
        kube = kube_client.connect(kube_target)
        dep = resources.deployment(kube, kube_target, deadline)
        owned = resources.replicasets(kube, kube_target, dep, deadline)
        previous = rollout.pick_target(kube_target.deployment, owned, 0)
    except errors.CrystalError as exc:
        return clock.line("previous-revision", PREVIOUS, False, exc.message, clock.iso)
    limit = (dep.get("spec") or {}).get("revisionHistoryLimit", 10)
    name = previous["metadata"]["name"]
    revision = rollout.revision_of(previous)
    images = ", ".join(rollout.images(previous.get("spec", {}).get("template") or {}).values())
    what = f"revision {revision} ({name}, {images}; revisionHistoryLimit {limit})"
    ready_now = int((previous.get("status") or {}).get("readyReplicas") or 0)
    if ready_now:
        return clock.line(
            "previous-revision", PREVIOUS, True, f"{what}: {ready_now} pod(s) Ready now", clock.iso
        )
    seen = _seen_ready(ws, service, env, previous.get("spec", {}).get("template") or {})
    if seen is None:
        return clock.line(
            "previous-revision",
            PREVIOUS,
            False,
            f"{what} is kept, but nothing in the journal shows its pods Ready; a drill proves it",
            clock.iso,
        )
    run, at = seen
    kind = "drill" if run.drill else "rollback"
    return clock.line(
        "previous-revision",
        PREVIOUS,
        True,
        f"{what}: its pods were Ready in {kind} {run.id}",
        at,
    )


def _seen_ready(
    ws: Workspace, service: str, env: str, template: dict[str, Any]
) -> tuple[journal_mod.RunRecord, str] | None:
    """The latest run that rolled to ``template`` (its images and env) and verified it:
    a rollback's undo or a drill's restore waits until the new pods are Ready."""
    from crystal_runbook.engine.secrets import MASK, looks_secret
    from crystal_runbook.kube import rollout

    images = rollout.images(template)
    env_vars = {
        k: MASK if looks_secret(k) else v for k, v in rollout.env_of(template).items()
    }
    for record in ws.journal.list_runs(service=service, limit=drills.HISTORY_SCAN):
        if record.env != env:
            continue
        run = ws.journal.get_run(record.id)
        for step in reversed(run.steps):
            if step.status != "ok" or step.uses not in (UNDO_USES, RESTORE_USES):
                continue
            out = step.outputs
            got_images = out.get("to_images") if step.uses == UNDO_USES else out.get("images")
            got_env = out.get("to_env") if step.uses == UNDO_USES else out.get("env")
            if got_images == images and got_env == env_vars:
                return run, step.ended_at or run.started_at
    return None


# -- 4: triggers ----------------------------------------------------------------------------

TRIGGERS = "The {n} rollback triggers defined, each source answering now"


def _triggers(ws: Workspace, clock: _Clock, service: str) -> Line:
    from crystal_runbook.service import triggers

    item = TRIGGERS.format(n=TRIGGERS_NEEDED)
    try:
        bound = triggers.bound_triggers(ws, service)
        report = triggers.trigger_report(ws, service)
    except errors.CrystalError as exc:
        return clock.line("triggers", item, False, exc.message.splitlines()[0], clock.iso)
    rollback = [b.name for b in bound.rules if b.rule.action == "rollback"]
    if report is None:
        return clock.line(
            "triggers", item, False, f"no rules for {service} in triggers.yaml", clock.iso
        )
    broken = [f"{r.name} ({r.message})" for r in report.rules if r.state == "error"]
    states: dict[str, int] = {}
    for r in report.rules:
        states[r.state] = states.get(r.state, 0) + 1
    sources = sorted({b.source for b in bound.rules})
    counted = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
    evidence = (
        f"{len(rollback)} rollback rule(s) ({', '.join(rollback) or 'none'}); "
        f"{', '.join(sources)} answered: {counted}"
    )
    if broken:
        return clock.line(
            "triggers", item, False, f"{evidence}; not answering: {'; '.join(broken)}", clock.iso
        )
    if len(rollback) < TRIGGERS_NEEDED:
        return clock.line(
            "triggers", item, False, f"{evidence}: fewer than {TRIGGERS_NEEDED}", clock.iso
        )
    return clock.line("triggers", item, True, evidence, clock.iso)


# -- 5: Slack -------------------------------------------------------------------------------

SLACK = "Users can be notified: Slack reachable (auth.test), or the outbox empty"


def _slack(ws: Workspace, clock: _Clock) -> Line:
    from crystal_runbook.notify import slackapi

    listing = ws.notifier.listing()
    waiting = len(listing.waiting) + len(listing.broken)
    settings = ws.notifier.settings
    if not settings.configured:
        reason = settings.problem or f"{slackapi.TOKEN_ENV} is not set"
        if waiting:
            oldest = min((e.created_at for e in listing.waiting), default=None)
            return clock.line(
                "slack",
                SLACK,
                False,
                f"{reason} and {waiting} notification(s) wait in {listing.root}",
                oldest,
            )
        return clock.line("slack", SLACK, True, f"{reason}; the outbox is empty", clock.iso)
    web = slackapi.SlackWeb(settings, redactor=ws.redactor)
    try:
        data = web.call(
            "auth.test",
            lambda client: client.auth_test(),
            deadline=time.monotonic() + CHECK_TIMEOUT,
            tries=2,
        )
    except errors.CrystalError as exc:
        return clock.line("slack", SLACK, False, f"auth.test failed: {exc.message}", clock.iso)
    team = data.get("team") or data.get("team_id")
    who = f"team {team}, bot {data.get('user') or data.get('user_id')}"
    queued = f"; {waiting} notification(s) wait in the outbox" if waiting else ""
    return clock.line(
        "slack", SLACK, True, f"auth.test ok at {settings.api_url} ({who}){queued}", clock.iso
    )


# -- 6: locks -------------------------------------------------------------------------------

LOCKS = "The lock and Lease backends answer"


def _locks(ws: Workspace, clock: _Clock, service: str, env: str, target: dict[str, Any]) -> Line:
    key = f"{service}/{env}"
    parts: list[str] = []
    try:
        holder = ws.local_locks.holder(key)
    except Exception as exc:  # noqa: BLE001 - sqlite errors of any kind mean "not answering"
        return clock.line("locks", LOCKS, False, f"local lock table: {exc}", clock.iso)
    parts.append(
        f"local lock {key!r} "
        + ("free" if holder is None else f"held by run {holder.run_id} ({holder.actor})")
    )
    if target.get("kubernetes"):
        from crystal_runbook.kube import client as kube_client
        from crystal_runbook.kube import lease, resources

        kube_target = kube_client.KubeTarget.from_target(target)
        name = lease.lease_name(key)
        try:
            kube = kube_client.connect(kube_target)
            try:
                found = kube.json(
                    "GET",
                    kube_target.path(resources.LEASES, "leases", name),
                    what=f"read lease {name}",
                    where=kube_target.where,
                    deadline=time.monotonic() + CHECK_TIMEOUT,
                )
                who = (found.get("spec") or {}).get("holderIdentity") or "nobody"
                parts.append(f"Lease {name} in {kube_target.namespace} answers (holder: {who})")
            except kube_client.NotFound:
                parts.append(f"Lease API in {kube_target.namespace} answers ({name} free)")
        except errors.CrystalError as exc:
            return clock.line(
                "locks", LOCKS, False, f"{'; '.join(parts)}; Lease: {exc.message}", clock.iso
            )
    return clock.line("locks", LOCKS, True, "; ".join(parts), clock.iso)


# -- 7: documents ---------------------------------------------------------------------------

DOCUMENTED = "Incident documented: the last real rollback wrote its document"


def _documented(ws: Workspace, clock: _Clock, service: str, env: str) -> Line:
    last_rollback: journal_mod.RunRecord | None = None
    last_drill: journal_mod.RunRecord | None = None
    for record in ws.journal.list_runs(service=service, limit=drills.HISTORY_SCAN):
        if record.env != env or orphans.as_seen(record).status == "running":
            continue
        run = ws.journal.get_run(record.id)
        if not any(
            s.uses == UNDO_USES and s.status not in ("pending", "skipped") for s in run.steps
        ):
            continue
        if run.drill:
            last_drill = last_drill or run
        else:
            last_rollback = run
            break
    if last_rollback is not None:
        found = _document_of(last_rollback)
        if found is None:
            return clock.line(
                "document",
                DOCUMENTED,
                False,
                f"rollback {last_rollback.id} ({last_rollback.status}) has no document on disk; "
                f"`crystal-runbook incident show {last_rollback.id}` writes it",
                last_rollback.ended_at or last_rollback.started_at,
            )
        path, at = found
        return clock.line(
            "document",
            DOCUMENTED,
            True,
            f"rollback {last_rollback.id} ({last_rollback.status}) wrote {path}",
            at,
        )
    if last_drill is not None:
        found = _document_of(last_drill)
        if found is not None:
            path, at = found
            return clock.line(
                "document",
                DOCUMENTED,
                True,
                f"no real rollback yet; drill {last_drill.id} wrote {path} with the same step",
                at,
            )
    return clock.line(
        "document",
        DOCUMENTED,
        False,
        "no rollback or drill has written an incident document yet",
        None,
    )


def _document_of(run: journal_mod.RunRecord) -> tuple[str, str] | None:
    """(path, when) of the last document a run's `incident.write` steps wrote and kept."""
    for step in reversed(run.steps):
        if step.uses != DOCUMENT_USES or step.status != "ok":
            continue
        path = step.outputs.get("markdown")
        if isinstance(path, str) and Path(path).is_file():
            return path, step.ended_at or run.started_at
    return None
