"""Drill schedules as use cases: `drill schedule` (with `--emit-cronjob`) and `drill due`.

What is due is decided by ``drills.schedule`` alone (`serve --scheduler` calls the same
``run_due``, from ``service.scheduler``); this module feeds it the journal's last drill of
each service and environment and, for `drill due --run`, holds a
`drill-due/<service>/<env>` lock (this machine's and, for a cluster target, a Lease) while
it decides again and starts the drill through ``service.drills.run``, so two schedulers
started at once run one drill.
"""

from __future__ import annotations

import copy
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from crystal_runbook import errors
from crystal_runbook.drills import model as drills_model
from crystal_runbook.drills import schedule
from crystal_runbook.engine import executor as executor_mod
from crystal_runbook.engine import journal as journal_mod
from crystal_runbook.engine import locks as locks_mod
from crystal_runbook.service import drills
from crystal_runbook.service.workspace import Workspace


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
    loaded = drills.schedule_file(ws)
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
    last = next(iter(drills.drills_of(ws, service, env, limit=1)), None)
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
        if stopped.is_set():  # `serve` is stopping or lost its leadership: no new drill
            break
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
    pending = drills.unfinished(scoped, name, where)
    if pending is not None:
        progress(f"{name}/{where}: drill {pending.id} did not finish")
        return _ran(name, where, "resumed", lambda: drills.finish(scoped, pending, name, where))
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
                lambda: drills.run(scoped, name, allow_production=True, meta=meta),
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
        loaded = drills.schedule_file(ws)
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
