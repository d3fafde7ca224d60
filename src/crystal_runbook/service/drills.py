"""Rollback drills: run one, list past ones, show the schedule, run what is due.

A drill is one run of `runbooks/drill.yaml` with ``drill: true`` (its phases are steps, its
report a section of the incident document), started here so that `drill`, `drill due --run`
and, later, `serve --scheduler` start it the same way:

- production (an environment the drill runbook asks confirmation for) needs both the
  operator's `--allow-production` and `allow_production: true` for that service and
  environment in `inventory/drills.yaml`;
- an unfinished drill of the same service and environment (interrupted, or its process
  gone) is resumed first, because it may have left the service on the old release and a new
  baseline would record that release; after a failed drill whose restore was not verified, no
  new drill starts (exit 1) until it is resumed or the service restored by hand;
- `drill due --run` decides with ``drills.schedule`` from the journal's last drill, holds a
  `drill-due/<service>/<env>` lock (local and, for a cluster target, a Lease) while it
  re-decides and runs, so two schedulers at once run one drill.
"""

from __future__ import annotations

import secrets
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from crystal_runbook import errors
from crystal_runbook.drills import loader as drills_loader
from crystal_runbook.drills import model as drills_model
from crystal_runbook.drills import schedule
from crystal_runbook.engine import executor as executor_mod
from crystal_runbook.engine import journal as journal_mod
from crystal_runbook.engine import locks as locks_mod
from crystal_runbook.service import runs
from crystal_runbook.service.workspace import Workspace, display

RUNBOOK = "drill"
HISTORY_SCAN = 500
"""Runs of a service read to find its drills (newest first)."""


def schedule_file(ws: Workspace) -> drills_loader.LoadedDrills:
    """`<inventory>/drills.yaml`, validated against `services.yaml` (absent: no drills).

    Raises:
        errors.RunbookInvalid: file:line:column of every problem (exit 2).
    """
    path = ws.inventory_dir / drills_loader.FILENAME
    return drills_loader.load(path, display=display(path), inventory=ws.inventory)


# -- one drill ------------------------------------------------------------------------------


def run(
    ws: Workspace,
    service: str,
    *,
    allow_production: bool = False,
    reason: str = "",
    meta: dict[str, Any] | None = None,
    run_meta: dict[str, Any] | None = None,
) -> executor_mod.RunResult:
    """Run the drill of ``service`` in the workspace's environment (or finish an unfinished one).

    ``meta`` goes into the run's ``drill`` metadata (how it was triggered); ``run_meta``
    beside it (a run from Slack: its ``slack`` origin, as for Slack rollbacks).

    Raises (before anything changed):
        errors.TargetNotFound: unknown service or environment (exit 2).
        errors.ConfirmationRequired: production without --allow-production (exit 4).
        errors.InputError: production that drills.yaml does not allow (exit 2).
        errors.LockHeld: a rollback or another drill holds the service's lock (exit 3).
    """
    env = ws.resolve_env()
    ws.inventory.target(service, env)
    req = runs.request(
        ws,
        RUNBOOK,
        {"service": service, "reason": reason},
        allow_paths=False,
        drill=True,
        meta={**(run_meta or {}), "drill": {"trigger": "manual", **(meta or {})}},
    )
    if env in req.loaded.runbook.confirm:
        _production(ws, service, env, allow_production=allow_production)
        req.assume_yes = True  # both permissions are the confirmation
    pending = unfinished(ws, service, env)
    if pending is not None:
        return _finish(ws, pending, service, env)
    return ws.executor(req).run(req)


def check_allowed(ws: Workspace, service: str, env: str, *, allow_production: bool) -> None:
    """Refuse, as ``run`` would before anything changes, a drill that may not run in ``env``
    (a production environment needs drills.yaml's ``allow_production`` and the operator's).

    Raises:
        errors.InputError: drills.yaml does not allow it there (exit 2).
        errors.ConfirmationRequired: production without ``allow_production`` (exit 4).
    """
    if env in ws.load_runbook(RUNBOOK, allow_paths=False).runbook.confirm:
        _production(ws, service, env, allow_production=allow_production)


def _production(ws: Workspace, service: str, env: str, *, allow_production: bool) -> None:
    loaded = schedule_file(ws)
    entry = loaded.drills.get(service, env)
    allowed = entry is not None and entry.allow_production
    if not allowed:
        where = loaded.where(service, env) if entry is not None else loaded.path
        raise errors.InputError(
            f"{env!r} is a production environment and {where} does not allow drills of "
            f"{service} there; nothing was changed",
            hint=f"set allow_production: true under services.{service}.environments.{env} in "
            f"{loaded.path}, and pass --allow-production",
        )
    if not allow_production:
        raise errors.ConfirmationRequired(
            f"a drill of {service} in {env!r} rolls production back and forth; nothing was changed",
            hint="pass --allow-production (drills.yaml allows it there)",
        )


def _note(ws: Workspace, message: str) -> None:
    if ws.sink is not None:
        from crystal_runbook.engine.events import Event

        ws.sink(
            Event(
                kind="warning",
                run_id="",
                status="warning",
                message=message,
                at=journal_mod.now_iso(),
            )
        )


def drills_of(
    ws: Workspace, service: str, env: str | None = None, *, limit: int = 20
) -> list[journal_mod.RunRecord]:
    """The latest drills of ``service`` (in ``env``), newest first, without their steps."""
    found = [
        r
        for r in ws.journal.list_runs(service=service, limit=HISTORY_SCAN)
        if r.drill and (env is None or r.env == env)
    ]
    return found[:limit]


def unfinished(ws: Workspace, service: str, env: str) -> journal_mod.RunRecord | None:
    """The last drill of ``service`` in ``env`` when it may have left the old release behind:
    interrupted, running in a process that is gone, or failed without a verified restore."""
    last = next(iter(drills_of(ws, service, env, limit=1)), None)
    if last is None or last.status == "ok":
        return None
    if last.status == "interrupted":
        return last
    if last.status == "running":
        gone = last.host == socket.gethostname() and not journal_mod.process_alive(last.pid)
        return last if gone else None
    report = summary(ws, last)
    return last if report.restored is False else None


def _finish(
    ws: Workspace, pending: journal_mod.RunRecord, service: str, env: str
) -> executor_mod.RunResult:
    """Resume an interrupted drill (it goes on to restore the baseline); refuse to start a
    new one after a failed drill whose restore was not verified (a new baseline would record
    the old release)."""
    if pending.status == "failed":
        raise errors.CrystalError(
            f"drill {pending.id} of {service} in {env} failed and did not verify its restore: "
            f"{service} may still run the old release; no new drill was started",
            hint=f"fix the cause, then `crystal-runbook resume {pending.id}` finishes it (it "
            f"restores the baseline); `crystal-runbook incident show {pending.id}` shows what "
            "it left",
        )
    _note(
        ws,
        f"drill {pending.id} of {service} in {env} did not finish ({pending.status}); "
        "resuming it first: it restores the baseline",
    )
    return runs.resume(ws, pending.id, assume_yes=True)


# -- history --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """One past drill with its report's figures (what `drill history` lists)."""

    run: journal_mod.RunRecord
    verdict: str
    failed_phase: str | None
    rollback_seconds: float | None
    restore_seconds: float | None
    total_seconds: float | None
    within_target: bool | None
    rollback_requests: int | None
    restore_requests: int | None
    restored: bool | None
    anomalies: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.run.id,
            "service": self.run.service,
            "env": self.run.env,
            "actor": self.run.actor,
            "status": self.run.status,
            "started_at": self.run.started_at,
            "ended_at": self.run.ended_at,
            "verdict": self.verdict,
            "failed_phase": self.failed_phase,
            "rollback_seconds": self.rollback_seconds,
            "restore_seconds": self.restore_seconds,
            "total_seconds": self.total_seconds,
            "within_target": self.within_target,
            "rollback_requests": self.rollback_requests,
            "restore_requests": self.restore_requests,
            "restored": self.restored,
            "anomalies": self.anomalies,
        }


def summary(ws: Workspace, record: journal_mod.RunRecord) -> Summary:
    """The drill report of one drill run, from the journal."""
    from crystal_runbook.incident import drill as drill_report

    run = ws.journal.get_run(record.id)
    events = ws.journal.events(run.id)
    as_of = run.ended_at or (events[-1].at if events else run.started_at)
    report = drill_report.report(run, events, as_of=as_of)
    return Summary(
        run=run,
        verdict=report.verdict,
        failed_phase=report.failed_phase,
        rollback_seconds=report.rollback_seconds,
        restore_seconds=report.restore_seconds,
        total_seconds=report.total_seconds,
        within_target=report.within_target,
        rollback_requests=report.rollback_requests,
        restore_requests=report.restore_requests,
        restored=report.restored,
        anomalies=[a.detail for a in report.anomalies],
    )


def history(
    ws: Workspace, service: str, *, env: str | None = None, limit: int = 20
) -> list[Summary]:
    """Past drills of ``service`` (in ``env``; None: every environment), newest first.

    Raises:
        errors.TargetNotFound: ``service`` is not in the inventory.
    """
    if service not in ws.inventory.services:
        ws.inventory.target(service, env or "")  # raises with the known services
    return [summary(ws, r) for r in drills_of(ws, service, env, limit=limit)]


# -- the schedule ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    """One drill of drills.yaml: its settings, next slots and what is due now."""

    service: str
    env: str
    drill: drills_model.Drill
    where: str
    upcoming: list[schedule.Slot]
    decision: schedule.Decision

    def as_json(self) -> dict[str, Any]:
        d = self.drill
        return {
            "service": self.service,
            "env": self.env,
            "schedule": d.schedule,
            "timezone": d.timezone,
            "jitter_seconds": d.jitter,
            "grace_seconds": d.grace,
            "allow_production": d.allow_production,
            "blackout": [b.describe() for b in d.blackout],
            "defined_at": self.where,
            "next": [
                {"slot": s.nominal.isoformat(), "start": s.start.isoformat()} for s in self.upcoming
            ],
            "now": {
                "state": self.decision.state,
                "reason": self.decision.reason,
                "slot": None
                if self.decision.slot is None
                else self.decision.slot.nominal.isoformat(),
            },
        }


def planned(
    ws: Workspace,
    *,
    now: datetime | None = None,
    service: str | None = None,
    env: str | None = None,
    count: int = 5,
) -> list[Planned]:
    """Every drill of drills.yaml (or of ``service`` / ``env``) with its next ``count`` slots."""
    moment = now or datetime.now(UTC)
    loaded = schedule_file(ws)
    if service is not None and service not in ws.inventory.services:
        ws.inventory.target(service, env or "")
    out: list[Planned] = []
    for name, where_env, drill in loaded.drills.entries():
        if (service is not None and name != service) or (env is not None and where_env != env):
            continue
        out.append(
            Planned(
                service=name,
                env=where_env,
                drill=drill,
                where=loaded.where(name, where_env),
                upcoming=schedule.upcoming(name, where_env, drill, now=moment, count=count),
                decision=decide(ws, name, where_env, drill, now=moment),
            )
        )
    return out


def decide(
    ws: Workspace, service: str, env: str, drill: drills_model.Drill, *, now: datetime
) -> schedule.Decision:
    """What is due for one drill now, from the journal's last drill of it."""
    last = next(iter(drills_of(ws, service, env, limit=1)), None)
    started = None if last is None else journal_mod.parse_iso(last.started_at)
    return schedule.decide(service, env, drill, now=now, last_drill_at=started)


@dataclass(frozen=True)
class DueOutcome:
    """What `drill due --run` did about one drill."""

    service: str
    env: str
    action: str
    """ran, resumed, skipped (lock held, another scheduler), refused, or the decision's
    state when nothing was run (done, missed, blackout, waiting, unscheduled)."""
    message: str
    run: journal_mod.RunRecord | None = None
    failed: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "env": self.env,
            "action": self.action,
            "message": self.message,
            "run_id": None if self.run is None else self.run.id,
            "status": None if self.run is None else self.run.status,
            "failed": self.failed,
        }


def run_due(
    ws: Workspace,
    *,
    service: str | None = None,
    env: str | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    max_wait: float = drills_model.MAX_JITTER,
    stop: threading.Event | None = None,
    progress: Callable[[str], None] = lambda _message: None,
) -> list[DueOutcome]:
    """Run every drill that is due (waiting out a slot's jitter up to ``max_wait`` seconds).

    Unfinished drills are resumed first, whatever the schedule says.
    """
    stopped = stop or threading.Event()
    outcomes: list[DueOutcome] = []
    for plan in planned(ws, now=now(), service=service, env=env, count=0):
        outcomes.append(
            _run_one(ws, plan, now=now, max_wait=max_wait, stop=stopped, progress=progress)
        )
    return outcomes


def _run_one(
    ws: Workspace,
    plan: Planned,
    *,
    now: Callable[[], datetime],
    max_wait: float,
    stop: threading.Event,
    progress: Callable[[str], None],
) -> DueOutcome:
    name, where = plan.service, plan.env
    scoped = _scoped(ws, where)
    pending = unfinished(scoped, name, where)
    if pending is not None:
        progress(f"{name}/{where}: drill {pending.id} did not finish")
        return _ran(name, where, "resumed", lambda: _finish(scoped, pending, name, where))
    decision = plan.decision
    if decision.state == "waiting" and decision.wait_seconds <= max_wait:
        progress(f"{name}/{where}: {decision.reason}; waiting")
        if stop.wait(decision.wait_seconds):
            return DueOutcome(name, where, "waiting", "stopped while waiting for the jitter")
        decision = decide(scoped, name, where, plan.drill, now=now())
    if not decision.due:
        return DueOutcome(name, where, decision.state, decision.reason)
    _, target = scoped.target(name)
    key = f"drill-due/{name}/{where}"
    try:
        with locks_mod.hold_all(
            scoped.lock_backends(target),
            key,
            run_id=f"due-{secrets.token_hex(4)}",
            actor=scoped.actor,
        ):
            decision = decide(scoped, name, where, plan.drill, now=now())  # under the lock
            if not decision.due:
                return DueOutcome(name, where, decision.state, decision.reason)
            slot = decision.slot
            meta = {
                "trigger": "schedule",
                "slot": None if slot is None else slot.nominal.isoformat(),
                "start": None if slot is None else slot.start.isoformat(),
            }
            progress(f"{name}/{where}: {decision.reason}; starting the drill")
            return _ran(
                name,
                where,
                "ran",
                lambda: run(scoped, name, allow_production=True, meta=meta),
            )
    except errors.LockHeld as exc:
        return DueOutcome(name, where, "skipped", f"{exc.message}; it is running this drill")


def _ran(
    service: str, env: str, action: str, start: Callable[[], executor_mod.RunResult]
) -> DueOutcome:
    try:
        result = start()
    except errors.LockHeld as exc:
        return DueOutcome(service, env, "skipped", exc.message)
    except errors.InputError as exc:
        return DueOutcome(service, env, "refused", exc.message, failed=True)
    except errors.ConfirmationRequired as exc:
        return DueOutcome(service, env, "refused", exc.message, failed=True)
    except errors.Interrupted:
        raise
    except errors.CrystalError as exc:
        return DueOutcome(service, env, "refused", exc.message, failed=True)
    if result.run.status == "interrupted":
        raise errors.Interrupted(f"drill {result.run.id} interrupted")
    message = f"drill {result.run.id} {result.run.status}"
    if result.run.error:
        message += f": {result.run.error}"
    return DueOutcome(
        service, env, action, message, run=result.run, failed=result.run.status != "ok"
    )


def _scoped(ws: Workspace, env: str) -> Workspace:
    """``ws`` for another environment, sharing its journal, locks, registry and sinks."""
    if ws.env == env:
        return ws
    import copy

    scoped = copy.copy(ws)
    scoped.env = env
    return scoped


def cronjobs(
    ws: Workspace,
    service: str,
    *,
    image: str,
    service_account: str | None,
    env: str | None = None,
) -> list[dict[str, Any]]:
    """Kubernetes CronJob manifests that drive `drill due --run` for ``service``'s schedules.

    Raises:
        errors.InputError: the service has no scheduled drill (in ``env``).
    """
    from crystal_runbook.drills import cronjob

    plans = [p for p in planned(ws, service=service, env=env, count=0) if p.drill.schedule]
    if not plans:
        loaded = schedule_file(ws)
        raise errors.InputError(
            f"{service} has no scheduled drill"
            + (f" in {env!r}" if env else "")
            + f" in {loaded.path}",
            hint=f"add services.{service}.environments.<env>.schedule to {loaded.path} "
            "(docs/drills.md)",
        )
    manifests = []
    for plan in plans:
        namespace = None
        try:
            kube = ws.inventory.target(plan.service, plan.env).kubernetes
            namespace = kube.namespace if kube is not None else None
        except errors.CrystalError:  # pragma: no cover - drills.yaml was checked against it
            namespace = None
        manifests.append(
            cronjob.manifest(
                plan.service,
                plan.env,
                plan.drill,
                image=image,
                namespace=namespace,
                service_account=service_account,
            )
        )
    return manifests


def outcomes_failed(outcomes: Sequence[DueOutcome]) -> bool:
    return any(o.failed for o in outcomes)
