"""On-call commands that are not runbooks: `health` (is the service well now?) and `logs`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from crystal_runbook import errors
from crystal_runbook.engine.registry import StepContext
from crystal_runbook.service import triggers
from crystal_runbook.service.workspace import Workspace

if TYPE_CHECKING:
    from crystal_runbook.triggers.evaluator import Report


def _context(
    ws: Workspace, service: str, env: str, target: Mapping[str, Any], *, step: str, timeout: float
) -> StepContext:
    return StepContext(
        run_id="health",
        step_id=step,
        env=env,
        actor=ws.actor,
        service=service,
        target=target,
        state_dir=ws.state_dir,
        dry_run=True,
        deadline=time.monotonic() + timeout,
    )


class _RulesNow:
    """The service's trigger rules evaluated on a thread of their own.

    A rule with ``rate()`` needs two scrapes a second apart: that second is spent waiting,
    so the probes of the health URL and the Deployment run meanwhile instead of after it.
    """

    def __init__(self, ws: Workspace, service: str) -> None:
        self.report: Report | None = None
        self.error: errors.CrystalError | None = None
        self._thread = threading.Thread(
            target=self._run, args=(ws, service), name="health-rules", daemon=True
        )
        self._thread.start()

    def _run(self, ws: Workspace, service: str) -> None:
        try:
            self.report = triggers.trigger_report(ws, service)
        except errors.CrystalError as exc:  # rules that cannot run are not healthy
            self.error = exc

    def wait(self) -> None:
        self._thread.join()


def health(ws: Workspace, service: str) -> dict[str, Any]:
    """The service now: its health URL, its Deployment's rollout, its trigger rules.

    Returns the `health` JSON document of design.md section 4.
    """
    env, target = ws.target(service)
    rules_now = _RulesNow(ws, service) if (ws.inventory_dir / "triggers.yaml").exists() else None
    checks: list[dict[str, Any]] = []
    probes = [
        ("health_url", "http.health", bool(target.get("health_url"))),
        ("deployment", "k8s.rollout_status", bool(target.get("kubernetes"))),
    ]
    for name, uses, present in probes:
        if not present:
            continue
        action = ws.registry.get(uses)
        ctx = _context(ws, service, env, target, step=name, timeout=10.0)
        try:
            found = action.check(action.Args.model_validate({}), ctx)
            checks.append(
                {
                    "name": name,
                    "ok": found.satisfied,
                    "detail": found.summary,
                    "outputs": dict(found.outputs),
                }
            )
        except errors.CrystalError as exc:
            checks.append({"name": name, "ok": False, "detail": exc.message, "outputs": {}})
    rules: list[dict[str, Any]] = []
    rules_healthy = True
    if rules_now is not None:
        rules_now.wait()
        if rules_now.error is not None:
            detail = rules_now.error.message
            checks.append({"name": "triggers", "ok": False, "detail": detail, "outputs": {}})
        elif rules_now.report is not None:
            rules = rules_now.report.as_json()["rules"]
            rules_healthy = rules_now.report.healthy
    healthy = (bool(checks) or bool(rules)) and all(c["ok"] for c in checks) and rules_healthy
    return {
        "service": service,
        "env": env,
        "healthy": healthy,
        "checks": checks,
        "rules": rules,
    }


def logs(
    ws: Workspace,
    service: str,
    *,
    since: float | None,
    tail: int | None,
    grep: str | None,
    follow: bool,
    emit: Callable[[str], None],
    stop: threading.Event,
    until: float | None = None,
) -> int:
    """Print the logs of every pod of the service (following across rollouts)."""
    from crystal_runbook.kube import client as kube_client
    from crystal_runbook.kube import logs as kube_logs

    _, target = ws.target(service)
    kube_target = kube_client.KubeTarget.from_target(target)
    kube = kube_client.connect(kube_target)
    if follow:
        kube_logs.follow(
            kube,
            kube_target,
            since=since,
            tail=tail,
            grep=grep,
            container=kube_target.container,
            emit=emit,
            stop=stop,
            until=until,
        )
        return 0
    count = 0
    for line in kube_logs.recent(
        kube,
        kube_target,
        since=since,
        tail=tail,
        grep=grep,
        container=kube_target.container,
        limit=100_000,
        deadline=time.monotonic() + 60,
    ):
        emit(line)
        count += 1
    return count
