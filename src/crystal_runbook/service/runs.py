"""Running runbooks: start, plan, resume, and the run history they leave in the journal.

The CLI's `run`, `rollback`, `scale`, `plan`, `resume`, `runs` and the watcher's automatic
rollback all come through here, so a run from any shell is the same run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crystal_runbook import errors
from crystal_runbook.engine import executor as executor_mod
from crystal_runbook.engine import journal as journal_mod
from crystal_runbook.engine import loader, orphans
from crystal_runbook.engine import locks as locks_mod
from crystal_runbook.engine import params as params_mod
from crystal_runbook.service import live
from crystal_runbook.service.workspace import Workspace


def request(
    ws: Workspace,
    runbook: str,
    params: Mapping[str, Any],
    *,
    assume_yes: bool = False,
    allow_paths: bool = True,
    drill: bool = False,
    meta: Mapping[str, Any] | None = None,
) -> executor_mod.Request:
    """Load, resolve parameters and target: everything before the first step.

    Raises:
        errors.InputError: any bad input (exit 2); nothing has been changed.
    """
    loaded = ws.load_runbook(runbook, allow_paths=allow_paths)
    typed = params_mod.resolve(loaded.runbook.params, params, runbook=loaded.runbook.name)
    for name, spec in loaded.runbook.params.items():
        if spec.secret and isinstance(typed.get(name), str):
            ws.redactor.add(typed[name])
    env = ws.resolve_env()
    service = typed.get("service") if "service" in loaded.runbook.params else None
    target: dict[str, Any] = {}
    service_info: dict[str, Any] = {}
    if service is not None:
        target = ws.target_block(str(service), env)
        found = ws.inventory.services[str(service)]
        service_info = {"description": found.description, "owner": found.owner}
    return executor_mod.Request(
        loaded=loaded,
        params=typed,
        env=env,
        actor=ws.actor,
        service=None if service is None else str(service),
        service_info=service_info,
        target=target,
        assume_yes=assume_yes,
        interactive=ws.interactive,
        drill=drill,
        meta={**ws.origin, **(meta or {})},
        redacted_params=params_mod.redact(loaded.runbook.params, typed),
    )


def plan(
    ws: Workspace,
    runbook: str,
    params: Mapping[str, Any],
    *,
    allow_paths: bool = True,
    assume_yes: bool = False,
) -> tuple[executor_mod.Request, list[executor_mod.PlannedStep]]:
    """Every step's check and the change it would make, without changing anything."""
    req = request(ws, runbook, params, allow_paths=allow_paths, assume_yes=assume_yes)
    return req, ws.executor(req).plan(req)


def plan_exit_code(req: executor_mod.Request, planned: list[executor_mod.PlannedStep]) -> int:
    """0 every check succeeded, 1 one failed or refused, 4 only confirmation is missing."""
    return executor_mod.plan_exit_code(req, planned)


def run(
    ws: Workspace,
    runbook: str,
    params: Mapping[str, Any],
    *,
    assume_yes: bool = False,
    allow_paths: bool = True,
    drill: bool = False,
    meta: Mapping[str, Any] | None = None,
    break_lock: bool = False,
) -> executor_mod.RunResult:
    """Run a runbook to its end (or its first failure); the journal records every transition.

    ``break_lock`` takes over a lock held from another host (confirmed like production).
    """
    req = request(
        ws, runbook, params, assume_yes=assume_yes, allow_paths=allow_paths, drill=drill, meta=meta
    )
    req.break_lock = break_lock
    return execute(ws, req)


def execute(ws: Workspace, req: executor_mod.Request) -> executor_mod.RunResult:
    """Run a prepared request (``request``), with its live progress message in Slack when it
    has one (``service.live``): every run from every shell starts here."""
    with live.watching(ws, req) as sinks:
        return ws.executor(req, sinks=sinks).run(req)


def resume(
    ws: Workspace, run_id: str, *, assume_yes: bool = False, force: bool = False
) -> executor_mod.RunResult:
    """Continue a run from the journal, with the runbook text and target it started with.

    Its finished steps are checked again first: when the world no longer matches what the
    run left, it refuses (``errors.RunDrifted``, exit 1) unless ``force`` (re-apply from the
    first drifted step, with the environment's confirmation rules).
    """
    record = ws.journal.get_run(run_id)
    if record.status == "ok":
        if record.lock_key is not None:  # killed between its end and its lock's release
            locks_mod.release_left_by(
                ws.lock_backends(record.meta.get("target")),
                record.lock_key,
                run_id=record.id,
                actor=ws.actor,
            )
        return executor_mod.RunResult(record)
    loaded = loader.load_text(record.runbook_text, ws.registry, path=record.runbook_path)
    secret = [n for n, s in loaded.runbook.params.items() if s.secret]
    if secret:
        raise errors.InputError(
            f"run {record.id} has secret parameters ({', '.join(secret)}) that the journal "
            "does not keep; it cannot be resumed",
            hint="start a new run",
        )
    typed = params_mod.resolve(
        loaded.runbook.params,
        {k: v for k, v in record.params.items() if v is not None},
        runbook=loaded.runbook.name,
    )
    req = executor_mod.Request(
        loaded=loaded,
        params=typed,
        env=record.env,
        actor=ws.actor,
        service=record.service,
        service_info=dict(record.meta.get("service_info", {})),
        target=dict(record.meta.get("target", {})),
        assume_yes=assume_yes,
        interactive=ws.interactive,
        drill=record.drill,
        meta=record.meta,
        redacted_params=record.params,
        force=force,
    )
    with live.watching(ws, req, resumed=record) as sinks:
        return ws.executor(req, sinks=sinks).resume(record, req)


def history(
    ws: Workspace, *, service: str | None = None, limit: int = 20, before: str | None = None
) -> list[journal_mod.RunRecord]:
    """Runs newest first; ``before`` (a run id) gives the page after that run. A run killed
    on this host (journalled `running`, its process gone) shows as `interrupted`."""
    found = ws.journal.list_runs(service=service, limit=limit, before=before)
    return [orphans.as_seen(r) for r in found]


def show(ws: Workspace, run_id: str) -> journal_mod.RunRecord:
    """One run with its steps; a run killed on this host shows as `interrupted`."""
    return orphans.as_seen(ws.journal.get_run(run_id))
