"""Rollback triggers: the service's rules bound to their sources, evaluated once or watched."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crystal_runbook import errors
from crystal_runbook.service import runs
from crystal_runbook.service.workspace import Workspace, display

if TYPE_CHECKING:
    from crystal_runbook.triggers.evaluator import Report
    from crystal_runbook.triggers.loader import Bound
    from crystal_runbook.triggers.watch import Notice, WatchSettings


def bound_triggers(ws: Workspace, service: str, *, path: Path | None = None) -> Bound:
    """``service``'s trigger rules for this environment, each with its source decided.

    Raises:
        errors.InputError: unknown service or environment, an invalid triggers file
            (file:line:column), or a source whose URL variable is not set (exit 2).
    """
    from crystal_runbook.triggers import loader as triggers_loader

    env = ws.resolve_env()
    target = ws.inventory.target(service, env)
    file = path or ws.inventory_dir / triggers_loader.FILENAME
    loaded = triggers_loader.load(file, display=display(file))
    return triggers_loader.bind(loaded, service, env, target)


def trigger_report(ws: Workspace, service: str, *, path: Path | None = None) -> Report | None:
    """One evaluation of the service's rules now (for `health`), reading saved windows and
    saving them back with this evaluation added (what the scrape source saw is then the
    history a manual rollback's incident document reads; an open incident is kept as is).

    Returns None when the triggers file has no rules for ``service``.
    """
    from crystal_runbook.triggers import evaluator, store, watch

    try:
        bound = bound_triggers(ws, service, path=path)
    except errors.TargetNotFound:
        if service in ws.inventory.services:
            return None  # the service exists, it simply has no rules
        raise
    state_path = store.path_for(ws.state_dir, service, bound.env)
    with evaluator.Evaluator(bound, redactor=ws.redactor) as ev:
        saved = store.load(state_path)
        rules_data = saved.get("rules")
        if isinstance(rules_data, dict):
            ev.restore(rules_data, now=time.time(), max_age=watch.WatchSettings().state_ttl)
        samples = store.samples_path(ws.state_dir, service, bound.env)
        ev.load_samples(store.load(samples).get("targets") or {}, now=time.time())
        report = ev.evaluate()
        with contextlib.suppress(OSError):  # a read-only state dir must not fail `health`
            store.save(state_path, {**saved, "rules": ev.dump(), "saved_at": time.time()})
            recent = ev.dump_samples()
            if recent:
                store.save(samples, {"targets": recent})
        return report


def watch(
    ws: Workspace,
    service: str,
    *,
    settings: WatchSettings,
    notify: Callable[[Notice], None],
    on_report: Callable[[Report], None],
    path: Path | None = None,
    once: bool = False,
    stop: threading.Event | None = None,
    approve: Callable[[str], bool] | None = None,
    incident: dict[str, Any] | None = None,
) -> Report:
    """Evaluate the service's rules every ``settings.interval`` (or once); returns the last
    report. A firing rollback rule runs `rollback` through ``run`` when auto-rollback is on.

    ``incident``: an incident another process opened (``Watcher``'s); no second rollback
    starts while it is open.
    """
    from crystal_runbook.triggers import evaluator, store
    from crystal_runbook.triggers import watch as watch_mod

    bound = bound_triggers(ws, service, path=path)

    def rollback(reason: str, evidence: dict[str, Any]) -> watch_mod.RollbackAttempt:
        try:
            result = runs.run(
                ws,
                "rollback",
                {"service": service, "reason": reason},
                assume_yes=True,  # --auto-rollback is the operator's consent
                allow_paths=False,
                meta={"trigger": evidence},
            )
        except errors.CrystalError as exc:
            return watch_mod.RollbackAttempt(None, "refused", ws.redactor.text(str(exc)))
        if result.run.status == "interrupted":
            raise errors.Interrupted(f"rollback run {result.run.id} interrupted")
        return watch_mod.RollbackAttempt(result.run.id, result.run.status, result.run.error)

    with evaluator.Evaluator(bound, redactor=ws.redactor) as ev:
        watcher = watch_mod.Watcher(
            ev,
            settings=settings,
            notify=notify,
            rollback=rollback,
            approve=approve,
            state_path=store.path_for(ws.state_dir, service, bound.env),
            samples_path=store.samples_path(ws.state_dir, service, bound.env),
            incident=incident,
        )
        return watcher.run(once=once, stop=stop, on_report=on_report)
