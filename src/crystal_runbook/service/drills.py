"""Rollback drills: run one, and list past ones with their reports' figures.

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
- `drill schedule` and `drill due --run` are in ``service.drill_schedule``.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any

from crystal_runbook import errors
from crystal_runbook.drills import loader as drills_loader
from crystal_runbook.engine import executor as executor_mod
from crystal_runbook.engine import journal as journal_mod
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
        return finish(ws, pending, service, env)
    return runs.execute(ws, req)


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


def finish(
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
