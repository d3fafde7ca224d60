"""`serve --watch`: each service of `inventory/serve.yaml` watched by one leader.

The duty of the leader of `crystal-runbook-serve-watch-<service>-<env>` (a Lease beside the
watched Deployment) is `watch --auto-rollback` for that service and environment: the same
evaluation (``service.triggers.watch``), the same one-rollback-per-incident rule. Two things
make it safe to hand over between replicas:

- the open incident comes from the journal: an automatic rollback of this service and
  environment that started within the cooldown (on any replica) is the incident's rollback,
  so a new leader never starts a second one (a second `rollout undo` would bring the bad
  release back);
- the leader resumes the rollbacks its predecessor left unfinished (``service.recovery``),
  when it starts and then every ``RECOVERY_EVERY`` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from crystal_runbook import errors
from crystal_runbook.engine import journal as journal_mod
from crystal_runbook.service import recovery
from crystal_runbook.service import triggers as trigger_service
from crystal_runbook.service.workspace import Workspace

if TYPE_CHECKING:
    from crystal_runbook.serving.model import Watch
    from crystal_runbook.triggers.evaluator import Report
    from crystal_runbook.triggers.watch import Notice

log = logging.getLogger("crystal_runbook.serve")

RECOVERY_EVERY = 15.0
"""Seconds between two looks for runs left unfinished, while leading."""
ROLLBACK_RUNBOOK = "rollback"
LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.ERROR}


def duty_name(service: str, env: str) -> str:
    return f"watch/{service}/{env}"


def open_incident(
    ws: Workspace, service: str, env: str, *, cooldown: float
) -> dict[str, Any] | None:
    """The incident an automatic rollback of ``service`` in ``env`` opened within
    ``cooldown`` seconds, as ``triggers.watch.Watcher`` keeps it (None: none is open)."""
    for run in ws.journal.list_runs(service=service, limit=50):
        if run.env != env or run.runbook != ROLLBACK_RUNBOOK:
            continue
        trigger = run.meta.get("trigger")
        if not isinstance(trigger, dict):
            continue  # a rollback by hand: not an incident of the watcher's
        started = journal_mod.parse_iso(run.started_at).timestamp()
        if time.time() - started >= cooldown:
            return None
        rules = [str(r.get("name")) for r in trigger.get("rules") or [] if isinstance(r, dict)]
        return {
            "opened_at": started,
            "rules": rules,
            "rollback": {"run_id": run.id, "status": run.status, "error": run.error},
            "approved": True,
        }
    return None


def _notice(service: str, env: str) -> Callable[[Notice], None]:
    def notify(notice: Notice) -> None:
        level = LEVELS.get(notice.level, logging.INFO)
        log.log(level, "watch %s/%s: %s", service, env, notice.message)

    return notify


def duty(
    make_workspace: Callable[[], Workspace],
    entry: Watch,
    *,
    on_report: Callable[[Report], None] = lambda _r: None,
) -> Callable[[threading.Event], None]:
    """The watcher's duty for one serve.yaml entry: resume what its predecessor left, then
    watch (auto-rollback as the entry says) until stopped."""
    from crystal_runbook.triggers.watch import WatchSettings

    name = duty_name(entry.service, entry.env)
    settings = WatchSettings(
        interval=entry.interval, auto_rollback=entry.auto_rollback, cooldown=entry.cooldown
    )

    def run(stop: threading.Event) -> None:
        ws = make_workspace()
        looked = [time.monotonic()]

        def report(found: Report) -> None:
            on_report(found)
            if time.monotonic() - looked[0] >= RECOVERY_EVERY and not stop.is_set():
                looked[0] = time.monotonic()
                recovery.resume_orphans(ws, {name}, service=entry.service)

        try:
            recovery.resume_orphans(ws, {name}, service=entry.service)
            if stop.is_set():
                return
            trigger_service.watch(
                ws,
                entry.service,
                settings=settings,
                notify=_notice(entry.service, entry.env),
                on_report=report,
                stop=stop,
                incident=open_incident(ws, entry.service, entry.env, cooldown=entry.cooldown),
            )
        except errors.Interrupted:
            raise KeyboardInterrupt from None  # journalled; the next leader resumes it
        finally:
            ws.close()

    return run
