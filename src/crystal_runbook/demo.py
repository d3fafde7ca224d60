"""`crystal-runbook demo`: the whole incident story on the embedded defaults, in about a minute.

A newcomer with a fresh clone (no cluster, no Slack token, no Prometheus) sees what the tool
is for: a sandbox cluster starts; `maia` runs a good release; a bad release (`-bad`: it passes
readiness and burns users) is rolled out with the shipped `release` runbook; `watch` evaluates
the checklist's five rules every second with 10-second windows; the error-rate rule fires and
the shipped `rollback` runbook runs, verified (rollout complete, legacy mode, health, errors
ceased, performance restored); the incident document is written; the sandbox is stopped.

Everything the demo creates lives under `<state dir>/demo/`, its own state directory: its
sandbox, inventory, journal, outbox, trigger state and incident documents. It never touches
the user's journal, outbox or trigger state, starts afresh each time (the previous demo's
directory is replaced) and says where it all is, so `crystal-runbook --state-dir
<state dir>/demo runs` shows what it did.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crystal_runbook import errors, service
from crystal_runbook.engine.events import Sink

BAD_IMAGE = "registry.local/maia:1.5.1-bad"
SERVICE = "maia"
CHANNEL = "#maia-incidents"
MARKER = ".crystal-demo"
"""A file that marks a directory as the demo's own (only such a directory is replaced)."""

# The shipped rules with demo-sized windows: `for: 10s` instead of minutes, 10 s rates.
DEMO_TRIGGERS = """\
apiVersion: crystal-runbook/v1
kind: Triggers
services:
  maia:
    description: The checklist's five rollback conditions, with 10-second windows for the demo.
    rules:
      - {name: coherence-low, query: 'avg(coherence_ratio{job="maia"})', op: "<",
         threshold: 0.4, for: 10s, severity: critical, action: rollback}
      - name: error-rate
        query: >-
          sum(rate(http_request_errors_total{job="maia"}[10s]))
          / sum(rate(http_requests_total{job="maia"}[10s]))
        op: ">"
        threshold: 0.05
        for: 10s
        severity: critical
        action: rollback
      - name: latency-p99
        query: >-
          histogram_quantile(0.99,
          sum by (le) (rate(http_request_duration_seconds_bucket{job="maia"}[10s])))
        op: ">"
        threshold: 2
        for: 10s
        severity: critical
        action: rollback
      - name: memory-unbounded
        kind: trend
        query: 'max(process_resident_memory_bytes{job="maia"})'
        op: ">"
        threshold: 10240
        window: 20s
        min_rising: 0.9
        severity: critical
        action: rollback
      - name: db-connections-exhausted
        kind: ratio
        query: 'db_connections_in_use{job="maia"}'
        denominator: 'db_connections_max{job="maia"}'
        op: ">="
        threshold: 0.95
        for: 10s
        severity: critical
        action: rollback
"""


@dataclass
class DemoResult:
    """What the demo did, for the shell to print and the tests to check."""

    state_dir: Path
    """The demo's own state directory (`<state dir>/demo`): journal, outbox, documents."""
    release_run: str
    rollback_run: str | None
    rollback_status: str
    incident: Path | None
    detected_after: float | None
    """Seconds from the bad release being live to the rollback starting."""
    took: float


def _inventory(directory: Path, sb: Any) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "services.yaml").write_text(
        "# written by `crystal-runbook demo` for its own sandbox\n"
        "default_environment: sandbox\n"
        "services:\n  maia:\n    environments:\n      sandbox:\n"
        "        kubernetes: {context: crystal-sandbox, namespace: crystal, deployment: maia, "
        f"kubeconfig: '{sb.kubeconfig_path}'}}\n"
        f"        health_url: '{sb.health_url()}'\n"
        f"        metrics: {{source: scrape, url: '{sb.metrics_url()}'}}\n"
        f"        slack_channel: '{CHANNEL}'\n"
    )
    (directory / "triggers.yaml").write_text(DEMO_TRIGGERS)


def run_demo(
    *,
    state_dir: Path,
    runbooks_dir: Path,
    say: Callable[[str], None],
    sink: Sink,
    ready_delay: float = 0.3,
    timeout: float = 150.0,
) -> DemoResult:
    """Run the demo; ``say`` narrates, ``sink`` shows the runs' progress.

    Raises:
        errors.ConfigurationError: the shipped runbooks are not in ``runbooks_dir``.
    """
    from crystal_runbook import sandbox

    for name in ("release", "rollback"):
        if not (runbooks_dir / f"{name}.yaml").exists():
            raise errors.ConfigurationError(
                f"the demo needs the shipped runbook {name}.yaml in {runbooks_dir}",
                hint="run it from the repository root (scripts/demo.sh does), or pass --runbooks",
            )
    started = time.monotonic()
    root = fresh_directory(state_dir / "demo")
    say(
        f"   Everything the demo writes goes to {root} (its own journal, outbox, documents); "
        "your own state is not touched."
    )
    say("1. Starting the sandbox: a Kubernetes API emulator on loopback, with `maia` seeded.")
    with sandbox.start(root, ready_delay=ready_delay) as sb:
        # the bad release's burn is held until its release run (rollout and health check)
        # is done, then ramps over 3 s: the story never races the machine's speed
        sb.config.update({"burn_ramp_seconds": 3.0, "burn_held_until": time.time() + 3600})
        sb.settle(10)
        _inventory(root / "inventory", sb)
        ws = service.Workspace(
            state_dir=root,
            inventory_dir=root / "inventory",
            runbooks_dir=runbooks_dir,
            env="sandbox",
            sink=sink,
        )
        try:
            say(f"   API server {sb.url}; kubeconfig {sb.kubeconfig_path}")
            details = "; ".join(c["detail"] for c in service.oncall.health(ws, SERVICE)["checks"])
            say(f"2. {SERVICE} is healthy: {details}")
            say(f"3. A new release goes out: {BAD_IMAGE}. It passes readiness, then burns users.")
            release = service.runs.run(
                ws, "release", {"service": SERVICE, "image": BAD_IMAGE}, allow_paths=False
            )
            if release.run.status != "ok":
                raise errors.ActionError(f"the demo's release failed: {release.run.error}")
            sb.config.update({"burn_held_until": time.time()})  # users start to feel it now
            live_at = time.monotonic()
            say(
                "4. `watch` evaluates the five rollback rules every second (10 s windows, "
                "auto-rollback on)."
            )
            outcome, rollback_at = _watch_until_rollback(ws, say, timeout)
            run_id = outcome.get("run_id")
            status = str(outcome.get("status", "not started"))
            detected = rollback_at - live_at if rollback_at is not None else None
            if run_id is None:
                say(f"5. No rollback started within {timeout:.0f} s: {status}.")
            else:
                after = f", {detected:.1f} s after the bad release went live" if detected else ""
                say(f"5. Rollback run {run_id} {status}{after}.")
            incident = _incident_path(ws, run_id)
            if incident is not None:
                say(f"6. Incident document: {incident}")
            return DemoResult(
                state_dir=root,
                release_run=release.run.id,
                rollback_run=run_id,
                rollback_status=status,
                incident=incident,
                detected_after=detected,
                took=time.monotonic() - started,
            )
        finally:
            say("   Stopping the sandbox.")
            ws.close()


def fresh_directory(root: Path) -> Path:
    """``root`` emptied for a new demo (only if it is the demo's own, or empty).

    Raises:
        errors.ConfigurationError: ``root`` holds files the demo did not write.
    """
    if root.exists() and any(root.iterdir()):
        if not (root / MARKER).exists():
            raise errors.ConfigurationError(
                f"{root} exists and was not written by `crystal-runbook demo`; the demo keeps "
                "its own state there",
                hint="move it away, or give the demo another --state-dir",
            )
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text("written by `crystal-runbook demo`; replaced by the next demo\n")
    return root


def _watch_until_rollback(
    ws: service.Workspace, say: Callable[[str], None], timeout: float
) -> tuple[dict[str, Any], float | None]:
    """Watch with auto-rollback until a rollback has run (or ``timeout``).

    Returns the rollback's ``{run_id, status}`` and when it started (monotonic).
    """
    from crystal_runbook.triggers.watch import Notice, WatchSettings

    stop = threading.Event()
    outcome: dict[str, Any] = {}
    started: list[float] = []

    def notify(notice: Notice) -> None:
        say(("   !! " if notice.level == "critical" else "   ") + notice.message)
        if notice.message.startswith("starting rollback"):
            started.append(time.monotonic())
        if "rollback" in notice.data:
            outcome.update(notice.data["rollback"])
            stop.set()

    timer = threading.Timer(timeout, stop.set)
    timer.start()
    try:
        service.triggers.watch(ws,
            SERVICE,
            settings=WatchSettings(interval=1.0, auto_rollback=True, cooldown=60.0),
            notify=notify,
            on_report=lambda _report: None,
            stop=stop,
        )
    finally:
        timer.cancel()
    return outcome, (started[0] if started else None)


def _incident_path(ws: service.Workspace, run_id: str | None) -> Path | None:
    """The incident document the rollback run wrote (its `incident.write` step), if any."""
    if run_id is None:
        return None
    run = service.runs.show(ws, run_id)
    for step in run.steps:
        if step.uses == "incident.write" and step.outputs.get("markdown"):
            return Path(str(step.outputs["markdown"]))
    return None
